//! Connecting, and the connection handle.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use amqp_conn::{ConnectionConfig, ConnectionEvent, ReconnectPolicy, TlsConfig};
use amqp_wire::{FieldTable, FieldValue};

use crate::channel::Channel;
use crate::error::{Error, Result};

/// Connects to the broker at `url` (`amqp://user:pass@host:port/vhost`,
/// percent-encoded; `amqps://` for TLS; query parameters as in
/// [`ConnectionConfig::from_url`]).
///
/// ```no_run
/// # async fn example() -> pika::Result<()> {
/// let connection = pika::connect("amqp://guest:guest@127.0.0.1/").await?;
/// # Ok(())
/// # }
/// ```
///
/// # Cancel safety
/// Dropping the future before it completes drops the half-open socket;
/// nothing is left running.
pub async fn connect(url: &str) -> Result<Connection> {
    let config = ConnectionConfig::from_url(url).map_err(amqp_conn::Error::from)?;
    Connection::open(config).await
}

/// Connects with options given field by field (aio-pika's keyword
/// arguments).
///
/// ```no_run
/// # async fn example() -> pika::Result<()> {
/// use pika::ConnectOptions;
/// use std::time::Duration;
///
/// let connection = pika::connect_with(
///     ConnectOptions::new()
///         .host("127.0.0.1")
///         .login("guest")
///         .password("guest")
///         .timeout(Duration::from_secs(5))
///         .connection_name("billing-writer"),
/// )
/// .await?;
/// # Ok(())
/// # }
/// ```
///
/// # Cancel safety
/// Dropping the future before it completes drops the half-open socket;
/// nothing is left running.
pub async fn connect_with(options: ConnectOptions) -> Result<Connection> {
    Connection::open(options.config).await
}

/// Connects to the broker at `url` and keeps the connection up: when it
/// is lost (network, broker restart, `rabbitmqctl close_connection`, a
/// cluster node going down), it reconnects and restores its channels
/// (numbers, publisher confirms, QoS), exchanges, queues, bindings and
/// consumers, in the order they were made (aio-pika's `connect_robust`).
///
/// The handles stay the same: channels, exchanges, queues, iterators and
/// consume callbacks carry on after a reconnection without any action.
/// While the connection is down, publishes and requests wait for it (up
/// to their timeouts); a publish whose confirm was pending when the
/// connection was lost ends at once as
/// [`Error::Indeterminate`](crate::Error::Indeterminate);
/// acks of messages delivered over the lost connection fail with a clear
/// error (the broker delivers those messages again). Reconnection follows
/// [`ReconnectPolicy::default`]: the first attempt at once, then backoff
/// up to 5 s, without end until [`Connection::close`]. Events:
/// [`Connection::add_reconnect_callback`], [`Connection::events`].
///
/// ```no_run
/// # async fn example() -> pika::Result<()> {
/// let connection = pika::connect_robust("amqp://guest:guest@127.0.0.1/").await?;
/// let channel = connection.channel().await?;
/// // ... declare, consume, publish: all of it survives a reconnection.
/// # Ok(()) }
/// ```
///
/// Several brokers (a cluster's nodes): [`connect_robust_urls`], or
/// [`ConnectOptions::from_urls`] with [`connect_robust_with`].
///
/// # Cancel safety
/// Dropping the future before the first connection is open drops the
/// half-open socket; nothing is left running.
pub async fn connect_robust(url: &str) -> Result<Connection> {
    connect_robust_with(ConnectOptions::from_url(url)?).await
}

/// [`connect_robust`] to the nodes of a cluster: the first URL gives
/// everything (credentials, vhost, TLS, parameters), the others more
/// addresses. Each attempt, the first included, tries them in turn, and
/// a reconnection moves on to the next node when one is down.
///
/// ```no_run
/// # async fn example() -> pika::Result<()> {
/// let connection = pika::connect_robust_urls([
///     "amqp://app:secret@rabbit-1:5672/orders",
///     "amqp://app:secret@rabbit-2:5672/orders",
/// ])
/// .await?;
/// # Ok(()) }
/// ```
///
/// # Cancel safety
/// As [`connect_robust`].
pub async fn connect_robust_urls<'a>(
    urls: impl IntoIterator<Item = &'a str>,
) -> Result<Connection> {
    connect_robust_with(ConnectOptions::from_urls(urls)?).await
}

