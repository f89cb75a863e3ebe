//! Failover between two brokers: a robust connection given both
//! addresses carries on against the other broker when the one it is on
//! stops, with its exchange, queue, binding and consumer declared again
//! there, and the same handles.
//!
//! The two brokers are the main node (5672) and the throwaway second
//! node (5682), which are not clustered: what moves is the topology, not
//! the messages (the cluster test of `scripts/cluster` shows that part).

mod support;

use std::time::{Duration, Instant};

use pika::{ConnectionEvent, ExchangeType};
use pika_test_support::{BrokerAppLock, SecondNode};
use support::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_failover_to_the_other_broker_with_the_topology() {
    let node = SecondNode::start();
    let second = node.plain_url();
    let main = support::url();
    let connection = pika::connect_robust_urls([second.as_str(), main.as_str()])
        .await
        .unwrap();
    assert_eq!(
        connection.address(),
        format!("127.0.0.1:{}", SecondNode::PLAIN_PORT)
    );
    let mut events = connection.events();
    let channel = connection.channel().await.unwrap();
    let exchange = channel
        .declare_exchange(&unique("failover-x"))
        .kind(ExchangeType::Direct)
        .await
        .unwrap();
    let queue = channel.declare_queue(&unique("failover-q")).await.unwrap();
    queue.bind(&exchange, "k").await.unwrap();
    let mut iterator = queue.iterator().await.unwrap();
    support::publish_confirmed(&exchange, "on the second node", "k").await;
    support::receive(&mut iterator, "on the second node").await;

    // The broker in use stops.
    let app = BrokerAppLock::acquire(node.node()).unwrap();
    let stopping = Instant::now();
    let stopped = tokio::task::block_in_place(|| app.stop_app()).unwrap();
    let (lost_after, took, address) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut lost = None;
        loop {
            match events.recv().await {
                Ok(ConnectionEvent::Disconnected { .. }) => lost = Some(stopping.elapsed()),
                Ok(ConnectionEvent::Reconnected { took, address, .. }) => {
                    break (lost, took, address)
                }
                Ok(ConnectionEvent::Closed(error)) => panic!("closed: {error}"),
                _ => {}
            }
        }
    })
    .await
    .expect("reconnected to the other broker within 30 s");
    assert_eq!(address, "127.0.0.1:5672");
    assert_eq!(connection.address(), "127.0.0.1:5672");

    // The same handles, on the other broker, with the topology declared
    // again there: the exchange routes by the binding to the consumer.
    support::publish_confirmed(&exchange, "on the main node", "k").await;
    support::receive(&mut iterator, "on the main node").await;
    eprintln!(
        "failover: connection lost {lost_after:?} into stop_app, restored on {address} {took:?} after the loss; traffic resumed {:?} after stop_app began",
        stopping.elapsed()
    );

    tokio::task::block_in_place(|| stopped.start_app()).unwrap();
    support::delete_queue(&queue).await;
    exchange.delete().await.unwrap();
    connection.close().await.unwrap();
}
