//! RPC against the real broker: round trips over direct reply-to and a
//! private queue, remote errors, timeouts, many calls at once, calls that
//! end at once when their channel dies, and stray replies counted.

use std::time::{Duration, Instant};

use pika_patterns::{
    Json, PatternError, QueueOptions, ReplyQueue, Rpc, SerializeError, Serializer,
};
use pika_test_support::{unique, url};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Multiply {
    x: i64,
    y: i64,
}

async fn connect() -> pika::Connection {
    pika::connect(&url())
        .await
        .expect("connect to the local RabbitMQ")
}

/// An `Rpc` on a channel of its own.
async fn rpc(connection: &pika::Connection) -> Rpc {
    Rpc::create(connection.channel().await.unwrap())
        .await
        .unwrap()
}

/// An `Rpc` on its own channel serving `method` with `handler` (an
/// auto-delete queue).
async fn serve<A, R, E, F, Fut>(connection: &pika::Connection, method: &str, handler: F) -> Rpc
where
    A: serde::de::DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R, E>> + Send + 'static,
{
    let server = rpc(connection).await;
    server
        .register(method, handler, QueueOptions::transient().auto_delete(true))
        .await
        .unwrap();
    server
}

/// A callee serving `multiply` under `method` on its own channel.
async fn callee(connection: &pika::Connection, method: &str) -> Rpc {
    serve(connection, method, |args: Multiply| async move {
        Ok::<i64, std::convert::Infallible>(args.x * args.y)
    })
    .await
}