/// [`connect_robust`] with options given field by field; the reconnect
/// policy is [`ConnectOptions::reconnect`]'s, or the default.
///
/// # Cancel safety
/// As [`connect_robust`].
pub async fn connect_robust_with(options: ConnectOptions) -> Result<Connection> {
    let mut config = options.config;
    config
        .reconnect
        .get_or_insert_with(ReconnectPolicy::default);
    Connection::open(config).await
}

/// A reconnection, as [`Connection::add_reconnect_callback`] tells it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reconnected {
    /// Attempts it took (1: the first attempt succeeded).
    pub attempts: u32,
    /// From the loss of the connection to the end of its recovery.
    pub took: Duration,
    /// The broker it is connected to now (`host:port`).
    pub address: String,
}

/// Connection options, with aio-pika's names and defaults (localhost:5672,
/// guest/guest, vhost `/`).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    config: ConnectionConfig,
}

impl ConnectOptions {
    /// The defaults.
    pub fn new() -> Self {
        ConnectOptions::default()
    }

    /// Options parsed from an AMQP URL, to adjust further.
    pub fn from_url(url: &str) -> Result<Self> {
        let config = ConnectionConfig::from_url(url).map_err(amqp_conn::Error::from)?;
        Ok(ConnectOptions { config })
    }

