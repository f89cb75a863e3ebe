//! Connects over TLS with a client certificate and logs in with it (SASL
//! EXTERNAL, no password), then publishes `Hello test_queue` to the queue
//! `test_queue`.
//!
//! Python original: "External credentials example" of the aio-pika quick
//! start.
//!
//! It needs a broker with a TLS listener that asks for client certificates
//! (`ssl_options.verify = verify_peer`,
//! `ssl_options.fail_if_no_peer_cert = true`) and the
//! `rabbitmq_auth_mechanism_ssl` plugin enabled
//! (`auth_mechanisms.1 = EXTERNAL`), and a RabbitMQ user named like the
//! certificate's subject (the CN, with `ssl_cert_login_from = common_name`).
//!
//! Settings, from the environment:
//! - `AMQP_URL`: the broker (default `amqps://localhost:5671/`); the
//!   server certificate must be valid for its host name
//! - `PIKA_TLS_CA`: PEM file of the CA that signed the server certificate
//!   (default `cacert.pem`)
//! - `PIKA_TLS_CERT`, `PIKA_TLS_KEY`: the client certificate chain and its
//!   private key, PEM (default `cert.pem` and `key.pem`)
//!
//! ```text
//! PIKA_TLS_CA=ca.pem PIKA_TLS_CERT=client.pem PIKA_TLS_KEY=client.key \
//!     AMQP_URL=amqps://localhost:5671/ cargo run --example external_credentials
//! ```

use pika::{AuthMechanism, ConnectOptions, Message, TlsOptions};

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let setting =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let url = setting("AMQP_URL", "amqps://localhost:5671/");

    let tls = TlsOptions::new()
        // Verify the server against this CA (instead of the platform's)
        .ca_file(setting("PIKA_TLS_CA", "cacert.pem"))
        // and present our certificate: it is our identity.
        .client_cert(
            setting("PIKA_TLS_CERT", "cert.pem"),
            setting("PIKA_TLS_KEY", "key.pem"),
        );
    let options = ConnectOptions::from_url(&url)?
        .ssl(tls)
        .auth_mechanism(AuthMechanism::External);
    let connection = pika::connect_robust_with(options).await?;

    let routing_key = "test_queue";
    let channel = connection.channel().await?;
    let confirmation = channel
        .default_exchange()
        .publish(Message::new(format!("Hello {routing_key}")), routing_key)
        .await?;
    println!(" [x] Sent 'Hello {routing_key}'");
    if let pika::Confirmation::Returned(_) = confirmation {
        // Mandatory by default: without a queue the broker returns it.
        println!(" [!] No queue '{routing_key}' on this broker: the message came back");
    }

    connection.close().await?;
    Ok(())
}