const FIVE_SECONDS: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_call_gets_its_reply_over_direct_reply_to() {
    let connection = connect().await;
    let method = unique("multiply");
    let server = callee(&connection, &method).await;
    let caller = rpc(&connection).await;
    for y in 0..10 {
        let product: i64 = caller
            .call(&method, &Multiply { x: 100, y })
            .timeout(FIVE_SECONDS)
            .await
            .unwrap();
        assert_eq!(product, 100 * y);
    }
    assert_eq!(caller.unknown_replies(), 0);
    server.close().await.unwrap();
    caller.close().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_call_gets_its_reply_over_a_private_callback_queue() {
    let connection = connect().await;
    let method = unique("multiply");
    let server = callee(&connection, &method).await;
    let caller = Rpc::create_with(
        connection.channel().await.unwrap(),
        Json,
        ReplyQueue::Private,
    )
    .await
    .unwrap();
    let product: i64 = caller
        .call(&method, &Multiply { x: 6, y: 7 })
        .timeout(FIVE_SECONDS)
        .await
        .unwrap();
    assert_eq!(product, 42);
    server.close().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_handler_error_comes_back_as_a_typed_remote_error() {
    let connection = connect().await;
    let method = unique("divide");
    let _server = serve(&connection, &method, |args: Multiply| async move {
        if args.y == 0 {
            Err(format!("cannot divide {} by zero", args.x))
        } else {
            Ok(args.x / args.y)
        }
    })
    .await;
    let caller = rpc(&connection).await;
    let error = caller
        .call::<_, i64>(&method, &Multiply { x: 1, y: 0 })
        .timeout(FIVE_SECONDS)
        .await
        .unwrap_err();
    match &error {
        PatternError::Remote {
            method: m,
            kind,
            message,
        } => {
            assert_eq!(m, &method);
            assert_eq!(kind, "alloc::string::String");
            assert_eq!(message, "cannot divide 1 by zero");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    assert!(
        error.to_string().contains("cannot divide 1 by zero"),
        "{error}"
    );
    // The server goes on.
    let quotient: i64 = caller
        .call(&method, &Multiply { x: 9, y: 3 })
        .timeout(FIVE_SECONDS)
        .await
        .unwrap();
    assert_eq!(quotient, 3);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_handler_panic_and_unreadable_arguments_come_back_as_remote_errors() {
    let connection = connect().await;
    let method = unique("panics");
    let _server = serve(&connection, &method, |args: Multiply| async move {
        if args.x < 0 {
            panic!("negative");
        }
        Ok::<i64, std::convert::Infallible>(args.x)
    })
    .await;
    let caller = rpc(&connection).await;
    let panicked = caller
        .call::<_, i64>(&method, &Multiply { x: -1, y: 0 })
        .timeout(FIVE_SECONDS)
        .await
        .unwrap_err();
    assert!(
        panicked.to_string().contains("the handler panicked"),
        "{panicked}"
    );
    let unreadable = caller
        .call::<_, i64>(&method, &"not a Multiply")
        .timeout(FIVE_SECONDS)
        .await
        .unwrap_err();
    assert!(
        matches!(&unreadable, PatternError::Remote { message, .. } if message.contains("deserialize")),
        "{unreadable:?}"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_call_nobody_serves_times_out_and_a_call_to_no_queue_is_refused() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    // The queue exists, but no handler consumes it.
    let method = unique("unserved");
    let queue = channel
        .declare_queue(&method)
        .exclusive(true)
        .await
        .unwrap();
    let caller = rpc(&connection).await;
    let started = Instant::now();
    let error = caller
        .call::<_, i64>(&method, &Multiply { x: 1, y: 1 })
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(error, PatternError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The request expired with the call (its expiration is the timeout).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        queue.get().fail(false).await.unwrap().is_none(),
        "the request expired"
    );

    let error = caller
        .call::<_, i64>(&unique("no-such-queue"), &Multiply { x: 1, y: 1 })
        .timeout(FIVE_SECONDS)
        .await
        .unwrap_err();
    assert!(matches!(error, PatternError::NoRoute { .. }), "{error:?}");
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_thousand_concurrent_calls_each_get_their_own_reply() {
    let connection = connect().await;
    let method = unique("multiply");
    let server_channel = connection.channel().await.unwrap();
    server_channel.set_qos().prefetch_count(100).await.unwrap();
    let server = Rpc::create(server_channel).await.unwrap();
    server
        .register(
            &method,
            |args: Multiply| async move {
                // Answer out of order.
                tokio::time::sleep(Duration::from_millis((args.y % 7) as u64)).await;
                Ok::<i64, std::convert::Infallible>(args.x * args.y)
            },
            QueueOptions::transient().auto_delete(true),
        )
        .await
        .unwrap();
    let caller = rpc(&connection).await;
    let mut calls = tokio::task::JoinSet::new();
    for y in 0..1000 {
        let caller = caller.clone();
        let method = method.clone();
        calls.spawn(async move {
            let product: i64 = caller
                .call(&method, &Multiply { x: 3, y })
                .timeout(Duration::from_secs(30))
                .await
                .unwrap();
            (y, product)
        });
    }
    let mut answered = 0;
    while let Some(result) = calls.join_next().await {
        let (y, product) = result.unwrap();
        assert_eq!(product, 3 * y, "call {y} got another call's reply");
        answered += 1;
    }
    assert_eq!(answered, 1000);
    assert_eq!(caller.unknown_replies(), 0);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn calls_in_flight_end_at_once_when_the_channel_closes() {
    let connection = connect().await;
    let method = unique("slow");
    let _server = serve(&connection, &method, |_: Multiply| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<i64, std::convert::Infallible>(0)
    })
    .await;
    let caller_channel = connection.channel().await.unwrap();
    let caller = Rpc::create(caller_channel.clone()).await.unwrap();
    let waiting = {
        let caller = caller.clone();
        let method = method.clone();
        tokio::spawn(async move {
            caller
                .call::<_, i64>(&method, &Multiply { x: 1, y: 1 })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed_at = Instant::now();
    caller_channel.close().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the call ends at once, without a timeout of its own")
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, PatternError::Closed { .. }), "{error:?}");
    assert!(closed_at.elapsed() < Duration::from_secs(2));
    // And a new call on the closed Rpc fails at once too.
    let error = caller
        .call::<_, i64>(&method, &Multiply { x: 1, y: 1 })
        .await
        .unwrap_err();
    assert!(matches!(error, PatternError::Closed { .. }), "{error:?}");
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_reply_after_its_call_gave_up_is_dropped_and_counted() {
    let connection = connect().await;
    let method = unique("late");
    let _server = serve(&connection, &method, |args: Multiply| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<i64, std::convert::Infallible>(args.x)
    })
    .await;
    let caller = rpc(&connection).await;
    let error = caller
        .call::<_, i64>(&method, &Multiply { x: 1, y: 1 })
        .timeout(Duration::from_millis(100))
        .expiration(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, PatternError::Timeout { .. }), "{error:?}");
    for _ in 0..100 {
        if caller.unknown_replies() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(caller.unknown_replies(), 1);
    connection.close().await.unwrap();
}

/// Another format: plain decimal text.
struct Decimal;

impl Serializer for Decimal {
    fn content_type(&self) -> &str {
        "text/x-decimal"
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<bytes::Bytes, SerializeError> {
        Ok(serde_json::to_string(value)?.into())
    }

    fn deserialize<T: serde::de::DeserializeOwned>(
        &self,
        body: &[u8],
    ) -> Result<T, SerializeError> {
        Ok(serde_json::from_slice(body)?)
    }
}

#[tokio::test]
async fn a_call_in_another_format_is_refused_with_a_clear_error() {
    let connection = connect().await;
    let method = unique("multiply");
    let _server = callee(&connection, &method).await;
    let caller = Rpc::create_with(
        connection.channel().await.unwrap(),
        Decimal,
        ReplyQueue::DirectReplyTo,
    )
    .await
    .unwrap();
    let error = caller
        .call::<_, i64>(&method, &Multiply { x: 1, y: 1 })
        .timeout(FIVE_SECONDS)
        .await
        .unwrap_err();
    // The callee refuses the call (JSON expected); its error reply is JSON,
    // which this caller refuses in turn: both say what was expected.
    let text = error.to_string();
    assert!(
        text.contains("unexpected format") && text.contains("application/json"),
        "{text}"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn unregister_stops_serving_and_registering_twice_is_refused() {
    let connection = connect().await;
    let method = unique("multiply");
    let server = callee(&connection, &method).await;
    let again = server
        .register(
            &method,
            |_: Multiply| async move { Ok::<i64, std::convert::Infallible>(0) },
            QueueOptions::transient(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(again, PatternError::AlreadyRegistered { .. }),
        "{again:?}"
    );
    server.unregister(&method).await.unwrap();
    // The auto-delete queue went with its consumer: nobody takes the call.
    let caller = rpc(&connection).await;
    let error = caller
        .call::<_, i64>(&method, &Multiply { x: 1, y: 1 })
        .timeout(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(error, PatternError::NoRoute { .. }), "{error:?}");
    assert!(matches!(
        server.unregister(&method).await.unwrap_err(),
        PatternError::NotRegistered { .. }
    ));
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_result_that_cannot_be_serialized_comes_back_as_a_remote_error() {
    let connection = connect().await;
    let method = unique("unserializable");
    // JSON object keys must be strings: a map keyed by lists has no JSON form.
    let _server = serve(&connection, &method, |_: Multiply| async move {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        Ok::<_, std::convert::Infallible>(map)
    })
    .await;
    let caller = rpc(&connection).await;
    let error = caller
        .call::<_, serde_json::Value>(&method, &Multiply { x: 1, y: 1 })
        .timeout(FIVE_SECONDS)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PatternError::Remote { message, .. } if message.contains("could not serialize the reply")),
        "{error:?}"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn close_ends_a_waiting_call_at_once() {
    let connection = connect().await;
    let method = unique("never");
    let _server = serve(&connection, &method, |_: Multiply| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<i64, std::convert::Infallible>(0)
    })
    .await;
    let caller = rpc(&connection).await;
    let waiting = {
        let caller = caller.clone();
        let method = method.clone();
        tokio::spawn(async move {
            caller
                .call::<_, i64>(&method, &Multiply { x: 1, y: 1 })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    caller.close().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the call ends with the close")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&error, PatternError::Closed { reason, .. } if reason.contains("closed")),
        "{error:?}"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn two_concurrent_registrations_of_one_method_leave_one_handler() {
    let connection = connect().await;
    let method = unique("twice");
    let server = rpc(&connection).await;
    let register = || {
        server.register(
            &method,
            |args: Multiply| async move { Ok::<i64, std::convert::Infallible>(args.x) },
            QueueOptions::transient(),
        )
    };
    let (first, second) = tokio::join!(register(), register());
    let refused = [&first, &second]
        .iter()
        .filter(|r| matches!(r, Err(PatternError::AlreadyRegistered { .. })))
        .count();
    assert_eq!(refused, 1, "{first:?} {second:?}");
    assert!(first.is_ok() || second.is_ok());
    server.unregister(&method).await.unwrap();
    let queue = connection
        .channel()
        .await
        .unwrap()
        .get_queue(&method)
        .await
        .unwrap();
    assert_eq!(
        queue.declared_consumer_count(),
        0,
        "a consumer was left behind"
    );
    queue
        .delete()
        .if_unused(false)
        .if_empty(false)
        .await
        .unwrap();
    connection.close().await.unwrap();
}

/// On a robust connection, Rpc works unchanged across a reconnection:
/// the callee's queue and consumer and the caller's direct reply-to
/// consumer come back without any code here.
#[tokio::test]
async fn calls_go_on_after_a_reconnection_of_a_robust_connection() {
    let proxy = pika_test_support::FaultProxy::start("127.0.0.1:5672")
        .await
        .unwrap();
    let connection = pika::connect_robust(&proxy.url()).await.unwrap();
    let mut events = connection.events();
    let method = unique("robust-multiply");
    let _callee = callee(&connection, &method).await;
    let caller = rpc(&connection).await;
    let product: i64 = caller
        .call(&method, &Multiply { x: 6, y: 7 })
        .await
        .unwrap();
    assert_eq!(product, 42);

    proxy.cut().await;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(pika::ConnectionEvent::Reconnected { .. }) = events.recv().await {
                break;
            }
        }
    })
    .await
    .expect("reconnected");
    let product: i64 =
        tokio::time::timeout(FIVE_SECONDS, caller.call(&method, &Multiply { x: 7, y: 8 }))
            .await
            .expect("the call is answered after the reconnection")
            .unwrap();
    assert_eq!(product, 56);
    connection.close().await.unwrap();
}
