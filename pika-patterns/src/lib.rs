//! # pika-patterns
//!
//! Master/Worker and RPC helpers on pika's public API. Not written yet: this
//! crate is a placeholder in the workspace so that the crate layout is fixed
//! from the start.
#![deny(missing_docs)]

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
