//! Connection settings: a typed builder, and AMQP URLs parsed into it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use amqp_wire::FieldTable;
use percent_encoding::percent_decode_str;
use url::Url;

/// The SASL mechanism used to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthMechanism {
    /// User name and password (the default).
    #[default]
    Plain,
    /// User name and password in RabbitMQ's AMQPLAIN table form.
    AmqPlain,
    /// The TLS client certificate identifies the user (RabbitMQ's
    /// `rabbitmq_auth_mechanism_ssl` plugin).
    External,
}

impl AuthMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::AmqPlain => "AMQPLAIN",
            AuthMechanism::External => "EXTERNAL",
        }
    }
}

/// User name and password. `Debug` never shows the password.
///
/// ```
/// use amqp_conn::Credentials;
/// let c = Credentials::new("app", "s3cret");
/// assert!(!format!("{c:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    password: String,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials::new("guest", "guest")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS settings: whom to trust, which client certificate to present.
///
/// The CA certificates and the client certificate and key come from PEM
/// files (`*_file`) or from PEM bytes in memory (`*_pem`), one or the other
/// for each; or a complete rustls configuration (`client_config`, with the
/// `tls` feature) replaces them all. Without any, the server is verified
/// against the platform's root certificates.
///
/// Needs the `tls` feature (on by default): without it, a connection
/// configured with TLS is refused with [`ConfigError::TlsNotCompiled`].
///
/// ```
/// use amqp_conn::{ConnectionConfig, TlsConfig};
///
/// // The CA certificate as PEM bytes, from a secret store or include_bytes!.
/// let ca_pem = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec();
/// let config = ConnectionConfig::default()
///     .with_host("rabbit.local")
///     .with_tls(TlsConfig { ca_pem: Some(ca_pem), ..Default::default() });
/// assert_eq!(config.port, 5671);
/// ```
///
/// Its `Debug` output never shows the private key.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// PEM file with the CA certificates to trust; `None` (and no
    /// `ca_pem`) trusts the platform's root certificates.
    pub ca_file: Option<PathBuf>,
    /// The CA certificates to trust, as PEM bytes (one or more
    /// `CERTIFICATE` blocks): `ca_file` without a file.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM file with the client certificate chain, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client certificate chain as PEM bytes, for mutual TLS:
    /// `cert_file` without a file.
    pub cert_pem: Option<Vec<u8>>,
    /// PEM file with the client's private key, for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// The client's private key as PEM bytes (PKCS#8, PKCS#1 or SEC1), for
    /// mutual TLS: `key_file` without a file.
    pub key_pem: Option<Vec<u8>>,
    /// The name to verify the server certificate against (and send as
    /// SNI); defaults to the host.
    pub server_name: Option<String>,
    /// Accept any server certificate without verification. Dangerous: it
    /// gives up protection against a man in the middle. For tests only.
    /// The URL parameter `cert_reqs=CERT_NONE` sets it.
    pub dangerous_accept_invalid_certs: bool,
    /// A ready rustls configuration, used as it is: its roots, verifier,
    /// client certificate, crypto provider and protocol versions. It
    /// replaces the CA, certificate and key settings and
    /// `dangerous_accept_invalid_certs` (setting both is an error);
    /// `server_name` still applies. Build it with the rustls that amqp-conn
    /// re-exports ([`crate::rustls`]), so the versions match.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use amqp_conn::rustls::{ClientConfig, RootCertStore};
    /// use amqp_conn::{ConnectionConfig, TlsConfig};
    ///
    /// # #[cfg(feature = "tls-ring")]
    /// # let provider = amqp_conn::rustls::crypto::ring::default_provider();
    /// # #[cfg(all(feature = "tls-aws-lc-rs", not(feature = "tls-ring")))]
    /// # let provider = amqp_conn::rustls::crypto::aws_lc_rs::default_provider();
    /// let roots = RootCertStore::empty(); // add the CA certificates here
    /// let client_config = ClientConfig::builder_with_provider(Arc::new(provider))
    ///     .with_safe_default_protocol_versions()
    ///     .unwrap()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let config = ConnectionConfig::default().with_tls(TlsConfig {
    ///     client_config: Some(Arc::new(client_config)),
    ///     ..Default::default()
    /// });
    /// assert!(config.validate().is_ok());
    /// ```
    #[cfg(feature = "__tls")]
    pub client_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl TlsConfig {
    /// True when a ready rustls configuration is set.
    #[cfg(feature = "__tls")]
    fn has_client_config(&self) -> bool {
        self.client_config.is_some()
    }

    /// Never: this build has no rustls.
    #[cfg(not(feature = "__tls"))]
    fn has_client_config(&self) -> bool {
        false
    }

    /// True when a client certificate is set (in a file, in memory, or in
    /// the ready rustls configuration).
    fn has_client_certificate(&self) -> bool {
        #[cfg(feature = "__tls")]
        if let Some(client_config) = &self.client_config {
            return client_config.client_auth_cert_resolver.has_certs();
        }
        self.cert_file.is_some() || self.cert_pem.is_some()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let both = |name: &'static str, expected: &'static str| ConfigError::InvalidValue {
            name,
            value: "both".into(),
            expected,
        };
        if self.ca_file.is_some() && self.ca_pem.is_some() {
            return Err(both(
                "ca_file/ca_pem",
                "one source of CA certificates: a file or PEM bytes",
            ));
        }
        if self.cert_file.is_some() && self.cert_pem.is_some() {
            return Err(both(
                "cert_file/cert_pem",
                "one source of the client certificate: a file or PEM bytes",
            ));
        }
        if self.key_file.is_some() && self.key_pem.is_some() {
            return Err(both(
                "key_file/key_pem",
                "one source of the client key: a file or PEM bytes",
            ));
        }
        let has_cert = self.cert_file.is_some() || self.cert_pem.is_some();
        let has_key = self.key_file.is_some() || self.key_pem.is_some();
        if has_cert != has_key {
            return Err(ConfigError::InvalidValue {
                name: "certfile/keyfile",
                value: "only one of them".into(),
                expected: "both a certificate and a key (files or PEM bytes) for mutual TLS",
            });
        }
        if self.has_client_config()
            && (self.ca_file.is_some()
                || self.ca_pem.is_some()
                || has_cert
                || self.dangerous_accept_invalid_certs)
        {
            return Err(ConfigError::InvalidValue {
                name: "client_config",
                value: "a rustls ClientConfig with other TLS settings".into(),
                expected: "either a ready rustls ClientConfig (which holds the CA, the client \
                           certificate and the verification) or the CA, certificate and key \
                           settings (cafile, certfile, keyfile, cert_reqs), not both",
            });
        }
        Ok(())
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// PEM bytes shown as their length (certificates are long), or
        /// not at all when secret (keys).
        struct PemBytes<'a> {
            bytes: &'a Option<Vec<u8>>,
            secret: bool,
        }
        impl fmt::Debug for PemBytes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.bytes {
                    None => f.write_str("None"),
                    Some(_) if self.secret => f.write_str("Some(<redacted>)"),
                    Some(bytes) => write!(f, "Some(<{} bytes of PEM>)", bytes.len()),
                }
            }
        }
        let public = |bytes| PemBytes {
            bytes,
            secret: false,
        };
        let mut debug = f.debug_struct("TlsConfig");
        debug
            .field("ca_file", &self.ca_file)
            .field("ca_pem", &public(&self.ca_pem))
            .field("cert_file", &self.cert_file)
            .field("cert_pem", &public(&self.cert_pem))
            .field("key_file", &self.key_file)
            .field(
                "key_pem",
                &PemBytes {
                    bytes: &self.key_pem,
                    secret: true,
                },
            )
            .field("server_name", &self.server_name)
            .field(
                "dangerous_accept_invalid_certs",
                &self.dangerous_accept_invalid_certs,
            );
        #[cfg(feature = "__tls")]
        debug.field(
            "client_config",
            &self.client_config.as_ref().map(|_| "<rustls ClientConfig>"),
        );
        debug.finish()
    }
}

