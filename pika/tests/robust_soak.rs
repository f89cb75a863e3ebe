//! The soak test of `connect_robust`: persistent messages published with
//! confirms to a durable queue and consumed with manual acks on one
//! robust connection, while the connection is forced down again and again
//! (proxy cuts, resets and black holes, `rabbitmqctl close_connection`)
//! and the broker's application is restarted twice. Every message is
//! accounted for by the total-queue checker: nothing confirmed is lost,
//! nothing unexpected arrives; duplicates and indeterminate outcomes are
//! counted. There is no recovery code here: the publisher publishes, the
//! consumer consumes and acks, whatever happens underneath.
//!
//! It runs on the throwaway second node (so that stopping its
//! application disturbs no other test), through the fault proxy. Its size
//! comes from the environment:
//!
//! - `PIKA_SOAK_MESSAGES` (default 2,000; the issue's full size is 10,000)
//! - `PIKA_SOAK_FAULTS` (default 20 connection faults, in turn: cut,
//!   reset, black hole, forced close)
//! - `PIKA_SOAK_RESTARTS` (default 2 restarts of the broker's application)
//! - `PIKA_SOAK_WINDOW` (default 32 publishes in flight at once)
//!
//! ```text
//! PIKA_SOAK_MESSAGES=10000 cargo nextest run -p pika-amqp --test robust_soak --no-capture
//! ```

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pika::{ConnectOptions, Connection, ConnectionEvent, ReconnectPolicy};
use pika_test_support::{BrokerAppLock, FaultProxy, Ledger, SecondNode};
use support::traffic::{self, from_env, percentile, restored, wait_for};
use support::unique;

/// Heartbeat interval: a black hole is found within two.
const HEARTBEAT_SECONDS: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Cut,
    Reset,
    BlackHole,
    ForcedClose,
    AppRestart,
}

