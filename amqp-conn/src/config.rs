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

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the CA certificates to trust; `None` trusts the
    /// platform's root certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM file with the client certificate chain, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client's private key, for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// The name to verify the server certificate against (and send as
    /// SNI); defaults to the host.
    pub server_name: Option<String>,
    /// Accept any server certificate without verification. Dangerous: it
    /// gives up protection against a man in the middle. For tests only.
    /// The URL parameter `cert_reqs=CERT_NONE` sets it.
    pub dangerous_accept_invalid_certs: bool,
}

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
                config.tls = Some(TlsConfig::default());
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
                self.tls.get_or_insert_with(TlsConfig::default).ca_file = Some(value.into())
            }
            "certfile" => {
                self.tls.get_or_insert_with(TlsConfig::default).cert_file = Some(value.into())
            }
            "keyfile" => {
                self.tls.get_or_insert_with(TlsConfig::default).key_file = Some(value.into())
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
                self.tls
                    .get_or_insert_with(TlsConfig::default)
                    .dangerous_accept_invalid_certs = accept_any;
            }
            "name" => self.connection_name = Some(value.to_string()),
            other => return Err(ConfigError::UnknownParameter(other.to_string())),
        }
        Ok(())
    }

    /// Checks the settings' ranges; called by `from_url` and on connect.
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
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(ConfigError::InvalidValue {
                    name: "certfile/keyfile",
                    value: "only one of them".into(),
                    expected: "both a certificate and a key file for mutual TLS",
                });
            }
        }
        if self.auth_mechanism == AuthMechanism::External
            && self
                .tls
                .as_ref()
                .and_then(|t| t.cert_file.as_ref())
                .is_none()
        {
            return Err(ConfigError::InvalidValue {
                name: "auth_mechanism",
                value: "EXTERNAL".into(),
                expected: "a TLS client certificate (certfile and keyfile) when EXTERNAL is used",
            });
        }
        Ok(())
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
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
    fn amqps_defaults_to_5671_with_tls() {
        let c = ConnectionConfig::from_url("amqps://h").unwrap();
        assert_eq!(c.port, 5671);
        assert_eq!(c.tls, Some(TlsConfig::default()));
    }

    #[test]
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
}
