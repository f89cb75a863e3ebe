//! `--client pika-patterns`: the rpc scenario through
//! [`pika_patterns::Rpc`], as an application using the pattern would
//! write it: a typed call with a JSON payload of the body size, replies
//! over direct reply-to (or a private queue without `--direct-reply-to`),
//! a handler that echoes the payload. Channels without publisher
//! confirms, as the pika client's rpc scenario, so that the difference
//! is the pattern's own cost.

use std::time::Instant;

use pika_patterns::{Json, QueueOptions, ReplyQueue, Rpc};
use serde::{Deserialize, Serialize};

use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, Measured, Scenario, ScenarioConfig, IDLE_TIMEOUT,
};
use crate::Result;

/// The call's arguments and its reply: a sequence number and a payload
/// that brings the JSON body to about the scenario's size.
#[derive(Debug, Serialize, Deserialize)]
struct Echo {
    seq: u64,
    payload: String,
}

/// Runs `config.scenario` with pika-patterns (rpc only).
pub async fn run(config: &ScenarioConfig) -> Result<Measured> {
    match config.scenario {
        Scenario::Rpc => rpc(config).await,
        other => {
            Err(format!("the pika-patterns client runs the rpc scenario only, not {other}").into())
        }
    }
}

async fn rpc(config: &ScenarioConfig) -> Result<Measured> {
    let method = unique_name("rpc-pattern");
    let server_connection = pika::connect(&config.url).await?;
    let server = Rpc::create(
        server_connection
            .channel()
            .publisher_confirms(false)
            .await?,
    )
    .await?;
    server
        .register(
            &method,
            |echo: Echo| async move { Ok::<Echo, std::convert::Infallible>(echo) },
            QueueOptions::transient().auto_delete(true),
        )
        .await?;

    let connection = pika::connect(&config.url).await?;
    let reply_queue = if config.direct_reply_to {
        ReplyQueue::DirectReplyTo
    } else {
        ReplyQueue::Private
    };
    let caller = Rpc::create_with(
        connection.channel().publisher_confirms(false).await?,
        Json,
        reply_queue,
    )
    .await?;
    // `{"seq":N,"payload":"xx..."}`: about 25 bytes besides the payload.
    let payload = "x".repeat(config.size.saturating_sub(25));

    let mut latency = latency_histogram();
    let mut lost = 0;
    let timer = Timer::start();
    for seq in 0..config.n {
        let sent = Instant::now();
        let call = caller
            .call::<_, Echo>(
                &method,
                &Echo {
                    seq,
                    payload: payload.clone(),
                },
            )
            .timeout(IDLE_TIMEOUT)
            .await;
        match call {
            Ok(echo) if echo.seq == seq => {
                latency.saturating_record(sent.elapsed().as_micros() as u64);
            }
            Ok(_) => return Err("a call got another call's reply".into()),
            Err(pika_patterns::PatternError::Timeout { .. }) => lost += 1,
            Err(error) => return Err(error.into()),
        }
    }
    let elapsed = timer.stop();
    let dup = caller.unknown_replies();
    server.close().await?;
    connection.close().await?;
    server_connection.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: Some(latency),
        lost,
        dup,
        setup: None,
    })
}
