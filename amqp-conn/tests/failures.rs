//! Refusals and failures from the real broker: login, vhost, 406,
//! heartbeat death, connection name, forced close.

mod support;

use std::time::Duration;

use amqp_conn::{Connection, ConnectionConfig, Error, Initiator};
use amqp_wire::*;
use support::*;

#[tokio::test]
async fn wrong_password_gives_the_authentication_error() {
    let config = config().with_credentials("guest", "not-the-password");
    let err = Connection::open(config).await.unwrap_err();
    let Error::AuthenticationFailed {
        username,
        mechanism,
        reason,
    } = &err
    else {
        panic!("expected AuthenticationFailed, got {err:?}")
    };
    assert_eq!((username.as_str(), *mechanism), ("guest", "PLAIN"));
    assert!(reason.contains("ACCESS_REFUSED"), "{reason}");
    assert!(!err.to_string().contains("not-the-password"));
}

#[tokio::test]
async fn amqplain_login_works() {
    let config = config().with_auth_mechanism(amqp_conn::AuthMechanism::AmqPlain);
    let connection = Connection::open(config).await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn unknown_vhost_is_refused_with_the_brokers_reason() {
    let config = config().with_vhost(unique("no-such-vhost"));
    let err = Connection::open(config).await.unwrap_err();
    let reason = err
        .close_reason()
        .unwrap_or_else(|| panic!("expected a close, got {err:?}"));
    assert_eq!(reason.code, ReplyCode::NOT_ALLOWED);
    assert_eq!(reason.initiator, Initiator::Broker);
    assert!(reason.text.contains("vhost"), "{}", reason.text);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let config = ConnectionConfig::default()
        .with_host("127.0.0.1")
        .with_port(1);
    let err = Connection::open(config).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"));
}

#[tokio::test]
async fn redeclare_with_other_flags_gives_406_and_the_connection_stays_usable() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let name = unique("redeclare");
    channel
        .call(QueueDeclare {
            queue: s(&name),
            durable: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = channel
        .call(QueueDeclare {
            queue: s(&name),
            durable: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::PRECONDITION_FAILED));
    assert!(err.is_channel_error());
    assert!(
        err.to_string().contains("PRECONDITION_FAILED (406)"),
        "{err}"
    );
    let other = connection.open_channel().await.unwrap();
    delete_queue(&other, &name).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn silence_on_the_wire_is_detected_by_heartbeats() {
    let proxy = FreezableProxy::start("127.0.0.1:5672").await;
    let config = config().with_port(proxy.port).with_heartbeat(1);
    let connection = Connection::open(config).await.unwrap();
    assert_eq!(connection.tuning().heartbeat, 1);
    let channel = connection.open_channel().await.unwrap();
    // Heartbeats keep an idle connection alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!connection.is_closed());
    let mut events = connection.events();
    proxy.freeze();
    let started = std::time::Instant::now();
    let pending = tokio::spawn({
        let channel = channel.clone();
        async move {
            channel
                .call(QueueDeclare {
                    queue: s(&unique("hb")),
                    ..Default::default()
                })
                .await
        }
    });
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("noticed within 10 s")
        .unwrap();
    assert!(
        matches!(
            event,
            amqp_conn::ConnectionEvent::Closed(Error::HeartbeatTimeout { .. })
        ),
        "{event:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = pending.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::HeartbeatTimeout { .. }), "{err:?}");
    assert!(connection.is_closed());
}

#[tokio::test]
async fn the_connection_name_shows_in_the_broker_and_a_forced_close_is_reported() {
    let name = unique("named-connection");
    let connection = Connection::open(config().with_connection_name(&name))
        .await
        .unwrap();
    let mut events = connection.events();
    let listing = rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"]);
    let line = listing
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("connection_name {name} not in:\n{listing}"));
    assert!(line.contains("connection_name"));
    let pid = line.split_whitespace().next().unwrap();
    rabbitmqctl(&["close_connection", pid, "closed by the test"]);
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    let amqp_conn::ConnectionEvent::Closed(err) = event else {
        panic!("{event:?}")
    };
    let reason = err.close_reason().expect("a close from the broker");
    assert_eq!(reason.code, ReplyCode::CONNECTION_FORCED);
    assert_eq!(reason.initiator, Initiator::Broker);
    assert!(reason.text.contains("closed by the test"));
    assert!(connection.open_channel().await.is_err());
}