/// Equal when every setting is; two ready rustls configurations are equal
/// when they are the same `Arc` (rustls configurations cannot be compared).
impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(feature = "__tls")]
        let same_client_config = match (&self.client_config, &other.client_config) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        };
        #[cfg(not(feature = "__tls"))]
        let same_client_config = true;
        same_client_config
            && self.ca_file == other.ca_file
            && self.ca_pem == other.ca_pem
            && self.cert_file == other.cert_file
            && self.cert_pem == other.cert_pem
            && self.key_file == other.key_file
            && self.key_pem == other.key_pem
            && self.server_name == other.server_name
            && self.dangerous_accept_invalid_certs == other.dangerous_accept_invalid_certs
    }
}

impl Eq for TlsConfig {}

/// Everything needed to open a connection.
///
/// Built from a URL with [`ConnectionConfig::from_url`] or field by field:
///
/// ```
/// use amqp_conn::ConnectionConfig;
/// use std::time::Duration;
///
/// let config = ConnectionConfig::from_url("amqp://app:secret@rabbit.local:5673/%2f?heartbeat=30&name=billing").unwrap();
/// assert_eq!(config.host, "rabbit.local");
/// assert_eq!(config.port, 5673);
/// assert_eq!(config.vhost, "/");
/// assert_eq!(config.heartbeat, 30);
/// assert_eq!(config.connection_name.as_deref(), Some("billing"));
///
/// let config = ConnectionConfig::default()
///     .with_host("localhost")
///     .with_credentials("app", "secret")
///     .with_heartbeat(30)
///     .with_connection_timeout(Duration::from_secs(5));
/// assert_eq!(config.port, 5672);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// Host name or address (default `localhost`).
    pub host: String,
    /// Port (default 5672, or 5671 with TLS).
    pub port: u16,
    /// Virtual host (default `/`).
    pub vhost: String,
    /// Login (default guest/guest).
    pub credentials: Credentials,
    /// SASL mechanism (default PLAIN).
    pub auth_mechanism: AuthMechanism,
    /// Heartbeat interval we propose, in seconds; 0 turns heartbeats off
    /// unless the broker asks for them (default 60).
    pub heartbeat: u16,
    /// How long opening the connection may take, TCP, TLS and AMQP
    /// handshakes together (default 10 s).
    pub connection_timeout: Duration,
    /// Highest channel number we accept (default and maximum 2047).
    pub channel_max: u16,
    /// Largest frame we accept, in bytes (default 131072, at least 4096).
    pub frame_max: u32,
    /// Largest message body we accept (default 128 MiB, RabbitMQ's limit).
    pub max_body_size: u64,
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<TlsConfig>,
    /// The connection name shown in the broker's management tools.
    pub connection_name: Option<String>,
    /// Extra client properties sent in `connection.start-ok`, merged with
    /// ours (product, version, platform, capabilities).
    pub client_properties: FieldTable,
    /// Locale (default `en_US`).
    pub locale: String,
    /// More brokers to try when `host:port` cannot be reached, in order:
    /// the other nodes of a cluster (default none). Every address shares
    /// the rest of this configuration: credentials, vhost, TLS.
    pub fallback_addresses: Vec<BrokerAddress>,
    /// Try `host:port` and the fallback addresses in a random order, so
    /// that clients spread over a cluster's nodes (default off: in order).
    pub shuffle_addresses: bool,
    /// Reconnect when the connection is lost, with its channels, topology
    /// and consumers (see [`ReconnectPolicy`]); `None` (the default): a
    /// lost connection stays closed.
    pub reconnect: Option<ReconnectPolicy>,
    /// Bytes of frames the connection task encodes before it writes them
    /// to the socket; 0 (the default) takes every command waiting, up to
    /// 4,096 of them, into one write. A knob for measuring how the broker
    /// digests writes of one size or another (see BENCHMARKS.md: from
    /// 4 KiB to 256 KiB, no size measured differently from the default).
    pub write_batch: usize,
}

