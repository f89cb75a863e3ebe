//! Master/Worker against the real broker: tasks spread over workers, and
//! every handler outcome settles the task's message as documented.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pika::Message;
use pika_patterns::{Master, NackMessage, PatternError, QueueOptions, RejectMessage, TaskError};
use pika_test_support::{unique, url};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Task {
    id: u32,
}

async fn connect() -> pika::Connection {
    pika::connect(&url())
        .await
        .expect("connect to the local RabbitMQ")
}

/// Waits up to 10 s for `condition`.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

/// Messages in `queue` now (passive declare).
async fn count(channel: &pika::Channel, queue: &str) -> u32 {
    channel
        .get_queue(queue)
        .await
        .unwrap()
        .declared_message_count()
}

/// A task queue whose rejected and nacked messages go to a second queue.
fn dead_lettered_to(dead: &str) -> QueueOptions {
    QueueOptions::durable()
        .auto_delete(true)
        .argument("x-dead-letter-exchange", "")
        .argument("x-dead-letter-routing-key", dead)
}

#[tokio::test]
async fn tasks_are_spread_across_two_workers() {
    let connection = connect().await;
    let name = unique("tasks");
    let mut counts = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let channel = connection.channel().await.unwrap();
        channel.set_qos().prefetch_count(1).await.unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let seen = done.clone();
        let master = Master::new(channel);
        workers.push(
            master
                .create_worker(
                    &name,
                    move |_task: Task| {
                        let seen = seen.clone();
                        async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            seen.fetch_add(1, Ordering::SeqCst);
                            Ok::<(), TaskError>(())
                        }
                    },
                    QueueOptions::durable().auto_delete(true),
                )
                .await
                .unwrap(),
        );
        counts.push(done);
    }
    let master = Master::new(connection.channel().await.unwrap());
    for id in 0..20 {
        master.create_task(&name, &Task { id }).await.unwrap();
    }
    eventually("all 20 tasks done", || {
        counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum::<usize>()
            == 20
    })
    .await;
    let per_worker: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "one worker took everything: {per_worker:?}"
    );
    for worker in &workers {
        worker.close().await.unwrap();
    }
    connection.close().await.unwrap();
}

#[tokio::test]
async fn reject_and_nack_without_requeue_dead_letter_the_task() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let dead = channel
        .declare_queue(&unique("dead"))
        .exclusive(true)
        .await
        .unwrap();
    let name = unique("outcomes");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let master = Master::new(channel.clone());
    let worker = master
        .create_worker(
            &name,
            move |task: Task| {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    match task.id {
                        1 => Err(TaskError::from(RejectMessage { requeue: false })),
                        _ => Err(NackMessage { requeue: false }.into()),
                    }
                }
            },
            dead_lettered_to(dead.name()),
        )
        .await
        .unwrap();
    for id in 1..=2 {
        master.create_task(&name, &Task { id }).await.unwrap();
    }
    eventually("2 tasks dead-lettered", || {
        calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let message = loop {
            if let Some(message) = dead.get().fail(false).await.unwrap() {
                break message;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        reasons.push(message.x_death().unwrap()[0].reason.to_string());
        message.ack(false).unwrap();
    }
    assert_eq!(reasons, ["rejected", "rejected"]);
    worker.close().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_requeued_task_comes_back_to_the_worker() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let name = unique("requeue");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let master = Master::new(channel.clone());
    let worker = master
        .create_worker(
            &name,
            move |_task: Task| {
                let seen = seen.clone();
                async move {
                    match seen.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(RejectMessage { requeue: true }.into()),
                        1 => Err(NackMessage { requeue: true }.into()),
                        _ => Ok(()),
                    }
                }
            },
            QueueOptions::durable().auto_delete(true),
        )
        .await
        .unwrap();
    master.create_task(&name, &Task { id: 9 }).await.unwrap();
    eventually("the task ran three times", || {
        calls.load(Ordering::SeqCst) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "acked on the third run");
    assert_eq!(count(&channel, &name).await, 0);
    worker.close().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn failing_panicking_and_unreadable_tasks_are_rejected_and_the_worker_goes_on() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let dead = channel
        .declare_queue(&unique("dead"))
        .exclusive(true)
        .await
        .unwrap();
    let name = unique("failures");
    let done = Arc::new(AtomicUsize::new(0));
    let seen = done.clone();
    let master = Master::new(channel.clone());
    let worker = master
        .create_worker(
            &name,
            move |task: Task| {
                let seen = seen.clone();
                async move {
                    match task.id {
                        0 => panic!("task 0 panics"),
                        1 => Err(std::io::Error::other("task 1 fails"))?,
                        _ => {}
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
            dead_lettered_to(dead.name()),
        )
        .await
        .unwrap();
    master.create_task(&name, &Task { id: 0 }).await.unwrap();
    master.create_task(&name, &Task { id: 1 }).await.unwrap();
    // Not JSON, and not even labelled as JSON.
    let _ = channel
        .default_exchange()
        .publish(Message::new("plain text").content_type("text/plain"), &name)
        .await
        .unwrap();
    // Labelled JSON but not a Task.
    let _ = channel
        .default_exchange()
        .publish(
            Message::new("[1,2]").content_type("application/json"),
            &name,
        )
        .await
        .unwrap();
    for id in 2..5 {
        master.create_task(&name, &Task { id }).await.unwrap();
    }
    eventually("the good tasks done", || done.load(Ordering::SeqCst) == 3).await;
    let dead_name = dead.name().to_string();
    let mut dead_count = 0;
    for _ in 0..100 {
        dead_count = count(&channel, &dead_name).await;
        if dead_count == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        dead_count, 4,
        "panic, failure and two unreadable payloads dead-lettered"
    );
    worker.close().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_task_nobody_takes_is_an_error_not_a_success() {
    let connection = connect().await;
    let master = Master::new(connection.channel().await.unwrap());
    let refused = master
        .create_task(&unique("no-worker"), &Task { id: 1 })
        .await
        .unwrap_err();
    assert!(
        matches!(refused, PatternError::NoRoute { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("start a worker"), "{refused}");
    connection.close().await.unwrap();
}
