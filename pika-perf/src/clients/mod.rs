//! The clients that run the fixed scenarios, one module each, all
//! following the timing rules of [`scenario`](crate::scenario).

#[cfg(feature = "amqprs")]
pub mod amqprs;
#[cfg(feature = "lapin")]
pub mod lapin;
pub mod pika;
pub mod pika_patterns;
pub mod raw;

use crate::scenario::{ClientKind, Measured, ScenarioConfig};
use crate::Result;

/// Runs `config.scenario` with `config.client` on the current runtime.
pub async fn run(config: &ScenarioConfig) -> Result<Measured> {
    match config.client {
        ClientKind::Pika => pika::run(config).await,
        ClientKind::Raw => raw::run(config).await,
        ClientKind::PikaPatterns => pika_patterns::run(config).await,
        #[cfg(feature = "lapin")]
        ClientKind::Lapin => lapin::run(config).await,
        #[cfg(feature = "amqprs")]
        ClientKind::Amqprs => amqprs::run(config).await,
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "pika-perf was built without the `{other}` client: rebuild with `--features {other}`"
        )
        .into()),
    }
}