/// When and how often a connection that was lost is opened again.
///
/// The first attempt is made at once; after a failed attempt the next
/// waits `initial_delay`, then twice as long each time up to `max_delay`,
/// each delay shortened by a random part of up to `jitter` (so that many
/// clients do not reconnect in step). Each attempt tries every address of
/// the configuration in turn. After `max_attempts` failed attempts (if
/// set) the connection gives up and closes with the last error.
///
/// ```
/// use std::time::Duration;
/// use amqp_conn::{ConnectionConfig, ReconnectPolicy};
/// let config = ConnectionConfig::default().with_reconnect(
///     ReconnectPolicy::default()
///         .with_max_delay(Duration::from_secs(10))
///         .with_max_attempts(Some(100)),
/// );
/// assert!(config.reconnect.is_some());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// The wait after the first failed attempt (default 100 ms).
    pub initial_delay: Duration,
    /// The longest wait between two attempts (default 5 s, aio-pika's
    /// reconnect interval).
    pub max_delay: Duration,
    /// The part of each wait that is random, from 0 (none) to 1 (default
    /// 0.2: a wait of 1 s is between 0.8 and 1 s).
    pub jitter: f64,
    /// Give up after this many failed attempts in a row (default `None`:
    /// never give up).
    pub max_attempts: Option<u32>,
    /// While the connection is down, fail requests and publishes at once
    /// with [`Error::Reconnecting`](crate::Error::Reconnecting), sending
    /// nothing, instead of letting them wait for the reconnection (default
    /// off: they wait, up to their own timeouts).
    pub fail_fast: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            jitter: 0.2,
            max_attempts: None,
            fail_fast: false,
        }
    }
}

impl ReconnectPolicy {
    /// Sets the wait after the first failed attempt.
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the longest wait between attempts.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the random part of each wait (0 to 1).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Gives up after this many failed attempts in a row.
    pub fn with_max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// While reconnecting, fail requests and publishes at once instead of
    /// letting them wait (see `fail_fast`).
    pub fn with_fail_fast(mut self, on: bool) -> Self {
        self.fail_fast = on;
        self
    }

    /// The wait before attempt number `attempt` (1 is the first, made at
    /// once): `initial_delay` doubled per failed attempt, at most
    /// `max_delay`, less up to `jitter` of it at random.
    ///
    /// ```
    /// use std::time::Duration;
    /// use amqp_conn::ReconnectPolicy;
    /// let policy = ReconnectPolicy::default().with_jitter(0.0);
    /// assert_eq!(policy.delay_before(1), Duration::ZERO);
    /// assert_eq!(policy.delay_before(2), Duration::from_millis(100));
    /// assert_eq!(policy.delay_before(4), Duration::from_millis(400));
    /// assert_eq!(policy.delay_before(40), Duration::from_secs(5));
    /// ```
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 2).min(30);
        let delay = self
            .initial_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0) * random_fraction();
        delay.mul_f64(1.0 - jitter)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::InvalidValue {
                name: "reconnect jitter",
                value: self.jitter.to_string(),
                expected: "a fraction from 0 to 1",
            });
        }
        if self.max_attempts == Some(0) {
            return Err(ConfigError::InvalidValue {
                name: "reconnect max_attempts",
                value: "0".into(),
                expected: "at least 1 (or None for no limit)",
            });
        }
        Ok(())
    }
}

/// A number in [0, 1) from the clock: jitter needs no better randomness.
fn random_fraction() -> f64 {
    let mut state = clock_seed();
    (xorshift(&mut state) >> 11) as f64 / (1u64 << 53) as f64
}

/// A nonzero seed from the clock.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9_7F4A_7C15)
        | 1
}

/// The next number of a xorshift generator.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One broker to connect to: a host and a port.
///
/// ```
/// use amqp_conn::BrokerAddress;
/// assert_eq!(BrokerAddress::new("::1", 5672).to_string(), "[::1]:5672");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl BrokerAddress {
    /// The broker at `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        BrokerAddress {
            host: host.into(),
            port,
        }
    }
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The highest channel number this client accepts.
pub const MAX_CHANNELS: u16 = 2047;
/// The largest frame this client accepts.
pub const MAX_FRAME_SIZE: u32 = 1 << 20;

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            host: "localhost".into(),
            port: 5672,
            vhost: "/".into(),
            credentials: Credentials::default(),
            auth_mechanism: AuthMechanism::Plain,
            heartbeat: 60,
            connection_timeout: Duration::from_secs(10),
            channel_max: MAX_CHANNELS,
            frame_max: 131_072,
            max_body_size: 128 << 20,
            tls: None,
            connection_name: None,
            client_properties: FieldTable::new(),
            locale: "en_US".into(),
            fallback_addresses: Vec::new(),
            shuffle_addresses: false,
            reconnect: None,
            write_batch: 0,
        }
    }
}

/// An invalid URL or setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL does not parse.
    #[error("invalid AMQP URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The scheme is not `amqp` or `amqps`.
    #[error("unsupported URL scheme '{0}': use amqp:// or amqps://")]
    UnsupportedScheme(String),
    /// A query parameter this client does not know.
    #[error("unknown URL parameter '{0}' (known: heartbeat, connection_timeout, channel_max, frame_max, auth_mechanism, cafile (or ca_certs), certfile, keyfile, cert_reqs, name)")]
    UnknownParameter(String),
    /// A parameter or setting with a value that is not allowed.
    #[error("invalid value '{value}' for {name}: expected {expected}")]
    InvalidValue {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A TLS file could not be read or holds no usable item.
    #[error("TLS {what} file '{path}': {reason}")]
    TlsFile {
        /// `CA`, `certificate` or `key`.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// PEM bytes given in memory (`ca_pem`, `cert_pem`, `key_pem`) hold no
    /// usable item.
    #[error("TLS {what} PEM bytes: {reason}")]
    TlsPem {
        /// `CA`, `certificate` or `key`.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// TLS was asked for (an `amqps://` URL, a TLS URL parameter or TLS
    /// settings), but this build has no TLS support.
    #[error("{requested_by} needs TLS, but TLS support is not compiled in: enable the `tls` feature of pika (or amqp-conn), or connect with amqp://")]
    TlsNotCompiled {
        /// What asked for TLS: `the amqps:// scheme`, `the URL parameter
        /// cafile`, `the TLS settings`.
        requested_by: &'static str,
    },
}

/// Shuffles `items` (Fisher-Yates) with a xorshift generator seeded from
/// the clock: spreading connections needs no better randomness.
fn shuffle<T>(items: &mut [T]) {
    let mut state = clock_seed();
    for i in (1..items.len()).rev() {
        let pick = xorshift(&mut state) % (i as u64 + 1);
        items.swap(i, pick as usize);
    }
}

/// The URL with the password, if any, replaced by `***` (works on URLs
/// that do not parse too: a missing `:` after the scheme, no scheme).
fn redact(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let Some(at) = url[..end].rfind('@') else {
        return url.to_string();
    };
    let user_start = url[..at].rfind('/').map_or(0, |i| i + 1);
    match url[user_start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..user_start + colon], &url[at..]),
        None => url.to_string(),
    }
}

