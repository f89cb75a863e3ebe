//! # amqp-conn
//!
//! The connection actor of pika: one tokio task per connection that owns the
//! socket, multiplexes channels, keeps heartbeats, negotiates tuning, tracks
//! publisher confirms and assembles content. Built on `amqp-wire`.
//!
//! Not written yet: this crate is a placeholder in the workspace so that the
//! crate layout is fixed from the start (see issue 3).
#![deny(missing_docs)]
