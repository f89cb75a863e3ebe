//! Helpers for the integration tests against the local RabbitMQ.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use amqp_conn::{Channel, Connection, ConnectionConfig};
use amqp_wire::{QueueDeclare, QueueDelete, ShortString};

/// The broker the tests use: `AMQP_URL`, or the local RabbitMQ.
pub fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn config() -> ConnectionConfig {
    ConnectionConfig::from_url(&url()).expect("AMQP_URL parses")
}

pub async fn connect() -> Connection {
    Connection::open(config())
        .await
        .expect("connect to the local RabbitMQ")
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "pika-test-{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn s(text: &str) -> ShortString {
    ShortString::try_from(text).unwrap()
}

/// Declares a fresh auto-delete queue; returns its name.
pub async fn fresh_queue(channel: &Channel, prefix: &str) -> String {
    let name = unique(prefix);
    channel
        .call(QueueDeclare {
            queue: s(&name),
            auto_delete: false,
            ..Default::default()
        })
        .await
        .expect("declare queue");
    name
}

pub async fn delete_queue(channel: &Channel, name: &str) {
    let _ = channel
        .call(QueueDelete {
            queue: s(name),
            ..Default::default()
        })
        .await;
}

/// A TCP proxy to the broker that can stop forwarding (both ways) while
/// keeping the sockets open: the network silently drops.
pub struct FreezableProxy {
    pub port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    pub async fn start(target: &str) -> FreezableProxy {
        use std::sync::atomic::AtomicBool;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = std::sync::Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        let flag = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, flag.clone()));
                tokio::spawn(pump(sr, cw, flag.clone()));
            }
        });
        FreezableProxy { port, frozen, task }
    }

    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// Copies bytes from `from` to `to` until either side closes; while
/// `frozen` is set, bytes are read and dropped.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `rabbitmqctl` with `args` against the main node; returns stdout.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
