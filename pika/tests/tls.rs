//! TLS through pika's options ([`TlsOptions`]): PEM bytes in memory, a
//! ready rustls configuration, and their merging with a URL's settings, on
//! a second RabbitMQ node that this test starts (tests/support/tls-node at
//! the workspace root: its own ports, certificates made for the run) and
//! stops. The main node is untouched.
//!
//! One test function runs the scenarios in sequence: the node has fixed
//! ports and takes seconds to start, and nextest runs each test function in
//! its own process (test group `second-node`, one at a time).
//!
//! Needs the `tls` feature (a default one).

#![cfg(feature = "__tls")]

use std::sync::Arc;
use std::time::Duration;

use pika::rustls;
use pika::{AuthMechanism, ConnectOptions, Error, TlsOptions};
use pika_test_support::{unique, SecondNode};

#[tokio::test]
async fn tls_options_on_a_second_node() {
    let node = SecondNode::start();
    pem_bytes_log_in_with_the_client_certificate(&node).await;
    pem_bytes_replace_the_urls_ca_file(&node).await;
    a_ready_client_config_is_used_as_it_is(&node).await;
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .host("localhost")
        .port(SecondNode::TLS_PORT)
        .timeout(Duration::from_secs(10))
}

fn pem(node: &SecondNode, file: &str) -> Vec<u8> {
    std::fs::read(node.cert(file)).unwrap()
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

async fn pem_bytes_log_in_with_the_client_certificate(node: &SecondNode) {
    let name = unique("pika-pem");
    let connection = pika::connect_with(
        options()
            .auth_mechanism(AuthMechanism::External)
            .connection_name(&name)
            .ssl(
                TlsOptions::new()
                    .ca_pem(pem(node, "ca.pem"))
                    .client_cert_pem(pem(node, "client.pem"), pem(node, "client.key")),
            ),
    )
    .await
    .expect("EXTERNAL login with the client certificate given as PEM bytes");
    assert_eq!(logged_in_user(node, &name), "pika-tls-client");
    connection.close().await.unwrap();
}

async fn pem_bytes_replace_the_urls_ca_file(node: &SecondNode) {
    let url = format!(
        "amqps://localhost:{}/?cafile={}",
        SecondNode::TLS_PORT,
        node.cert("rogue-ca.pem").display()
    );
    let err = pika::connect(&url).await.unwrap_err();
    assert!(
        matches!(err, Error::Amqp(pika::amqp_conn::Error::Tls { .. })),
        "the rogue CA does not verify the node: {err:?}"
    );
    let connection = pika::connect_with(
        ConnectOptions::from_url(&url)
            .unwrap()
            .ssl(TlsOptions::new().ca_pem(pem(node, "ca.pem"))),
    )
    .await
    .expect("the PEM bytes replace the URL's CA file");
    connection.close().await.unwrap();
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

async fn a_ready_client_config_is_used_as_it_is(node: &SecondNode) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem(node, "ca.pem")) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(&pem(node, "client.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&pem(node, "client.key")).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let client_config = Arc::new(client_config);

    let name = unique("pika-client-config");
    let connection = pika::connect_with(
        options()
            .auth_mechanism(AuthMechanism::External)
            .connection_name(&name)
            .ssl(TlsOptions::new().client_config(client_config.clone())),
    )
    .await
    .expect("EXTERNAL login with the application's rustls ClientConfig");
    assert_eq!(logged_in_user(node, &name), "pika-tls-client");
    connection.close().await.unwrap();

    // A URL's CA file and a ready configuration contradict each other.
    let url = format!(
        "amqps://localhost:{}/?cafile={}",
        SecondNode::TLS_PORT,
        node.cert("ca.pem").display()
    );
    let err = pika::connect_with(
        ConnectOptions::from_url(&url)
            .unwrap()
            .ssl(TlsOptions::new().client_config(client_config)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Amqp(pika::amqp_conn::Error::Config(
                pika::amqp_conn::ConfigError::InvalidValue {
                    name: "client_config",
                    ..
                }
            ))
        ),
        "{err:?}"
    );
}