fn decode(part: &str, name: &'static str) -> Result<String, ConfigError> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ConfigError::InvalidValue {
            name,
            value: part.to_string(),
            expected: "percent-encoded UTF-8",
        })
}

fn number<T: std::str::FromStr>(
    name: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::InvalidValue {
        name,
        value: value.to_string(),
        expected,
    })
}

impl ConnectionConfig {
    /// Parses an AMQP URL:
    /// `amqp[s]://user:pass@host:port/vhost?param=value&...`.
    ///
    /// User, password and vhost are percent-decoded (`%2f` is the vhost
    /// `/`); anything left out takes its default (guest/guest, localhost,
    /// 5672 or 5671 for `amqps`, vhost `/`). Query parameters:
    /// `heartbeat` (seconds), `connection_timeout` (milliseconds),
    /// `channel_max`, `frame_max`, `auth_mechanism` (`PLAIN`, `AMQPLAIN`,
    /// `EXTERNAL`), `cafile` (or its alias `ca_certs`, aio-pika's name;
    /// giving both with different values is an error), `certfile`,
    /// `keyfile`, `cert_reqs`, `name` (the connection name). An unknown
    /// parameter or a bad value is an error.
    ///
    /// `cert_reqs` (case-insensitive) chooses server certificate
    /// verification: `CERT_REQUIRED` or `required` (the default) verifies
    /// the certificate and the host name; `CERT_NONE` or `none` accepts any
    /// certificate ([`TlsConfig::dangerous_accept_invalid_certs`]) —
    /// dangerous, as it gives up protection against a man in the middle.
    /// `CERT_OPTIONAL` is refused: it has no sensible meaning for a client.
    /// Like the other TLS parameters, `cert_reqs` turns TLS on.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let parsed = Url::parse(url).map_err(|e| ConfigError::InvalidUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        let mut config = ConnectionConfig::default();
        match parsed.scheme() {
            "amqp" => {}
            "amqps" => {
                config.port = 5671;
                config.tls_settings("the amqps:// scheme")?;
            }
            other => return Err(ConfigError::UnsupportedScheme(other.to_string())),
        }
        if let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            config.host = decode(host, "host")?;
        }
        if let Some(port) = parsed.port() {
            config.port = port;
        }
        if !parsed.username().is_empty() {
            let password = decode(parsed.password().unwrap_or(""), "password")?;
            config.credentials = Credentials::new(decode(parsed.username(), "user")?, password);
        }
        let path = parsed.path();
        let vhost = path.strip_prefix('/').unwrap_or(path);
        if !vhost.is_empty() {
            config.vhost = decode(vhost, "vhost")?;
        }
        let last = |wanted: &str| {
            parsed
                .query_pairs()
                .filter(|(name, _)| name == wanted)
                .last()
                .map(|(_, value)| value)
        };
        if let (Some(cafile), Some(ca_certs)) = (last("cafile"), last("ca_certs")) {
            if cafile != ca_certs {
                return Err(ConfigError::InvalidValue {
                    name: "cafile/ca_certs",
                    value: format!("{cafile} and {ca_certs}"),
                    expected: "one CA file (ca_certs is an alias of cafile)",
                });
            }
        }
        for (name, value) in parsed.query_pairs() {
            config.apply_parameter(&name, &value)?;
        }
        config.validate()?;
        Ok(config)
    }

    fn apply_parameter(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        match name {
            "heartbeat" => self.heartbeat = number("heartbeat", value, "seconds from 0 to 65535")?,
            "connection_timeout" => {
                let ms: u64 = number("connection_timeout", value, "milliseconds")?;
                self.connection_timeout = Duration::from_millis(ms);
            }
            "channel_max" => {
                self.channel_max = number("channel_max", value, "a number from 1 to 2047")?
            }
            "frame_max" => {
                self.frame_max = number("frame_max", value, "bytes from 4096 to 1048576")?
            }
            "auth_mechanism" => {
                self.auth_mechanism = match value.to_ascii_uppercase().as_str() {
                    "PLAIN" => AuthMechanism::Plain,
                    "AMQPLAIN" => AuthMechanism::AmqPlain,
                    "EXTERNAL" => AuthMechanism::External,
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            name: "auth_mechanism",
                            value: value.to_string(),
                            expected: "PLAIN, AMQPLAIN or EXTERNAL",
                        })
                    }
                }
            }
            "cafile" | "ca_certs" => {
                self.tls_settings("the URL parameter cafile (or ca_certs)")?
                    .ca_file = Some(value.into())
            }
            "certfile" => {
                self.tls_settings("the URL parameter certfile")?.cert_file = Some(value.into())
            }
            "keyfile" => {
                self.tls_settings("the URL parameter keyfile")?.key_file = Some(value.into())
            }
            "cert_reqs" => {
                let accept_any = match value.to_ascii_uppercase().as_str() {
                    "CERT_REQUIRED" | "REQUIRED" => false,
                    "CERT_NONE" | "NONE" => true,
                    "CERT_OPTIONAL" | "OPTIONAL" => {
                        return Err(ConfigError::InvalidValue {
                            name: "cert_reqs",
                            value: value.to_string(),
                            expected: "CERT_REQUIRED (required) or CERT_NONE (none); \
                                       CERT_OPTIONAL has no meaning for a client: \
                                       use required or none",
                        })
                    }
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            name: "cert_reqs",
                            value: value.to_string(),
                            expected: "CERT_REQUIRED (required) or CERT_NONE (none)",
                        })
                    }
                };
                self.tls_settings("the URL parameter cert_reqs")?
                    .dangerous_accept_invalid_certs = accept_any;
            }
            "name" => self.connection_name = Some(value.to_string()),
            other => return Err(ConfigError::UnknownParameter(other.to_string())),
        }
        Ok(())
    }

    /// The TLS settings, made empty if there were none; an error when this
    /// build has no TLS support. `requested_by` names what asked for TLS.
    fn tls_settings(&mut self, requested_by: &'static str) -> Result<&mut TlsConfig, ConfigError> {
        if cfg!(not(feature = "__tls")) {
            return Err(ConfigError::TlsNotCompiled { requested_by });
        }
        Ok(self.tls.get_or_insert_with(TlsConfig::default))
    }

    /// Checks the settings' ranges and that they fit together; called by
    /// `from_url` and on connect. TLS settings in a build without TLS
    /// support are [`ConfigError::TlsNotCompiled`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.channel_max == 0 || self.channel_max > MAX_CHANNELS {
            return Err(ConfigError::InvalidValue {
                name: "channel_max",
                value: self.channel_max.to_string(),
                expected: "a number from 1 to 2047",
            });
        }
        if !(amqp_wire::constants::FRAME_MIN_SIZE..=MAX_FRAME_SIZE).contains(&self.frame_max) {
            return Err(ConfigError::InvalidValue {
                name: "frame_max",
                value: self.frame_max.to_string(),
                expected: "bytes from 4096 to 1048576",
            });
        }
        if self.connection_timeout.is_zero() {
            return Err(ConfigError::InvalidValue {
                name: "connection_timeout",
                value: "0".into(),
                expected: "a positive duration",
            });
        }
        if let Some(policy) = &self.reconnect {
            policy.validate()?;
        }
        if let Some(tls) = &self.tls {
            if cfg!(not(feature = "__tls")) {
                return Err(ConfigError::TlsNotCompiled {
                    requested_by: "the TLS settings",
                });
            }
            tls.validate()?;
        }
        if self.auth_mechanism == AuthMechanism::External
            && !self
                .tls
                .as_ref()
                .is_some_and(TlsConfig::has_client_certificate)
        {
            return Err(ConfigError::InvalidValue {
                name: "auth_mechanism",
                value: "EXTERNAL".into(),
                expected: "a TLS client certificate (certfile and keyfile, their PEM bytes, or a rustls ClientConfig with one) when EXTERNAL is used",
            });
        }
        Ok(())
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        BrokerAddress::new(self.host.clone(), self.port).to_string()
    }

    /// The brokers to try, in the order they will be tried: `host:port`
    /// and the fallback addresses, shuffled if `shuffle_addresses`.
    pub fn addresses(&self) -> Vec<BrokerAddress> {
        let mut addresses = vec![BrokerAddress::new(self.host.clone(), self.port)];
        addresses.extend(self.fallback_addresses.iter().cloned());
        if self.shuffle_addresses {
            shuffle(&mut addresses);
        }
        addresses
    }

    /// Connect to any of `addresses`: the first becomes `host:port`, the
    /// others the fallback addresses.
    ///
    /// ```
    /// use amqp_conn::ConnectionConfig;
    /// let config = ConnectionConfig::default()
    ///     .with_addresses([("rabbit-1", 5672), ("rabbit-2", 5672), ("rabbit-3", 5672)]);
    /// assert_eq!(config.host, "rabbit-1");
    /// assert_eq!(config.addresses().len(), 3);
    /// ```
    pub fn with_addresses<H: Into<String>>(
        mut self,
        addresses: impl IntoIterator<Item = (H, u16)>,
    ) -> Self {
        let mut addresses = addresses
            .into_iter()
            .map(|(host, port)| BrokerAddress::new(host, port));
        if let Some(first) = addresses.next() {
            self.host = first.host;
            self.port = first.port;
        }
        self.fallback_addresses = addresses.collect();
        self
    }

    /// Try the addresses in a random order (see `shuffle_addresses`).
    pub fn with_shuffled_addresses(mut self, on: bool) -> Self {
        self.shuffle_addresses = on;
        self
    }

    /// One configuration from several URLs of one cluster: the first URL
    /// gives everything (credentials, vhost, TLS, parameters), each other
    /// URL one more address to try.
    ///
    /// ```
    /// use amqp_conn::ConnectionConfig;
    /// let config = ConnectionConfig::from_urls([
    ///     "amqp://app:secret@10.0.0.1:5672/orders",
    ///     "amqp://app:secret@10.0.0.2:5672/orders",
    /// ]).unwrap();
    /// assert_eq!(config.addresses().len(), 2);
    /// assert_eq!(config.vhost, "orders");
    /// ```
    ///
    /// # Errors
    /// When a URL does not parse, when there is none, or when a later URL
    /// names other credentials, another vhost or another scheme than the
    /// first (one configuration cannot hold two logins).
    pub fn from_urls<'a>(urls: impl IntoIterator<Item = &'a str>) -> Result<Self, ConfigError> {
        let mut urls = urls.into_iter();
        let Some(first) = urls.next() else {
            return Err(ConfigError::InvalidValue {
                name: "URLs",
                value: "none".into(),
                expected: "at least one URL",
            });
        };
        let mut config = ConnectionConfig::from_url(first)?;
        for url in urls {
            let other = ConnectionConfig::from_url(url)?;
            let same_login = other.credentials.username == config.credentials.username
                && other.credentials.password() == config.credentials.password();
            if !same_login
                || other.vhost != config.vhost
                || other.tls.is_some() != config.tls.is_some()
            {
                return Err(ConfigError::InvalidValue {
                    name: "URLs",
                    value: redact(url),
                    expected: "the same user, password, vhost and scheme as the first URL",
                });
            }
            config
                .fallback_addresses
                .push(BrokerAddress::new(other.host, other.port));
        }
        Ok(config)
    }

    /// This configuration for one of its addresses only.
    pub(crate) fn for_address(&self, address: &BrokerAddress) -> ConnectionConfig {
        ConnectionConfig {
            host: address.host.clone(),
            port: address.port,
            fallback_addresses: Vec::new(),
            shuffle_addresses: false,
            ..self.clone()
        }
    }

    /// Writes at most about `bytes` of frames at a time (0: no limit but
    /// the 4,096 commands of a turn); see [`ConnectionConfig::write_batch`].
    pub fn with_write_batch(mut self, bytes: usize) -> Self {
        self.write_batch = bytes;
        self
    }

    /// Reconnect with this policy when the connection is lost.
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Sets the host.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the virtual host.
    pub fn with_vhost(mut self, vhost: impl Into<String>) -> Self {
        self.vhost = vhost.into();
        self
    }

    /// Sets user name and password.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Credentials::new(username, password);
        self
    }

    /// Sets the SASL mechanism.
    pub fn with_auth_mechanism(mut self, mechanism: AuthMechanism) -> Self {
        self.auth_mechanism = mechanism;
        self
    }

    /// Sets the heartbeat interval we propose, in seconds (0: none).
    pub fn with_heartbeat(mut self, seconds: u16) -> Self {
        self.heartbeat = seconds;
        self
    }

    /// Sets the connection timeout.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets the highest channel number we accept.
    pub fn with_channel_max(mut self, channel_max: u16) -> Self {
        self.channel_max = channel_max;
        self
    }

    /// Sets the largest frame we accept.
    pub fn with_frame_max(mut self, frame_max: u32) -> Self {
        self.frame_max = frame_max;
        self
    }

    /// Sets TLS (and the port to 5671 if it was the plain default).
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        if self.port == 5672 {
            self.port = 5671;
        }
        self.tls = Some(tls);
        self
    }

    /// Sets the connection name shown in the broker.
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// Sets extra client properties.
    pub fn with_client_properties(mut self, properties: FieldTable) -> Self {
        self.client_properties = properties;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_make_one_config_with_fallback_addresses() {
        let config = ConnectionConfig::from_urls([
            "amqp://app:pw@node-1:5701/orders?heartbeat=5",
            "amqp://app:pw@node-2:5702/orders",
            "amqp://app:pw@[::1]:5703/orders",
        ])
        .unwrap();
        assert_eq!(config.heartbeat, 5);
        assert_eq!(
            config.addresses(),
            [
                BrokerAddress::new("node-1", 5701),
                BrokerAddress::new("node-2", 5702),
                BrokerAddress::new("::1", 5703),
            ]
        );
        assert_eq!(config.addresses()[2].to_string(), "[::1]:5703");
    }

    #[test]
    fn urls_of_one_config_must_share_login_vhost_and_scheme() {
        for other in [
            "amqp://app:other@node-2/orders",
            "amqp://someone:pw@node-2/orders",
            "amqp://app:pw@node-2/billing",
            "amqps://app:pw@node-2/orders",
        ] {
            let error =
                ConnectionConfig::from_urls(["amqp://app:pw@node-1/orders", other]).unwrap_err();
            let text = error.to_string();
            // Without the tls feature an amqps:// URL is refused as such.
            let refused_as_tls = !cfg!(feature = "__tls") && other.starts_with("amqps");
            assert!(
                refused_as_tls || text.contains("the same user, password, vhost and scheme"),
                "{text}"
            );
            assert!(
                !text.contains(":pw@") && !text.contains(":other@"),
                "password shown: {text}"
            );
        }
        assert!(ConnectionConfig::from_urls(std::iter::empty()).is_err());
    }

    #[test]
    fn shuffled_addresses_are_a_permutation_that_varies() {
        let config = ConnectionConfig::default()
            .with_addresses((0..8).map(|n| (format!("node-{n}"), 5672)))
            .with_shuffled_addresses(true);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            let addresses = config.addresses();
            let mut sorted = addresses.clone();
            sorted.sort_by(|a, b| a.host.cmp(&b.host));
            assert_eq!(
                sorted,
                ConnectionConfig::default()
                    .with_addresses((0..8).map(|n| (format!("node-{n}"), 5672)))
                    .addresses()
            );
            orders.insert(addresses);
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        assert!(orders.len() > 1, "the order never changed");
    }

    #[test]
    fn one_address_of_a_config_keeps_everything_else() {
        let config = ConnectionConfig::default()
            .with_vhost("orders")
            .with_addresses([("a", 1), ("b", 2)]);
        let only_b = config.for_address(&BrokerAddress::new("b", 2));
        assert_eq!((only_b.host.as_str(), only_b.port), ("b", 2));
        assert_eq!(only_b.vhost, "orders");
        assert_eq!(only_b.addresses().len(), 1);
    }

    #[test]
    fn defaults_when_the_url_leaves_things_out() {
        let c = ConnectionConfig::from_url("amqp://").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.vhost.as_str()),
            ("localhost", 5672, "/")
        );
        assert_eq!(c.credentials, Credentials::new("guest", "guest"));
        assert!(c.tls.is_none());
        let c = ConnectionConfig::from_url("amqp://rabbit").unwrap();
        assert_eq!((c.host.as_str(), c.vhost.as_str()), ("rabbit", "/"));
        let c = ConnectionConfig::from_url("amqp://rabbit/").unwrap();
        assert_eq!(c.vhost, "/");
    }

    #[test]
    fn percent_decoding_of_user_password_and_vhost() {
        let c = ConnectionConfig::from_url("amqp://us%40er:p%3Ass%2Fw@h:1234/%2f").unwrap();
        assert_eq!(c.credentials.username, "us@er");
        assert_eq!(c.credentials.password(), "p:ss/w");
        assert_eq!(c.vhost, "/");
        assert_eq!(c.port, 1234);
        let c = ConnectionConfig::from_url("amqp://h/my%20vhost").unwrap();
        assert_eq!(c.vhost, "my vhost");
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn amqps_defaults_to_5671_with_tls() {
        let c = ConnectionConfig::from_url("amqps://h").unwrap();
        assert_eq!(c.port, 5671);
        assert_eq!(c.tls, Some(TlsConfig::default()));
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn query_parameters() {
        let c = ConnectionConfig::from_url(
            "amqps://h/?heartbeat=5&connection_timeout=2500&channel_max=10&frame_max=8192&auth_mechanism=external&cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&name=my%20app",
        )
        .unwrap();
        assert_eq!(c.heartbeat, 5);
        assert_eq!(c.connection_timeout, Duration::from_millis(2500));
        assert_eq!(c.channel_max, 10);
        assert_eq!(c.frame_max, 8192);
        assert_eq!(c.auth_mechanism, AuthMechanism::External);
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.key_file, Some(PathBuf::from("/k.pem")));
        assert_eq!(c.connection_name.as_deref(), Some("my app"));
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn ca_certs_is_an_alias_of_cafile() {
        let c = ConnectionConfig::from_url("amqps://h/?ca_certs=/ca.pem").unwrap();
        assert_eq!(c.tls.unwrap().ca_file, Some(PathBuf::from("/ca.pem")));
        let c = ConnectionConfig::from_url("amqps://h/?ca_certs=/ca.pem&cafile=/ca.pem").unwrap();
        assert_eq!(c.tls.unwrap().ca_file, Some(PathBuf::from("/ca.pem")));
        let err =
            ConnectionConfig::from_url("amqps://h/?cafile=/a.pem&ca_certs=/b.pem").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::InvalidValue {
                    name: "cafile/ca_certs",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn cert_reqs_chooses_verification() {
        for value in ["CERT_NONE", "none", "Cert_None"] {
            let c = ConnectionConfig::from_url(&format!("amqps://h/?cert_reqs={value}")).unwrap();
            assert!(c.tls.unwrap().dangerous_accept_invalid_certs, "{value}");
        }
        for value in ["CERT_REQUIRED", "required"] {
            let c = ConnectionConfig::from_url(&format!("amqps://h/?cert_reqs={value}")).unwrap();
            assert_eq!(c.tls, Some(TlsConfig::default()), "{value}");
        }
        for value in ["CERT_OPTIONAL", "optional"] {
            let err =
                ConnectionConfig::from_url(&format!("amqps://h/?cert_reqs={value}")).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidValue {
                        name: "cert_reqs",
                        ..
                    }
                ),
                "{err}"
            );
            let message = err.to_string();
            assert!(
                message.contains("CERT_OPTIONAL") && message.contains("use required or none"),
                "{message}"
            );
        }
        let err = ConnectionConfig::from_url("amqps://h/?cert_reqs=maybe").unwrap_err();
        assert_eq!(
            err,
            ConfigError::InvalidValue {
                name: "cert_reqs",
                value: "maybe".into(),
                expected: "CERT_REQUIRED (required) or CERT_NONE (none)",
            }
        );
    }

    #[test]
    fn unknown_parameters_and_bad_values_are_errors() {
        assert_eq!(
            ConnectionConfig::from_url("amqp://h?heartbeet=5").unwrap_err(),
            ConfigError::UnknownParameter("heartbeet".into())
        );
        assert!(matches!(
            ConnectionConfig::from_url("amqp://h?heartbeat=soon").unwrap_err(),
            ConfigError::InvalidValue {
                name: "heartbeat",
                ..
            }
        ));
        assert!(matches!(
            ConnectionConfig::from_url("amqp://h?frame_max=1000").unwrap_err(),
            ConfigError::InvalidValue {
                name: "frame_max",
                ..
            }
        ));
        assert!(matches!(
            ConnectionConfig::from_url("amqp://h?channel_max=0").unwrap_err(),
            ConfigError::InvalidValue {
                name: "channel_max",
                ..
            }
        ));
        assert!(matches!(
            ConnectionConfig::from_url("amqp://h?auth_mechanism=KERBEROS").unwrap_err(),
            ConfigError::InvalidValue {
                name: "auth_mechanism",
                ..
            }
        ));
        assert!(matches!(
            ConnectionConfig::from_url("amqp://h?auth_mechanism=EXTERNAL").unwrap_err(),
            ConfigError::InvalidValue {
                name: "auth_mechanism",
                ..
            }
        ));
        assert_eq!(
            ConnectionConfig::from_url("http://h").unwrap_err(),
            ConfigError::UnsupportedScheme("http".into())
        );
    }

    #[test]
    fn passwords_never_show_in_errors_or_debug() {
        let err = ConnectionConfig::from_url("amqp://user:hunter2@h:99999").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let c = ConnectionConfig::from_url("amqp://user:hunter2@h").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn ipv6_hosts() {
        let c = ConnectionConfig::from_url("amqp://[::1]:5673").unwrap();
        assert_eq!(c.host, "::1");
        assert_eq!(c.address(), "[::1]:5673");
    }

    #[test]
    fn passwords_are_redacted_from_urls_that_do_not_parse() {
        for url in [
            "amqp//guest:s3cret@127.0.0.1:5672/",
            "guest:s3cret@127.0.0.1",
            "amqp:/guest:s3cret@127.0.0.1/",
            "amqp://guest:s3cret@127.0.0.1:5672/%zz",
        ] {
            let redacted = redact(url);
            assert!(!redacted.contains("s3cret"), "{url} -> {redacted}");
            assert!(redacted.contains("127.0.0.1"), "{url} -> {redacted}");
        }
    }

    fn config_with(tls: TlsConfig) -> ConnectionConfig {
        ConnectionConfig::default().with_tls(tls)
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn a_file_and_pem_bytes_for_the_same_item_are_an_error() {
        for (tls, name) in [
            (
                TlsConfig {
                    ca_file: Some("/ca.pem".into()),
                    ca_pem: Some(b"pem".to_vec()),
                    ..Default::default()
                },
                "ca_file/ca_pem",
            ),
            (
                TlsConfig {
                    cert_file: Some("/c.pem".into()),
                    cert_pem: Some(b"pem".to_vec()),
                    key_pem: Some(b"pem".to_vec()),
                    ..Default::default()
                },
                "cert_file/cert_pem",
            ),
            (
                TlsConfig {
                    cert_pem: Some(b"pem".to_vec()),
                    key_file: Some("/k.pem".into()),
                    key_pem: Some(b"pem".to_vec()),
                    ..Default::default()
                },
                "key_file/key_pem",
            ),
        ] {
            let err = config_with(tls).validate().unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidValue { name: n, .. } if n == name),
                "{err}"
            );
        }
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn a_certificate_needs_its_key_in_either_form() {
        let ok = config_with(TlsConfig {
            cert_pem: Some(b"pem".to_vec()),
            key_file: Some("/k.pem".into()),
            ..Default::default()
        });
        assert_eq!(ok.validate(), Ok(()));
        let err = config_with(TlsConfig {
            cert_pem: Some(b"pem".to_vec()),
            ..Default::default()
        })
        .validate()
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::InvalidValue {
                    name: "certfile/keyfile",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    #[cfg(feature = "__tls")]
    fn external_login_accepts_a_certificate_in_pem_bytes() {
        let config = config_with(TlsConfig {
            cert_pem: Some(b"pem".to_vec()),
            key_pem: Some(b"pem".to_vec()),
            ..Default::default()
        })
        .with_auth_mechanism(AuthMechanism::External);
        assert_eq!(config.validate(), Ok(()));
    }

    #[cfg(all(feature = "__tls", feature = "tls-ring"))]
    fn ready_client_config(with_client_certificate: bool) -> std::sync::Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty());
        let config = if with_client_certificate {
            let chain = CertificateDer::pem_slice_iter(include_bytes!("../testdata/client.pem"))
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key =
                PrivateKeyDer::from_pem_slice(include_bytes!("../testdata/client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        std::sync::Arc::new(config)
    }

    #[test]
    #[cfg(all(feature = "__tls", feature = "tls-ring"))]
    fn a_ready_client_config_stands_alone() {
        let ready = ready_client_config(false);
        let config = config_with(TlsConfig {
            client_config: Some(ready.clone()),
            server_name: Some("broker.example".into()),
            ..Default::default()
        });
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.clone(), config, "equal to itself: the same Arc");
        let other = config_with(TlsConfig {
            client_config: Some(ready_client_config(false)),
            server_name: Some("broker.example".into()),
            ..Default::default()
        });
        assert_ne!(config, other, "another ClientConfig is another setting");
        for conflict in [
            TlsConfig {
                ca_file: Some("/ca.pem".into()),
                ..Default::default()
            },
            TlsConfig {
                ca_pem: Some(b"pem".to_vec()),
                ..Default::default()
            },
            TlsConfig {
                cert_pem: Some(b"pem".to_vec()),
                key_pem: Some(b"pem".to_vec()),
                ..Default::default()
            },
            TlsConfig {
                dangerous_accept_invalid_certs: true,
                ..Default::default()
            },
        ] {
            let err = config_with(TlsConfig {
                client_config: Some(ready.clone()),
                ..conflict
            })
            .validate()
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidValue {
                        name: "client_config",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    #[cfg(all(feature = "__tls", feature = "tls-ring"))]
    fn external_login_with_a_ready_client_config_needs_its_certificate() {
        let external = |ready| {
            config_with(TlsConfig {
                client_config: Some(ready),
                ..Default::default()
            })
            .with_auth_mechanism(AuthMechanism::External)
            .validate()
        };
        assert_eq!(external(ready_client_config(true)), Ok(()));
        assert!(matches!(
            external(ready_client_config(false)),
            Err(ConfigError::InvalidValue {
                name: "auth_mechanism",
                ..
            })
        ));
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let settings = TlsConfig {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            cert_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            key_pem: Some(b"-----BEGIN PRIVATE KEY-----secret".to_vec()),
            ..Default::default()
        };
        let debug = format!("{:?}", config_with(settings));
        assert!(!debug.contains("secret"), "{debug}");
        assert!(
            !debug.contains("45, 45"),
            "no PEM bytes as numbers: {debug}"
        );
        assert!(debug.contains("key_pem: Some(<redacted>)"), "{debug}");
        assert!(debug.contains("ca_pem: Some(<27 bytes of PEM>)"), "{debug}");
    }

    #[test]
    #[cfg(not(feature = "__tls"))]
    fn without_tls_support_tls_is_refused_with_the_feature_to_enable() {
        let err = ConnectionConfig::from_url("amqps://h").unwrap_err();
        assert_eq!(
            err,
            ConfigError::TlsNotCompiled {
                requested_by: "the amqps:// scheme"
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("not compiled in") && message.contains("`tls` feature"),
            "{message}"
        );
        for (url, requested_by) in [
            (
                "amqp://h?cafile=/ca.pem",
                "the URL parameter cafile (or ca_certs)",
            ),
            (
                "amqp://h?ca_certs=/ca.pem",
                "the URL parameter cafile (or ca_certs)",
            ),
            ("amqp://h?certfile=/c.pem", "the URL parameter certfile"),
            ("amqp://h?keyfile=/k.pem", "the URL parameter keyfile"),
            ("amqp://h?cert_reqs=none", "the URL parameter cert_reqs"),
        ] {
            assert_eq!(
                ConnectionConfig::from_url(url).unwrap_err(),
                ConfigError::TlsNotCompiled { requested_by },
                "{url}"
            );
        }
        assert_eq!(
            config_with(TlsConfig::default()).validate(),
            Err(ConfigError::TlsNotCompiled {
                requested_by: "the TLS settings"
            })
        );
        assert_eq!(ConnectionConfig::from_url("amqp://h").unwrap().tls, None);
    }
}
