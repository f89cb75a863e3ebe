//! TLS and memory alarms, on a second RabbitMQ node that this test starts
//! (tests/support/tls-node at the workspace root: its own ports,
//! certificates made for the run)
//! and stops, so the main node's configuration and alarms are untouched.
//!
//! One test function runs the scenarios in sequence: the node has fixed
//! ports and takes seconds to start, and nextest runs each test function
//! in its own process.
//!
//! Needs the `tls` feature (a default one).

#![cfg(feature = "__tls")]

mod support;

use std::time::Duration;

use amqp_conn::rustls;
use amqp_conn::{
    AuthMechanism, Confirmation, Connection, ConnectionConfig, ConnectionEvent, Error, TlsConfig,
};
use amqp_wire::{BasicProperties, BasicPublish, QueueDeclare};
use bytes::Bytes;
use support::*;

const TLS_PORT: u16 = SecondNode::TLS_PORT;
const PLAIN_PORT: u16 = SecondNode::PLAIN_PORT;

fn tls_config(tls: TlsConfig) -> ConnectionConfig {
    ConnectionConfig::default()
        .with_host("localhost")
        .with_port(TLS_PORT)
        .with_tls(tls)
        .with_connection_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn tls_and_memory_alarms_on_a_second_node() {
    let node = SecondNode::start();
    tls_verified_connection(&node).await;
    tls_untrusted_certificate_is_refused(&node).await;
    tls_wrong_host_name_is_refused(&node).await;
    tls_verification_can_only_be_turned_off_dangerously(&node).await;
    mutual_tls_with_external_auth(&node).await;
    mutual_tls_with_pem_bytes(&node).await;
    tls_with_a_ready_client_config(&node).await;
    amqps_url_with_query_parameters(&node).await;
    memory_alarm_blocks_publishers_without_killing_the_connection(&node).await;
}

async fn tls_verified_connection(node: &SecondNode) {
    let config = tls_config(TlsConfig {
        ca_file: Some(node.cert("ca.pem")),
        ..Default::default()
    });
    let connection = Connection::open(config)
        .await
        .expect("a verified TLS connection");
    let channel = connection.open_channel().await.unwrap();
    channel.confirm_select().await.unwrap();
    let queue = unique("tls");
    channel
        .call(QueueDeclare {
            queue: s(&queue),
            exclusive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let confirm = channel
        .publish(
            BasicPublish {
                routing_key: s(&queue),
                ..Default::default()
            },
            BasicProperties::default(),
            Bytes::from(vec![1u8; 300_000]),
        )
        .await
        .unwrap();
    assert!(matches!(confirm.await, Confirmation::Ack));
    connection.close().await.unwrap();
}

async fn tls_untrusted_certificate_is_refused(node: &SecondNode) {
    let config = tls_config(TlsConfig {
        ca_file: Some(node.cert("rogue-ca.pem")),
        ..Default::default()
    });
    let err = Connection::open(config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

async fn tls_wrong_host_name_is_refused(node: &SecondNode) {
    let config = tls_config(TlsConfig {
        ca_file: Some(node.cert("ca.pem")),
        server_name: Some("not-the-broker.example".into()),
        ..Default::default()
    });
    let err = Connection::open(config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().contains("NotValidForName")
            || err.to_string().to_lowercase().contains("name"),
        "{err}"
    );
}

async fn tls_verification_can_only_be_turned_off_dangerously(node: &SecondNode) {
    let config = tls_config(TlsConfig {
        ca_file: Some(node.cert("rogue-ca.pem")),
        dangerous_accept_invalid_certs: true,
        ..Default::default()
    });
    let connection = Connection::open(config)
        .await
        .expect("connects without verification");
    connection.close().await.unwrap();
}

async fn mutual_tls_with_external_auth(node: &SecondNode) {
    let name = unique("external");
    let config = tls_config(TlsConfig {
        ca_file: Some(node.cert("ca.pem")),
        cert_file: Some(node.cert("client.pem")),
        key_file: Some(node.cert("client.key")),
        ..Default::default()
    })
    .with_auth_mechanism(AuthMechanism::External)
    .with_connection_name(&name);
    let connection = Connection::open(config)
        .await
        .expect("EXTERNAL login with the client certificate");
    let listing = node.ctl(&["-q", "list_connections", "user", "ssl", "client_properties"]);
    let line = listing
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("{name} not in {listing}"));
    assert!(
        line.starts_with("pika-tls-client"),
        "logged in as the certificate's CN: {line}"
    );
    connection.close().await.unwrap();
}

/// The user a connection named `name` logged in as, from the node's
/// listing.
fn logged_in_user(node: &SecondNode, name: &str) -> String {
    let listing = node.ctl(&["-q", "list_connections", "user", "client_properties"]);
    let line = listing
        .lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("{name} not in {listing}"));
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn mutual_tls_with_pem_bytes(node: &SecondNode) {
    let pem = |file: &str| std::fs::read(node.cert(file)).unwrap();
    let name = unique("pem-bytes");
    let config = tls_config(TlsConfig {
        ca_pem: Some(pem("ca.pem")),
        cert_pem: Some(pem("client.pem")),
        key_pem: Some(pem("client.key")),
        ..Default::default()
    })
    .with_auth_mechanism(AuthMechanism::External)
    .with_connection_name(&name);
    let connection = Connection::open(config)
        .await
        .expect("EXTERNAL login with the client certificate given as PEM bytes");
    assert_eq!(logged_in_user(node, &name), "pika-tls-client");
    connection.close().await.unwrap();

    let config = tls_config(TlsConfig {
        ca_pem: Some(pem("rogue-ca.pem")),
        ..Default::default()
    });
    let err = Connection::open(config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
}

/// The crypto provider of this build, for the test's own ClientConfig.
#[cfg(feature = "tls-ring")]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The crypto provider of this build, for the test's own ClientConfig.
#[cfg(not(feature = "tls-ring"))]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// A rustls configuration built by the application: trusts `ca`, presents
/// the node's client certificate.
fn ready_client_config(node: &SecondNode, ca: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(node.cert(ca)).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(node.cert("client.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(node.cert("client.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    std::sync::Arc::new(config)
}

async fn tls_with_a_ready_client_config(node: &SecondNode) {
    let name = unique("client-config");
    let config = tls_config(TlsConfig {
        client_config: Some(ready_client_config(node, "ca.pem")),
        ..Default::default()
    })
    .with_auth_mechanism(AuthMechanism::External)
    .with_connection_name(&name);
    let connection = Connection::open(config)
        .await
        .expect("EXTERNAL login with the application's rustls ClientConfig");
    assert_eq!(logged_in_user(node, &name), "pika-tls-client");
    connection.close().await.unwrap();

    // The ready configuration is used as it is: its roots decide.
    let config = tls_config(TlsConfig {
        client_config: Some(ready_client_config(node, "rogue-ca.pem")),
        ..Default::default()
    });
    let err = Connection::open(config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    // And server_name still applies to it.
    let config = tls_config(TlsConfig {
        client_config: Some(ready_client_config(node, "ca.pem")),
        server_name: Some("not-the-broker.example".into()),
        ..Default::default()
    });
    let err = Connection::open(config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
}

async fn amqps_url_with_query_parameters(node: &SecondNode) {
    let url = format!(
        "amqps://localhost:{TLS_PORT}/%2f?cafile={}&certfile={}&keyfile={}&auth_mechanism=EXTERNAL&heartbeat=5",
        node.cert("ca.pem").display(),
        node.cert("client.pem").display(),
        node.cert("client.key").display()
    );
    let connection = Connection::open(ConnectionConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(connection.tuning().heartbeat, 5);
    connection.close().await.unwrap();
}

async fn memory_alarm_blocks_publishers_without_killing_the_connection(node: &SecondNode) {
    let config = ConnectionConfig::default()
        .with_host("127.0.0.1")
        .with_port(PLAIN_PORT)
        .with_heartbeat(1);
    let connection = Connection::open(config).await.unwrap();
    let mut events = connection.events();
    let channel = connection.open_channel().await.unwrap();
    channel.confirm_select().await.unwrap();
    let queue = unique("blocked");
    channel
        .call(QueueDeclare {
            queue: s(&queue),
            exclusive: true,
            ..Default::default()
        })
        .await
        .unwrap();

    node.ctl(&["set_vm_memory_high_watermark", "0.000001"]);
    // The broker blocks a connection when it publishes during the alarm.
    let publish = || BasicPublish {
        routing_key: s(&queue),
        ..Default::default()
    };
    let first = channel
        .publish(
            publish(),
            BasicProperties::default(),
            Bytes::from_static(b"during the alarm"),
        )
        .await
        .unwrap();
    let blocked = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Ok(ConnectionEvent::Blocked { reason }) => break reason,
                Ok(_) => continue,
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .expect("connection.blocked within 15 s");
    assert!(blocked.contains("memory"), "{blocked}");

    // Silence for several heartbeat intervals is not death while blocked.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!connection.is_closed(), "{:?}", connection.close_reason());

    node.ctl(&["set_vm_memory_high_watermark", "0.4"]);
    let unblocked = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(ConnectionEvent::Unblocked) = events.recv().await {
                break;
            }
        }
    })
    .await;
    assert!(unblocked.is_ok(), "connection.unblocked within 15 s");
    assert!(matches!(first.await, Confirmation::Ack));
    connection.close().await.unwrap();
}
