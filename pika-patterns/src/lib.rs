//! # pika-patterns
//!
//! Master/Worker and RPC helpers on pika's public API. Not written yet: this
//! crate is a placeholder in the workspace so that the crate layout is fixed
//! from the start.
//! - [`Pool`]: connection and channel pools (aio-pika's `Pool`), on deadpool.
#![deny(missing_docs)]
mod pool;
pub use pool::*;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