/// What the events said about the recoveries, per fault.
#[derive(Debug, Default)]
struct Timings {
    /// Loss to restored, by fault.
    restored: Vec<(Fault, Duration)>,
    /// Fault to loss noticed, for black holes.
    black_hole_found: Vec<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_soak_loses_no_confirmed_message_through_faults_and_restarts() {
    let messages = from_env("PIKA_SOAK_MESSAGES", 2_000);
    let faults = from_env("PIKA_SOAK_FAULTS", 20) as usize;
    let restarts = from_env("PIKA_SOAK_RESTARTS", 2) as usize;
    let window = from_env("PIKA_SOAK_WINDOW", 32).max(1) as usize;

    let node = SecondNode::start();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", SecondNode::PLAIN_PORT))
        .await
        .unwrap();
    let name = unique("soak");
    let connection: Connection = pika::connect_robust_with(
        ConnectOptions::from_url(&proxy.url())
            .unwrap()
            .heartbeat(HEARTBEAT_SECONDS)
            .connection_name(&name)
            .reconnect(ReconnectPolicy::default().with_max_delay(Duration::from_millis(500))),
    )
    .await
    .unwrap();
    let queue_name = unique("soak");
    let publisher = connection.channel().await.unwrap();
    let queue = publisher
        .declare_queue(&queue_name)
        .durable(true)
        .await
        .unwrap();
    let consumer_channel = connection.channel().await.unwrap();
    consumer_channel
        .set_qos()
        .prefetch_count(100)
        .await
        .unwrap();
    let consumed_queue = consumer_channel.get_queue(&queue_name).await.unwrap();

    let ledger = Ledger::new();
    let (consuming, consumed) = traffic::consume(&consumed_queue, ledger.clone()).await;
    let load = traffic::Load {
        messages,
        window,
        rate: None,
    };
    let (publishing, progress) =
        traffic::publish(connection.clone(), queue_name.clone(), load, ledger.clone());

    // The faults, spread over the publishing: each waits for the
    // connection to be restored before the next.
    let mut schedule: Vec<Fault> = [
        Fault::Cut,
        Fault::Reset,
        Fault::BlackHole,
        Fault::ForcedClose,
    ]
    .into_iter()
    .cycle()
    .take(faults)
    .collect();
    for i in 0..restarts {
        let at = (i + 1) * schedule.len() / (restarts + 1);
        schedule.insert(at.min(schedule.len()), Fault::AppRestart);
    }
    let mut events = connection.events();
    let mut timings = Timings::default();
    let app = BrokerAppLock::acquire(node.node()).unwrap();
    for (round, fault) in schedule.iter().copied().enumerate() {
        // Let some traffic through between faults.
        let target = messages * (round as u64 + 1) / (schedule.len() as u64 + 1);
        progress.until_published(target).await;
        match fault {
            Fault::Cut => {
                proxy.cut().await;
            }
            Fault::Reset => {
                proxy.reset().await;
            }
            Fault::BlackHole => {
                let started = Instant::now();
                proxy.black_hole(true);
                let bound = Duration::from_secs(2 * u64::from(HEARTBEAT_SECONDS) + 1);
                wait_for(&mut events, bound, |event| {
                    matches!(event, ConnectionEvent::Disconnected { .. }).then_some(())
                })
                .await;
                timings.black_hole_found.push(started.elapsed());
                proxy.black_hole(false);
            }
            Fault::ForcedClose => {
                let node = node.node();
                let name = name.clone();
                tokio::task::spawn_blocking(move || {
                    node.close_connection_named(&name, "soak test")
                })
                .await
                .unwrap()
                .expect("close_connection");
            }
            Fault::AppRestart => {
                let stopped = tokio::task::block_in_place(|| app.stop_app()).unwrap();
                tokio::task::block_in_place(|| stopped.start_app()).unwrap();
            }
        }
        let took = wait_for(&mut events, Duration::from_secs(60), restored).await;
        timings.restored.push((fault, took));
    }
    drop(app);
    publishing.await.unwrap();

    // Every confirmed message must arrive; give the consumer time.
    traffic::until_delivered(&ledger, Duration::from_secs(60)).await;
    let report = ledger.check();

    let mut network: Vec<Duration> = timings
        .restored
        .iter()
        .filter(|(fault, _)| matches!(fault, Fault::Cut | Fault::Reset | Fault::ForcedClose))
        .map(|(_, took)| *took)
        .collect();
    network.sort();
    let mut all: Vec<Duration> = timings.restored.iter().map(|(_, took)| *took).collect();
    all.sort();
    let mut found = timings.black_hole_found.clone();
    found.sort();
    eprintln!(
        "soak: {messages} messages, {window} in flight, {} faults",
        schedule.len()
    );
    for (fault, took) in &timings.restored {
        eprintln!("  {fault:?}: restored in {took:?}");
    }
    eprintln!(
        "restored after a cut, reset or forced close: p50 {:?}, p99 {:?} ({} of them)",
        percentile(&network, 0.5),
        percentile(&network, 0.99),
        network.len()
    );
    eprintln!(
        "restored, every fault: p50 {:?}, p99 {:?}",
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
    eprintln!(
        "black holes found after: p50 {:?}, max {:?} (heartbeat {HEARTBEAT_SECONDS} s)",
        percentile(&found, 0.5),
        found.last().copied().unwrap_or_default()
    );
    eprintln!(
        "acks refused (delivery of a lost connection): {}",
        consumed.failed_acks.load(Ordering::Relaxed)
    );
    eprintln!("{report}");

    report.assert_safe();
    assert_eq!(report.published, messages as usize);
    assert_eq!(report.pending, 0, "every publish has an outcome");
    // Only publishes caught in flight by a fault end indeterminate.
    assert!(
        report.indeterminate <= window * schedule.len(),
        "{} indeterminate, at most {window} in flight at each of {} faults",
        report.indeterminate,
        schedule.len()
    );
    for found in &timings.black_hole_found {
        assert!(
            *found
                <= Duration::from_secs(2 * u64::from(HEARTBEAT_SECONDS))
                    + Duration::from_millis(500),
            "a black hole found after {found:?}"
        );
    }

    consuming.abort();
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
    drop(node);
}