    /// Options from the URLs of a cluster's nodes: the first URL gives
    /// everything (credentials, vhost, TLS, parameters), the others more
    /// addresses, tried in turn when one cannot be reached. None of
    /// aio-pika, lapin or amqprs connects to a list of brokers.
    ///
    /// ```no_run
    /// # async fn example() -> pika::Result<()> {
    /// use pika::ConnectOptions;
    /// let connection = pika::connect_with(ConnectOptions::from_urls([
    ///     "amqp://app:secret@rabbit-1:5672/orders",
    ///     "amqp://app:secret@rabbit-2:5672/orders",
    ///     "amqp://app:secret@rabbit-3:5672/orders",
    /// ])?)
    /// .await?;
    /// println!("connected to {}", connection.address());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A URL that does not parse, no URL, or URLs with different
    /// credentials, vhosts or schemes.
    pub fn from_urls<'a>(urls: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let config = ConnectionConfig::from_urls(urls).map_err(amqp_conn::Error::from)?;
        Ok(ConnectOptions { config })
    }

    /// The brokers to connect to, tried in this order (the first
    /// replaces `host` and `port`): the nodes of a cluster. When none
    /// answers, the error lists every attempt.
    pub fn addresses<H: Into<String>>(
        mut self,
        addresses: impl IntoIterator<Item = (H, u16)>,
    ) -> Self {
        self.config = self.config.with_addresses(addresses);
        self
    }

    /// Try the addresses in a random order, so that clients spread over
    /// the nodes (default: in order).
    pub fn shuffle_addresses(mut self, on: bool) -> Self {
        self.config.shuffle_addresses = on;
        self
    }

    /// How a robust connection reconnects (see [`connect_robust_with`]);
    /// also makes [`connect_with`] robust.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pika::{ConnectOptions, ReconnectPolicy};
    /// let options = ConnectOptions::new().reconnect(
    ///     ReconnectPolicy::default()
    ///         .with_max_delay(Duration::from_secs(2))
    ///         .with_max_attempts(Some(30)),
    /// );
    /// ```
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.config.reconnect = Some(policy);
        self
    }

    /// The longest wait between two reconnection attempts (aio-pika's
    /// `reconnect_interval`; default 5 s).
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        let policy = self.config.reconnect.take().unwrap_or_default();
        self.config.reconnect = Some(policy.with_max_delay(interval));
        self
    }

    /// Host name or address.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.config.host = host.into();
        self
    }

    /// Port.
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// User name.
    pub fn login(mut self, login: impl Into<String>) -> Self {
        let password = self.config.credentials.password().to_string();
        self.config.credentials = amqp_conn::Credentials::new(login, password);
        self
    }

    /// Password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        let username = self.config.credentials.username.clone();
        self.config.credentials = amqp_conn::Credentials::new(username, password);
        self
    }

    /// Virtual host.
    pub fn virtualhost(mut self, vhost: impl Into<String>) -> Self {
        self.config.vhost = vhost.into();
        self
    }

    /// TLS with these settings (port 5671 unless set). Settings left out
    /// here keep what the URL gave (`cafile`, `certfile`, `keyfile`,
    /// `cert_reqs`); a setting given here replaces the URL's setting of
    /// the same item, whether as a file or as PEM bytes.
    ///
    /// Without the `tls` feature, connecting with TLS settings fails with
    /// [`amqp_conn::ConfigError::TlsNotCompiled`].
    pub fn ssl(mut self, tls: TlsOptions) -> Self {
        let TlsOptions(given) = tls;
        let mut merged = self.config.tls.take().unwrap_or_default();
        if given.ca_file.is_some() || given.ca_pem.is_some() {
            merged.ca_file = given.ca_file;
            merged.ca_pem = given.ca_pem;
        }
        if given.cert_file.is_some() || given.cert_pem.is_some() {
            merged.cert_file = given.cert_file;
            merged.cert_pem = given.cert_pem;
            merged.key_file = given.key_file;
            merged.key_pem = given.key_pem;
        }
        merged.server_name = given.server_name.or(merged.server_name);
        merged.dangerous_accept_invalid_certs |= given.dangerous_accept_invalid_certs;
        #[cfg(feature = "__tls")]
        if given.client_config.is_some() {
            merged.client_config = given.client_config;
        }
        self.config = self.config.with_tls(merged);
        self
    }

    /// How long connecting may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.connection_timeout = timeout;
        self
    }

    /// Heartbeat interval proposed to the broker, in seconds.
    pub fn heartbeat(mut self, seconds: u16) -> Self {
        self.config.heartbeat = seconds;
        self
    }

    /// The connection name shown in the broker's tools.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.config.connection_name = Some(name.into());
        self
    }

    /// A client property sent to the broker (really sent, unlike
    /// aio-pika 6). `connection_name` here names the connection too.
    pub fn client_property(mut self, key: &str, value: impl Into<FieldValue>) -> Result<Self> {
        let key = crate::message::short("client property name", key)?;
        self.config.client_properties.insert(key, value);
        Ok(self)
    }

    /// All client properties at once.
    pub fn client_properties(mut self, properties: FieldTable) -> Self {
        self.config.client_properties = properties;
        self
    }

    /// SASL mechanism (EXTERNAL logs in with the TLS client certificate).
    pub fn auth_mechanism(mut self, mechanism: amqp_conn::AuthMechanism) -> Self {
        self.config.auth_mechanism = mechanism;
        self
    }

    /// Writes at most about `bytes` of frames to the socket at a time (0,
    /// the default: everything waiting goes in one write). For measuring
    /// how a broker digests writes of different sizes; see BENCHMARKS.md.
    pub fn write_batch(mut self, bytes: usize) -> Self {
        self.config.write_batch = bytes;
        self
    }

    /// The underlying configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "__tls")]
    fn ssl_options_keep_what_the_url_gave() {
        let options =
            ConnectOptions::from_url("amqps://h/?cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem")
                .unwrap()
                .ssl(TlsOptions::new().server_name("broker.example"));
        let tls = options.config().tls.clone().unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.server_name.as_deref(), Some("broker.example"));
        assert_eq!(options.config().port, 5671);
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn tls_options_replace_the_urls_setting_of_the_same_item() {
        let options =
            ConnectOptions::from_url("amqps://h/?cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem")
                .unwrap()
                .ssl(
                    TlsOptions::new()
                        .ca_pem(b"ca".to_vec())
                        .client_cert_pem(b"cert".to_vec(), b"key".to_vec()),
                );
        let tls = options.config().tls.clone().unwrap();
        assert_eq!(tls.ca_file, None);
        assert_eq!(tls.ca_pem.as_deref(), Some(&b"ca"[..]));
        assert_eq!((tls.cert_file, tls.key_file), (None, None));
        assert_eq!(tls.cert_pem.as_deref(), Some(&b"cert"[..]));
        assert_eq!(tls.key_pem.as_deref(), Some(&b"key"[..]));
        assert_eq!(options.config().validate(), Ok(()));

        // The last of a file and PEM bytes for one item wins.
        let tls = TlsOptions::new()
            .ca_pem(b"ca".to_vec())
            .ca_file("/ca.pem")
            .client_cert_pem(b"cert".to_vec(), b"key".to_vec())
            .client_cert("/c.pem", "/k.pem");
        let options = ConnectOptions::new().ssl(tls);
        let tls = options.config().tls.clone().unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.ca_pem, None);
        assert_eq!((tls.cert_pem, tls.key_pem), (None, None));
    }

    #[cfg(feature = "tls-ring")]
    #[test]
    fn a_ready_client_config_conflicts_with_the_urls_ca_file() {
        use amqp_conn::rustls;
        let client_config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let ready = TlsOptions::new().client_config(std::sync::Arc::new(client_config));
        let options = ConnectOptions::new().host("h").ssl(ready.clone());
        assert_eq!(options.config().validate(), Ok(()));
        assert_eq!(options.config().port, 5671);
        let options = ConnectOptions::from_url("amqps://h/?cafile=/ca.pem")
            .unwrap()
            .ssl(ready);
        assert!(matches!(
            options.config().validate(),
            Err(amqp_conn::ConfigError::InvalidValue {
                name: "client_config",
                ..
            })
        ));
    }

    #[cfg(not(feature = "__tls"))]
    #[tokio::test]
    async fn without_tls_support_tls_is_refused_before_connecting() {
        use amqp_conn::ConfigError;
        let not_compiled = |result: Result<Connection>| match result {
            Err(Error::Amqp(amqp_conn::Error::Config(ConfigError::TlsNotCompiled {
                requested_by,
            }))) => requested_by,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            not_compiled(connect("amqps://127.0.0.1:1/").await),
            "the amqps:// scheme"
        );
        let err = ConnectOptions::from_url("amqps://127.0.0.1").unwrap_err();
        assert!(
            err.to_string().contains("enable the `tls` feature"),
            "{err}"
        );
        let options = ConnectOptions::new()
            .host("127.0.0.1")
            .port(1)
            .ssl(TlsOptions::new().ca_file("/ca.pem"));
        assert_eq!(
            not_compiled(connect_with(options).await),
            "the TLS settings"
        );
    }

    #[test]
    fn login_and_password_are_set_independently() {
        let options = ConnectOptions::new().password("secret").login("app");
        assert_eq!(options.config().credentials.username, "app");
        assert_eq!(options.config().credentials.password(), "secret");
    }
}

