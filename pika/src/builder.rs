//! What every builder of pika shares: awaiting a builder runs it, flags
//! are set with `name(bool)`, and every operation that waits for the
//! broker has one timeout rule.
//!
//! The rule: a builder's own `timeout(..)` if set, else the channel's
//! [`operation_timeout`](crate::OpenChannel::operation_timeout), else no
//! limit.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// Implements `IntoFuture` for a builder whose `run(self)` is the
/// operation.
macro_rules! into_future {
    ($builder:ident => $output:ty) => {
        impl<'a> std::future::IntoFuture for $builder<'a> {
            type Output = $crate::error::Result<$output>;
            type IntoFuture = std::pin::Pin<
                Box<dyn std::future::Future<Output = $crate::error::Result<$output>> + Send + 'a>,
            >;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.run())
            }
        }
    };
}
pub(crate) use into_future;

/// Setters of boolean options: `name(self, on: bool) -> Self`.
macro_rules! flag_setters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, on: bool) -> Self {
                self.$name = on;
                self
            }
        )*
    };
}
pub(crate) use flag_setters;

/// The timeout of one operation: its own, else the channel's.
pub(crate) fn timeout_for(own: Option<Duration>, channel: Option<Duration>) -> Option<Duration> {
    own.or(channel)
}

/// Runs `future` within `timeout`, if one is set.
pub(crate) async fn with_timeout<T>(
    operation: &'static str,
    timeout: Option<Duration>,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    match timeout {
        None => future.await,
        Some(after) => tokio::time::timeout(after, future)
            .await
            .map_err(|_| Error::Timeout { operation, after })?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_timeout_wins_over_the_channel_timeout() {
        let own = Some(Duration::from_secs(1));
        let channel = Some(Duration::from_secs(9));
        assert_eq!(timeout_for(own, channel), own);
        assert_eq!(timeout_for(None, channel), channel);
        assert_eq!(timeout_for(None, None), None);
    }
}
