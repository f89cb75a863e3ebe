//! The pools against the local RabbitMQ: reuse, the maximum size, closed
//! channels and connections replaced, errors, and the `connection_pool`
//! example run as a program.

use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pika::{Channel, ConnectOptions, Connection, Message};
use pika_patterns::{ChannelManager, ChannelPool, ConnectionPool, Health, Pool, PoolError, Pooled};
use pika_test_support::{rabbitmqctl, unique, url};

/// How long a close by the broker may take to be noticed.
const NOTICE: Duration = Duration::from_secs(10);

fn connection_pool(max_size: usize) -> ConnectionPool {
    ConnectionPool::from_url(&url(), max_size).expect("a valid AMQP_URL")
}

/// A pool of connections made by a factory that counts them.
fn counting_connection_pool(max_size: usize) -> (Pool<Connection>, Arc<AtomicUsize>) {
    let created = Arc::new(AtomicUsize::new(0));
    let counter = created.clone();
    let pool = Pool::new(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let url = url();
            async move { pika::connect(&url).await }
        },
        max_size,
    );
    (pool, created)
}

/// Waits until `done` is true, at most [`NOTICE`].
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < NOTICE, "{what} within {NOTICE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Closes, on the broker, the connection named `name`.
fn close_on_broker(name: &str) {
    let listing = rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"]);
    let line = listing
        .lines()
        .find(|line| line.contains(name))
        .unwrap_or_else(|| panic!("connection_name {name} not in:\n{listing}"));
    let pid = line.split_whitespace().next().unwrap();
    rabbitmqctl(&["close_connection", pid, "closed by the pool test"]);
}

#[tokio::test]
async fn a_given_back_connection_is_handed_out_again() {
    let pool = connection_pool(2);

    let first = pool.acquire().await.unwrap();
    let id = Pooled::id(&first);
    assert_eq!(Pooled::metrics(&first).recycle_count, 0);
    drop(first);

    let again = pool.acquire().await.unwrap();
    assert_eq!(Pooled::id(&again), id, "the same connection");
    assert_eq!(Pooled::metrics(&again).recycle_count, 1);
    assert!(again.is_usable());
    assert_eq!(pool.status().size, 1);

    // One in use: the next acquire creates the second connection.
    let second = pool.acquire().await.unwrap();
    assert_ne!(Pooled::id(&second), id);
    assert_eq!(pool.status().size, 2);
}