/// TLS settings: which CA to trust, client certificate for mutual TLS;
/// given to [`ConnectOptions::ssl`].
///
/// The CA and the client certificate and key come from PEM files or from
/// PEM bytes in memory; or a ready rustls configuration
/// (`TlsOptions::client_config`, with the `tls` feature) stands for all of
/// them.
///
/// ```no_run
/// # async fn example() -> pika::Result<()> {
/// use pika::{AuthMechanism, ConnectOptions, TlsOptions};
///
/// // Files:
/// let tls = TlsOptions::new()
///     .ca_file("/etc/rabbitmq/ca.pem")
///     .client_cert("/etc/app/client.pem", "/etc/app/client.key");
///
/// // Or the same as PEM bytes, from a secret store or include_bytes!:
/// # let (ca_pem, cert_pem, key_pem) = (Vec::new(), Vec::new(), Vec::new());
/// let tls = TlsOptions::new()
///     .ca_pem(ca_pem)
///     .client_cert_pem(cert_pem, key_pem);
///
/// let connection = pika::connect_with(
///     ConnectOptions::new()
///         .host("rabbit.example")
///         .auth_mechanism(AuthMechanism::External)
///         .ssl(tls),
/// )
/// .await?;
/// # Ok(())
/// # }
/// ```
///
/// Needs the `tls` feature (on by default): without it, connecting with
/// TLS settings fails with [`amqp_conn::ConfigError::TlsNotCompiled`].
#[derive(Debug, Clone, Default)]
pub struct TlsOptions(TlsConfig);

impl TlsOptions {
    /// Verify the server against the platform's roots.
    pub fn new() -> Self {
        TlsOptions::default()
    }

