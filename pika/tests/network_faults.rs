//! When the network fails under a plain connection (no reconnection),
//! every pending operation ends with a typed connection error instead of
//! hanging, and a publish whose confirm was pending is Indeterminate, never
//! a success: the README's promise, shown through the fault proxy for a
//! cut (FIN), a reset (RST) and a black hole (silence, found by
//! heartbeats).

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pika::{ConnectOptions, Error, Message};
use pika_test_support::FaultProxy;
use support::unique;

/// How the network fails.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Cut,
    Reset,
    BlackHole,
}

/// Heartbeat of the connections under test: a black hole is found after
/// about two intervals.
const HEARTBEAT_SECONDS: u16 = 1;

/// Every operation must end within this after the fault.
const BOUND: Duration = Duration::from_secs(6);

async fn every_pending_operation_ends_with_a_connection_error(fault: Fault) {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = pika::connect_with(
        ConnectOptions::from_url(&proxy.url())
            .unwrap()
            .heartbeat(HEARTBEAT_SECONDS),
    )
    .await
    .unwrap();
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("faults"))
        .exclusive(true)
        .await
        .unwrap();
    let mut iterator = queue.iterator().await.unwrap();

    // Silence first for the black hole, so that what follows is pending
    // when the fault is found; a cut or reset comes after the requests.
    if let Fault::BlackHole = fault {
        proxy.black_hole(true);
    }
    let pending_publish = channel
        .default_exchange()
        .publish(Message::new("in flight"), queue.name())
        .send()
        .await
        .expect("the publish is queued");
    let pending_declare = {
        let channel = channel.clone();
        let name = unique("faults-declare");
        tokio::spawn(async move { channel.declare_queue(&name).exclusive(true).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let faulted_at = Instant::now();
    match fault {
        Fault::Cut => {
            proxy.cut().await;
        }
        Fault::Reset => {
            proxy.reset().await;
        }
        Fault::BlackHole => {}
    }

    let confirm = tokio::time::timeout(BOUND, pending_publish)
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: the confirm never ended"));
    match confirm {
        // Confirmed before a cut or reset landed: a true answer.
        Ok(confirmation) if !matches!(fault, Fault::BlackHole) => {
            assert!(confirmation.is_ack(), "{fault:?}: {confirmation:?}")
        }
        Ok(confirmation) => panic!("{fault:?}: a success through a black hole: {confirmation:?}"),
        Err(Error::Indeterminate(_)) => {}
        Err(other) => panic!("{fault:?}: expected Indeterminate, got {other:?}"),
    }

    let declared = tokio::time::timeout(BOUND, pending_declare)
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: the declare never ended"))
        .unwrap();
    if let Fault::BlackHole = fault {
        let error = declared.expect_err("no answer can cross a black hole");
        assert!(error.is_connection_error(), "{fault:?}: {error:?}");
    }

    // The iterator yields what arrived before the fault (with a cut or a
    // reset the publish may have made it round), then the connection's
    // error, then ends.
    loop {
        let item = tokio::time::timeout(BOUND, iterator.next())
            .await
            .unwrap_or_else(|_| panic!("{fault:?}: the iterator hung"));
        match item {
            Some(Ok(message)) if !matches!(fault, Fault::BlackHole) => {
                assert_eq!(message.body().as_ref(), b"in flight");
            }
            Some(Err(error)) => {
                assert!(error.is_connection_error(), "{fault:?}: {error:?}");
                break;
            }
            other => panic!("{fault:?}: expected the connection's error, got {other:?}"),
        }
    }
    assert!(
        iterator.next().await.is_none(),
        "{fault:?}: the iterator ends"
    );

    // And a new operation fails at once.
    let started = Instant::now();
    let error = channel
        .declare_queue(&unique("after"))
        .exclusive(true)
        .await
        .unwrap_err();
    assert!(error.is_connection_error(), "{fault:?}: {error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(connection.is_closed());
    eprintln!(
        "{fault:?}: everything ended {:?} after the fault",
        faulted_at.elapsed()
    );
}

#[tokio::test]
async fn a_cut_ends_every_pending_operation_with_a_connection_error() {
    every_pending_operation_ends_with_a_connection_error(Fault::Cut).await;
}

#[tokio::test]
async fn a_reset_ends_every_pending_operation_with_a_connection_error() {
    every_pending_operation_ends_with_a_connection_error(Fault::Reset).await;
}

#[tokio::test]
async fn a_black_hole_is_found_by_heartbeats_and_ends_every_pending_operation() {
    every_pending_operation_ends_with_a_connection_error(Fault::BlackHole).await;
}