#[tokio::test]
async fn a_factory_pool_creates_only_when_none_is_idle() {
    let (pool, created) = counting_connection_pool(2);
    for _ in 0..5 {
        let connection = pool.acquire().await.unwrap();
        connection.channel().await.unwrap();
    }
    assert_eq!(created.load(Ordering::SeqCst), 1);

    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    assert_eq!(created.load(Ordering::SeqCst), 2);
    drop((a, b));
    for _ in 0..5 {
        let _connection = pool.acquire().await.unwrap();
    }
    assert_eq!(created.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn acquire_waits_at_max_size_and_times_out_with_a_typed_error() {
    let (pool, created) = counting_connection_pool(2);
    let pool = pool.wait_timeout(Duration::from_millis(300));
    let first = pool.acquire().await.unwrap();
    let _second = pool.acquire().await.unwrap();

    let started = Instant::now();
    let error = pool.acquire().await.unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(
        matches!(
            error,
            PoolError::Timeout { max_size: 2, waited, .. } if waited == Duration::from_millis(300)
        ),
        "{error:?}"
    );
    assert!(error.is_timeout());
    assert_eq!(
        error.to_string(),
        "all 2 pooled items stayed in use for 300ms: give them back sooner, or raise max_size or the wait timeout"
    );
    assert_eq!(created.load(Ordering::SeqCst), 2, "never a third");

    // A waiting acquire gets the first connection given back.
    let id = Pooled::id(&first);
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { Pooled::id(&pool.acquire().await.unwrap()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(first);
    assert_eq!(waiter.await.unwrap(), id);
    assert_eq!(created.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_connection_pool_names_its_items_in_errors() {
    let pool = connection_pool(1).wait_timeout(Duration::ZERO);
    let _held = pool.acquire().await.unwrap();
    let error = pool.acquire().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("all 1 pooled connections stayed in use for 0ns"),
        "{error}"
    );

    let idle = pool.close();
    assert!(idle.is_empty(), "the only connection is in use");
    assert!(pool.is_closed());
    let error = pool.acquire().await.unwrap_err();
    assert!(matches!(error, PoolError::Closed { .. }), "{error:?}");
    assert_eq!(error.to_string(), "the connection pool is closed");
}

#[tokio::test]
async fn a_closed_channel_given_back_is_replaced() {
    let channels = ChannelPool::from_connections(connection_pool(1), 2);

    let channel = channels.acquire().await.unwrap();
    let first_id = Pooled::id(&channel);
    channel.close().await.unwrap();
    assert!(channel.is_closed());
    drop(channel);

    let channel = channels.acquire().await.unwrap();
    assert!(!channel.is_closed(), "a closed channel was handed out");
    assert_ne!(Pooled::id(&channel), first_id, "a new channel");
    assert_eq!(Pooled::metrics(&channel).recycle_count, 0);
    assert_eq!(channels.status().size, 1, "the closed one is gone");
    let queue = channel
        .declare_queue(&unique("pool-channel"))
        .exclusive(true)
        .await
        .unwrap();
    drop(queue);
}

#[tokio::test]
async fn a_factory_pool_of_channels_counts_the_replacement() {
    let connections = connection_pool(1);
    let created = Arc::new(AtomicUsize::new(0));
    let counter = created.clone();
    let channels: Pool<Channel, PoolError> = Pool::new(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let connections = connections.clone();
            async move {
                let connection = connections.acquire().await?;
                Ok(connection.channel().await?)
            }
        },
        10,
    );

    let channel = channels.acquire().await.unwrap();
    drop(channel);
    let channel = channels.acquire().await.unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 1);
    channel.close().await.unwrap();
    drop(channel);

    let channel = channels.acquire().await.unwrap();
    assert!(!channel.is_closed());
    assert_eq!(created.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_closed_by_the_broker_is_replaced() {
    let name = unique("pool-connection");
    let options = ConnectOptions::from_url(&url())
        .unwrap()
        .connection_name(&name);
    let connections = ConnectionPool::from_options(options, 2);
    let channels = ChannelPool::from_connections(connections.clone(), 2);

    // The channel's connection, given back once the channel opened.
    let channel = channels.acquire().await.unwrap();
    let channel_id = Pooled::id(&channel);
    let connection = connections.acquire().await.unwrap();
    let connection_id = Pooled::id(&connection);
    assert_eq!(connections.status().size, 1, "one connection for both");

    close_on_broker(&name);
    wait_until("the connection closed", || connection.is_closed()).await;
    wait_until("its channel closed", || channel.is_closed()).await;
    drop((connection, channel));

    let connection = connections.acquire().await.unwrap();
    assert!(
        !connection.is_closed(),
        "a closed connection was handed out"
    );
    assert_ne!(Pooled::id(&connection), connection_id);
    assert_eq!(connections.status().size, 1, "the closed one is gone");
    drop(connection);

    // The channel pool drops the dead channel and opens a new one on the
    // new connection.
    let channel = channels.acquire().await.unwrap();
    assert!(!channel.is_closed(), "a closed channel was handed out");
    assert_ne!(Pooled::id(&channel), channel_id);
    let queue_name = unique("pool-after-close");
    let queue = channel
        .declare_queue(&queue_name)
        .exclusive(true)
        .await
        .unwrap();
    channel
        .default_exchange()
        .publish(Message::new("still works"), &queue_name)
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    let message = queue.get().no_ack(true).await.unwrap().unwrap();
    assert_eq!(&message.body()[..], b"still works");
}

#[tokio::test]
async fn channels_of_a_factory_share_its_connection() {
    let connection = pika::connect(&url()).await.unwrap();
    let shared = connection.clone();
    let manager = ChannelManager::from_factory(move || {
        let connection = shared.clone();
        async move { Ok(connection) }
    })
    .publisher_confirms(false);
    let channels = ChannelPool::from_channel_manager(manager, 3);

    let (a, b) = (
        channels.acquire().await.unwrap(),
        channels.acquire().await.unwrap(),
    );
    assert_ne!(a.number(), b.number());
    assert!(!a.publisher_confirms());
    drop((a, b));
    connection.close().await.unwrap();
    let error = channels.acquire().await.unwrap_err();
    assert!(matches!(error, PoolError::Create(_)), "{error:?}");
}

/// An item that is not a pika type, with a switch for its health.
struct Item {
    usable: Arc<AtomicBool>,
}

impl Health for Item {
    fn is_usable(&self) -> bool {
        self.usable.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_factory_pool_drops_items_that_are_not_usable() {
    let created = Arc::new(AtomicUsize::new(0));
    let switches: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
    let pool = Pool::new(
        {
            let created = created.clone();
            let switches = switches.clone();
            move || {
                created.fetch_add(1, Ordering::SeqCst);
                let usable = Arc::new(AtomicBool::new(true));
                switches.lock().unwrap().push(usable.clone());
                async move { Ok::<_, std::io::Error>(Item { usable }) }
            }
        },
        1,
    );
    drop(pool.acquire().await.unwrap());
    drop(pool.acquire().await.unwrap());
    assert_eq!(created.load(Ordering::SeqCst), 1);

    switches.lock().unwrap()[0].store(false, Ordering::SeqCst);
    let item = pool.acquire().await.unwrap();
    assert!(item.is_usable());
    assert_eq!(created.load(Ordering::SeqCst), 2);

    // Taken out for good: the pool makes room for another.
    let _item: Item = Pooled::take(item);
    let _another = pool.acquire().await.unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failed_connect_is_a_create_error_with_the_pika_error_as_source() {
    // Nothing listens on port 1.
    let pool = ConnectionPool::from_url("amqp://guest:guest@127.0.0.1:1/", 2).unwrap();
    let error = pool.acquire().await.unwrap_err();
    let PoolError::Create(pika_error) = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(
            pika_error,
            pika::Error::Amqp(pika::amqp_conn::Error::Connect { .. })
        ),
        "{pika_error:?}"
    );
    assert_eq!(error.to_string(), "could not create a new pooled item");
    let source = error.source().expect("the pika error");
    assert!(
        source
            .to_string()
            .starts_with("could not connect to 127.0.0.1:1"),
        "{source}"
    );
    assert_eq!(pool.status().size, 0);

    // A channel pool on it says the same.
    let channels = ChannelPool::from_connections(pool, 2);
    let error = channels.acquire().await.unwrap_err();
    assert!(matches!(error, PoolError::Create(_)), "{error:?}");
}

/// The example binary, built by the shared example runner.
fn example_binary() -> std::path::PathBuf {
    pika_test_support::example_runner::examples_dir("pika-patterns").join("connection_pool")
}

/// Runs the example; returns its exit status, stdout and stderr.
async fn run_example(
    args: &[&str],
    max_messages: Option<&str>,
) -> (std::process::ExitStatus, String, String) {
    let mut command = tokio::process::Command::new(example_binary());
    command
        .args(args)
        .env("AMQP_URL", url())
        .env_remove("PIKA_EXAMPLE_MAX_MESSAGES")
        .kill_on_drop(true);
    if let Some(max) = max_messages {
        command.env("PIKA_EXAMPLE_MAX_MESSAGES", max);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the example ends within 60 s")
        .expect("run the example");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The example's queue, `pool_queue`, exists.
async fn pool_queue_exists() -> bool {
    let connection = pika::connect(&url()).await.unwrap();
    let channel = connection.channel().await.unwrap();
    let exists = channel.get_queue("pool_queue").await.is_ok();
    connection.close().await.unwrap();
    exists
}

#[tokio::test]
async fn the_example_publishes_and_consumes_through_the_pools() {
    let (status, stdout, stderr) = run_example(&[], Some("300")).await;
    assert!(
        status.success(),
        "{status}; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(stderr, "");

    let received: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with(" [x] Received \"Message "))
        .collect();
    assert_eq!(received.len(), 300, "stdout:\n{stdout}");
    for number in 0..300 {
        let prefix = format!(" [x] Received \"Message {number} on channel ");
        assert_eq!(
            received.iter().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "message {number} once; stdout:\n{stdout}"
        );
    }
    assert!(stdout.contains(" [x] Published 300 messages\n"), "{stdout}");
    let summary = stdout
        .lines()
        .find(|line| line.starts_with(" [x] Received 300 messages, on "))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    // " [x] Received 300 messages, on C pooled channels over N pooled connections"
    let words: Vec<&str> = summary.split_whitespace().collect();
    let channels: usize = words[5].parse().unwrap();
    let connections: usize = words[9].parse().unwrap();
    assert!((2..=10).contains(&channels), "{summary}");
    assert!((1..=2).contains(&connections), "{summary}");
    assert!(stdout.ends_with(" [x] Deleted pool_queue\n"), "{stdout}");
    assert!(!pool_queue_exists().await, "the example deletes its queue");

    // The count as an argument.
    let (status, stdout, stderr) = run_example(&["7"], None).await;
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert!(stdout.contains(" [x] Received 7 messages"), "{stdout}");
}

#[tokio::test]
async fn the_example_says_what_is_wrong_in_one_line() {
    let (status, stdout, stderr) = run_example(&["many"], None).await;
    assert_eq!(status.code(), Some(1), "stdout:\n{stdout}");
    assert_eq!(
        stderr,
        "error: the message count must be a number, not \"many\"\n"
    );
}