    /// Trust the CA certificates in this PEM file instead.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.ca_file = Some(path.into());
        self.0.ca_pem = None;
        self
    }

    /// Trust these CA certificates instead, given as PEM bytes (one or more
    /// `CERTIFICATE` blocks): [`TlsOptions::ca_file`] without a file.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.0.ca_pem = Some(pem.into());
        self.0.ca_file = None;
        self
    }

    /// Present this client certificate (PEM chain and key files).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.0.cert_file = Some(cert.into());
        self.0.key_file = Some(key.into());
        self.0.cert_pem = None;
        self.0.key_pem = None;
        self
    }

    /// Present this client certificate, given as PEM bytes: the chain and
    /// the private key (PKCS#8, PKCS#1 or SEC1).
    /// [`TlsOptions::client_cert`] without files.
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.0.cert_pem = Some(cert.into());
        self.0.key_pem = Some(key.into());
        self.0.cert_file = None;
        self.0.key_file = None;
        self
    }

    /// Verify the certificate against this name instead of the host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.0.server_name = Some(name.into());
        self
    }

    /// Accept any server certificate. Dangerous: anyone on the path can
    /// read and change the traffic. For tests only.
    pub fn dangerous_accept_invalid_certs(mut self) -> Self {
        self.0.dangerous_accept_invalid_certs = true;
        self
    }

    /// Use this ready rustls configuration as it is: its roots, verifier,
    /// client certificate and crypto provider. It stands for the CA,
    /// client certificate and verification settings (giving both, here or
    /// in the URL, fails on connect); [`TlsOptions::server_name`] still
    /// applies. Build it with the rustls that pika re-exports
    /// ([`crate::rustls`]), so the versions match.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pika::rustls::{ClientConfig, RootCertStore};
    /// use pika::{ConnectOptions, TlsOptions};
    ///
    /// # #[cfg(feature = "tls-ring")]
    /// # let provider = pika::rustls::crypto::ring::default_provider();
    /// # #[cfg(all(feature = "tls-aws-lc-rs", not(feature = "tls-ring")))]
    /// # let provider = pika::rustls::crypto::aws_lc_rs::default_provider();
    /// let roots = RootCertStore::empty(); // add the CA certificates here
    /// let client_config = ClientConfig::builder_with_provider(Arc::new(provider))
    ///     .with_safe_default_protocol_versions()
    ///     .unwrap()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let options = ConnectOptions::new()
    ///     .host("rabbit.example")
    ///     .ssl(TlsOptions::new().client_config(Arc::new(client_config)));
    /// assert_eq!(options.config().port, 5671);
    /// ```
    #[cfg(feature = "__tls")]
    pub fn client_config(
        mut self,
        config: std::sync::Arc<amqp_conn::rustls::ClientConfig>,
    ) -> Self {
        self.0.client_config = Some(config);
        self
    }
}

