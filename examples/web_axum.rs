//! A web app that talks to RabbitMQ: `POST /publish` publishes the request
//! body to the queue `test`; `GET /subscribe` waits for the next message
//! of that queue and returns its body.
//!
//! Python original: "Tornado example" of the aio-pika quick start, here
//! with axum.
//!
//! ```text
//! PORT=8080 cargo run --example web_axum
//! curl http://127.0.0.1:8080/subscribe                    # waits...
//! curl -d 'Hello web' http://127.0.0.1:8080/publish       # in another terminal: OK
//! ```
//!
//! It listens on 127.0.0.1, port `PORT` (default 8080). The broker is
//! `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`). It runs until
//! Ctrl-C.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use pika::{Connection, IncomingMessage, Message};
use tokio::sync::{mpsc, Mutex};

#[path = "support/mod.rs"]
mod support;

/// What the handlers share (Tornado's application settings and the
/// module-level `asyncio.Queue` of the original).
#[derive(Clone)]
struct AppState {
    connection: Connection,
    /// The messages of the queue `test`, as the consumer received them.
    messages: Arc<Mutex<mpsc::UnboundedReceiver<IncomingMessage>>>,
}

/// `GET /subscribe`: the body of the next message.
async fn subscribe(State(state): State<AppState>) -> Result<Bytes, StatusCode> {
    // One waiting request at a time takes the next message; `recv` loses
    // nothing when the client goes away while waiting.
    let message = state.messages.lock().await.recv().await;
    // `None`: the consumer stopped (the connection to the broker is lost).
    let message = message.ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(message.body().clone())
}

/// `POST /publish`: publishes the request body to the queue `test`.
async fn publish(State(state): State<AppState>, body: Bytes) -> Result<&'static str, StatusCode> {
    let internal_error = |error: pika::Error| {
        eprintln!(" [!] {error}");
        StatusCode::INTERNAL_SERVER_ERROR
    };
    // A channel per request, as in the original; channels are cheap.
    let channel = state.connection.channel().await.map_err(internal_error)?;
    let published = channel
        .default_exchange()
        .publish(Message::new(body), "test")
        .await;
    let _ = channel.close().await;
    published
        .and_then(pika::Confirmation::ensure_routed)
        .map_err(internal_error)?;
    Ok("OK")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    let connection = pika::connect_robust(&url).await?;

    let channel = connection.channel().await?;
    let queue = channel.declare_queue("test").auto_delete(true).await?;
    // The consumer hands every message to the `/subscribe` handlers.
    let (sender, receiver) = mpsc::unbounded_channel();
    queue
        .consume(move |message| {
            let _ = sender.send(message);
            async {}
        })
        .no_ack(true)
        .await?;

    let app = Router::new()
        .route("/publish", post(publish))
        .route("/subscribe", get(subscribe))
        .with_state(AppState {
            connection: connection.clone(),
            messages: Arc::new(Mutex::new(receiver)),
        });

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 8080,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("Listening on http://{}", listener.local_addr()?);

    // Serve until Ctrl-C. (Not a graceful shutdown: it would wait for the
    // `/subscribe` requests still waiting for a message.)
    tokio::select! {
        served = axum::serve(listener, app) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    connection.close().await?;
    Ok(())
}
