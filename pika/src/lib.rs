//! # pika
//!
//! The aio-pika API in idiomatic async Rust. Not written yet: this crate is a
//! placeholder in the workspace so that the crate layout is fixed from the
//! start (see issue 4).
#![deny(missing_docs)]