/// A connection to the broker.
///
/// Cheap to clone. Dropping the last clone (and the last channel) closes
/// the connection with code 200, without waiting. Its Debug output says
/// where it goes and whether it is open, never the credentials:
/// `Connection { address: "127.0.0.1:5672", vhost: "/", state: "open" }`.
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: amqp_conn::Connection,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Connection {
    pub(crate) async fn open(config: ConnectionConfig) -> Result<Connection> {
        let inner = amqp_conn::Connection::open(config).await?;
        Ok(Connection { inner })
    }

    /// Opens a channel; options are set on the returned builder.
    ///
    /// ```no_run
    /// # async fn example(connection: pika::Connection) -> pika::Result<()> {
    /// let channel = connection.channel().await?;
    /// let tx_channel = connection.channel().publisher_confirms(false).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn channel(&self) -> OpenChannel<'_> {
        OpenChannel {
            connection: self,
            number: None,
            publisher_confirms: true,
            on_return_raises: false,
            timeout: None,
            operation_timeout: None,
        }
    }

    /// Closes the connection (code 200) and waits for the broker's answer.
    /// First waits (at most 5 seconds) for the confirms of publishes
    /// already sent, then sends `connection.close` and waits (at most 5
    /// seconds) for close-ok.
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the close: once queued, it goes
    /// on as described above; only the waiting stops.
    pub async fn close(&self) -> Result<()> {
        Ok(self.inner.close().await?)
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The broker's `host:port` this connection is on (with several
    /// addresses, the one that answered; after a reconnection, the one it
    /// reconnected to).
    pub fn address(&self) -> String {
        self.inner.address()
    }

    /// True for a connection made with [`connect_robust`]: it reconnects
    /// when lost, with its channels, topology and consumers.
    pub fn is_robust(&self) -> bool {
        self.inner.is_robust()
    }

    /// Calls `callback` each time the connection is restored after it was
    /// lost (aio-pika's `add_reconnect_callback`), with how many attempts
    /// and how long it took and where it is now. Only connections made
    /// with [`connect_robust`] reconnect.
    ///
    /// ```no_run
    /// # async fn example() -> pika::Result<()> {
    /// let connection = pika::connect_robust("amqp://guest:guest@127.0.0.1/").await?;
    /// connection.add_reconnect_callback(|reconnected| {
    ///     println!(
    ///         "back on {} after {:?} ({} attempts)",
    ///         reconnected.address, reconnected.took, reconnected.attempts
    ///     );
    /// });
    /// # Ok(()) }
    /// ```
    pub fn add_reconnect_callback<F>(&self, callback: F)
    where
        F: Fn(&Reconnected) + Send + 'static,
    {
        // Holds only the event receiver: the callback does not keep the
        // connection open, and ends with it.
        let mut events = self.inner.events();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ConnectionEvent::Reconnected {
                        attempts,
                        took,
                        address,
                        ..
                    }) => callback(&Reconnected {
                        attempts,
                        took,
                        address,
                    }),
                    Ok(ConnectionEvent::Closed(_))
                    | Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                }
            }
        });
    }

    /// The virtual host.
    pub fn vhost(&self) -> &str {
        self.inner.vhost()
    }

    /// Why it closed, once it has.
    pub fn close_reason(&self) -> Option<Error> {
        self.inner.close_reason().map(Error::from)
    }

    /// Calls `callback` once when the connection closes, with `None` for a
    /// close by the application and the error otherwise (aio-pika's
    /// `add_close_callback`).
    pub fn add_close_callback<F>(&self, callback: F)
    where
        F: FnOnce(Option<Error>) + Send + 'static,
    {
        // Holds only the event receiver: the callback does not keep the
        // connection open.
        let mut events = self.inner.events();
        tokio::spawn(async move {
            let error = loop {
                match events.recv().await {
                    Ok(ConnectionEvent::Closed(error)) => break Some(error),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break None,
                }
            };
            let by_application = matches!(
                &error,
                Some(amqp_conn::Error::ConnectionClosed(r)) if r.initiator == amqp_conn::Initiator::Client
            );
            callback(if by_application {
                None
            } else {
                error.map(Error::from)
            });
        });
    }

    /// Subscribes to events: blocked/unblocked, channel closed, returned
    /// messages without confirms, connection closed.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<ConnectionEvent> {
        self.inner.events()
    }

    /// The connection layer underneath, for what pika does not wrap.
    pub fn amqp(&self) -> &amqp_conn::Connection {
        &self.inner
    }
}

/// Builder of [`Connection::channel`]; await it to open the channel.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once requested,
/// the channel still opens on the broker, and is closed again because its
/// handle is dropped with the future.
#[must_use = "a channel opens only when the builder is awaited"]
#[derive(Debug)]
pub struct OpenChannel<'a> {
    connection: &'a Connection,
    number: Option<u16>,
    publisher_confirms: bool,
    on_return_raises: bool,
    timeout: Option<Duration>,
    operation_timeout: Option<Duration>,
}

impl<'a> OpenChannel<'a> {
    /// Give every operation on the channel that waits for the broker
    /// (declare, bind, get, consume, publish confirms, purge, delete,
    /// cancel, transactions, close) this timeout unless it sets its own.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Open this channel number.
    pub fn number(mut self, number: u16) -> Self {
        self.number = Some(number);
        self
    }

    /// Publisher confirms (default on): `publish` waits for the broker's
    /// ack. Turn off for transactions or to publish faster without them.
    pub fn publisher_confirms(mut self, on: bool) -> Self {
        self.publisher_confirms = on;
        self
    }

    /// Make a returned mandatory message an error of `publish`.
    pub fn on_return_raises(mut self, on: bool) -> Self {
        self.on_return_raises = on;
        self
    }

    /// Give up after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<Channel> {
        let connection = &self.connection.inner;
        let number = self.number;
        let confirms = self.publisher_confirms;
        let inner = crate::builder::with_timeout("channel.open", self.timeout, async move {
            let channel = match number {
                Some(n) => connection.open_channel_with_id(n).await?,
                None => connection.open_channel().await?,
            };
            if confirms {
                channel.confirm_select().await?;
            }
            Ok(channel)
        })
        .await?;
        Ok(Channel::new(
            inner,
            self.on_return_raises,
            self.operation_timeout,
        ))
    }
}

impl<'a> IntoFuture for OpenChannel<'a> {
    type Output = Result<Channel>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Channel>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
