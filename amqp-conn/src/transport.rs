//! The byte stream under a connection: plain TCP, or TLS over TCP
//! (tokio-rustls, with the `tls` feature).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::ConnectionConfig;
use crate::error::Error;

/// TCP or TLS.
#[derive(Debug)]
pub(crate) enum Transport {
    Tcp(TcpStream),
    #[cfg(feature = "__tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Opens the TCP connection and, when configured, the TLS session.
pub(crate) async fn connect(config: &ConnectionConfig) -> Result<Transport, Error> {
    let address = config.address();
    let tcp = TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| Error::Connect {
            address: address.clone(),
            source: Arc::new(e),
        })?;
    tcp.set_nodelay(true).map_err(Error::io)?;
    let Some(tls) = &config.tls else {
        return Ok(Transport::Tcp(tcp));
    };
    tls::handshake(tcp, tls, config, address).await
}

/// Without TLS support: TLS settings are refused (validation refuses them
/// before, so this is the last line of defence).
#[cfg(not(feature = "__tls"))]
mod tls {
    use tokio::net::TcpStream;

    use super::Transport;
    use crate::config::{ConfigError, ConnectionConfig, TlsConfig};
    use crate::error::Error;

    pub(super) async fn handshake(
        _tcp: TcpStream,
        _tls: &TlsConfig,
        _config: &ConnectionConfig,
        _address: String,
    ) -> Result<Transport, Error> {
        Err(Error::Config(ConfigError::TlsNotCompiled {
            requested_by: "the TLS settings",
        }))
    }
}

/// The TLS session: the rustls client configuration built from the
/// settings, and the handshake.
#[cfg(feature = "__tls")]
mod tls {
    use std::io;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    use super::Transport;
    use crate::config::{ConfigError, ConnectionConfig, TlsConfig};
    use crate::error::Error;

    pub(super) async fn handshake(
        tcp: TcpStream,
        tls: &TlsConfig,
        config: &ConnectionConfig,
        address: String,
    ) -> Result<Transport, Error> {
        let client_config = match &tls.client_config {
            Some(ready) => ready.clone(),
            None => Arc::new(client_config(tls)?),
        };
        let connector = TlsConnector::from(client_config);
        let name = tls
            .server_name
            .clone()
            .unwrap_or_else(|| config.host.clone());
        let server_name = ServerName::try_from(name.clone()).map_err(|_| {
            Error::Config(ConfigError::InvalidValue {
                name: "server_name",
                value: name,
                expected: "a DNS name or IP address",
            })
        })?;
        let stream = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| Error::Tls {
                address,
                source: Arc::new(e),
            })?;
        Ok(Transport::Tls(Box::new(stream)))
    }

    /// The crypto provider chosen by the features: aws-lc-rs when
    /// `tls-aws-lc-rs` is on, ring otherwise.
    #[cfg(feature = "tls-aws-lc-rs")]
    fn crypto_provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// The crypto provider chosen by the features: ring.
    #[cfg(not(feature = "tls-aws-lc-rs"))]
    fn crypto_provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Where a PEM item comes from: a file, or bytes in memory.
    enum Pem<'a> {
        File(&'a std::path::Path),
        Bytes(&'a [u8]),
    }

    impl<'a> Pem<'a> {
        fn of(file: &'a Option<std::path::PathBuf>, bytes: &'a Option<Vec<u8>>) -> Option<Self> {
            match (file, bytes) {
                (Some(path), _) => Some(Pem::File(path)),
                (None, Some(bytes)) => Some(Pem::Bytes(bytes)),
                (None, None) => None,
            }
        }

        /// The error for a problem with this item.
        fn error(&self, what: &'static str, reason: String) -> Error {
            Error::Config(match self {
                Pem::File(path) => ConfigError::TlsFile {
                    what,
                    path: path.to_path_buf(),
                    reason,
                },
                Pem::Bytes(_) => ConfigError::TlsPem { what, reason },
            })
        }

        /// Reads the item (from its file) and parses it.
        fn read<T>(
            &self,
            what: &'static str,
            parse: impl FnOnce(&[u8]) -> Result<T, String>,
        ) -> Result<T, Error> {
            match self {
                Pem::File(path) => {
                    let bytes = std::fs::read(path).map_err(|e| self.error(what, e.to_string()))?;
                    parse(&bytes)
                }
                Pem::Bytes(bytes) => parse(bytes),
            }
            .map_err(|reason| self.error(what, reason))
        }
    }

    fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not valid PEM: {e}"))?;
        if certs.is_empty() {
            return Err("no CERTIFICATE block found".into());
        }
        Ok(certs)
    }

    fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_slice(bytes).map_err(|e| format!("no usable private key: {e}"))
    }

    /// The rustls client configuration: which roots to trust, which client
    /// certificate to present.
    pub(super) fn client_config(tls: &TlsConfig) -> Result<ClientConfig, Error> {
        let provider = crypto_provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls {
                address: String::new(),
                source: Arc::new(io::Error::other(e)),
            })?;
        let builder = if tls.dangerous_accept_invalid_certs {
            tracing::warn!(
                "TLS certificate verification is off: the connection is open to a man in the middle"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match Pem::of(&tls.ca_file, &tls.ca_pem) {
                Some(ca) => {
                    for cert in ca.read("CA", certificates)? {
                        roots.add(cert).map_err(|e| ca.error("CA", e.to_string()))?;
                    }
                }
                None => {
                    let native = rustls_native_certs::load_native_certs();
                    for cert in native.certs {
                        // Skip platform certificates rustls cannot parse.
                        let _ = roots.add(cert);
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (
            Pem::of(&tls.cert_file, &tls.cert_pem),
            Pem::of(&tls.key_file, &tls.key_pem),
        ) {
            (Some(cert), Some(key)) => {
                let chain = cert.read("certificate", certificates)?;
                let private_key = key.read("key", private_key)?;
                builder
                    .with_client_auth_cert(chain, private_key)
                    .map_err(|e| key.error("key", e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(config)
    }

    /// The verifier behind `dangerous_accept_invalid_certs`: checks the
    /// handshake signatures, not who signed the certificate.
    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const CA_PEM: &[u8] = include_bytes!("../testdata/ca.pem");
        const CA_KEY: &[u8] = include_bytes!("../testdata/ca.key");
        const CLIENT_PEM: &[u8] = include_bytes!("../testdata/client.pem");
        const CLIENT_KEY: &[u8] = include_bytes!("../testdata/client.key");

        fn testdata(name: &str) -> std::path::PathBuf {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(name)
        }

        fn config_error(tls: TlsConfig) -> ConfigError {
            match client_config(&tls) {
                Err(Error::Config(e)) => e,
                Err(other) => panic!("not a configuration error: {other:?}"),
                Ok(_) => panic!("{tls:?} built a client configuration"),
            }
        }

        #[test]
        fn pem_bytes_build_the_same_configuration_as_files() {
            let from_bytes = client_config(&TlsConfig {
                ca_pem: Some(CA_PEM.to_vec()),
                cert_pem: Some(CLIENT_PEM.to_vec()),
                key_pem: Some(CLIENT_KEY.to_vec()),
                ..Default::default()
            })
            .expect("PEM bytes make a configuration");
            assert!(from_bytes.client_auth_cert_resolver.has_certs());
            let from_files = client_config(&TlsConfig {
                ca_file: Some(testdata("ca.pem")),
                cert_file: Some(testdata("client.pem")),
                key_file: Some(testdata("client.key")),
                ..Default::default()
            })
            .expect("PEM files make a configuration");
            assert!(from_files.client_auth_cert_resolver.has_certs());
        }

        #[test]
        fn without_a_client_certificate_none_is_presented() {
            let config = client_config(&TlsConfig {
                ca_pem: Some(CA_PEM.to_vec()),
                ..Default::default()
            })
            .unwrap();
            assert!(!config.client_auth_cert_resolver.has_certs());
        }

        #[test]
        fn the_features_choose_the_crypto_provider() {
            let config = client_config(&TlsConfig::default()).unwrap();
            let expected = crypto_provider();
            // The two providers differ in their key exchange groups
            // (aws-lc-rs has the post-quantum X25519MLKEM768).
            let algorithms = |p: &CryptoProvider| {
                let suites: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
                let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
                (suites, groups)
            };
            assert_eq!(algorithms(config.crypto_provider()), algorithms(&expected));
        }

        #[test]
        fn bad_pem_bytes_are_errors_that_say_which_item() {
            let err = config_error(TlsConfig {
                ca_pem: Some(b"not a certificate".to_vec()),
                ..Default::default()
            });
            assert!(
                matches!(&err, ConfigError::TlsPem { what: "CA", reason } if reason.contains("no CERTIFICATE")),
                "{err:?}"
            );
            let err = config_error(TlsConfig {
                cert_pem: Some(CLIENT_PEM.to_vec()),
                key_pem: Some(CLIENT_PEM.to_vec()),
                ..Default::default()
            });
            assert!(
                matches!(&err, ConfigError::TlsPem { what: "key", .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("no usable private key"), "{err}");
        }

        #[test]
        fn a_key_that_does_not_match_the_certificate_is_refused() {
            let err = config_error(TlsConfig {
                cert_pem: Some(CLIENT_PEM.to_vec()),
                key_pem: Some(CA_KEY.to_vec()),
                ..Default::default()
            });
            assert!(
                matches!(&err, ConfigError::TlsPem { what: "key", .. }),
                "{err:?}"
            );
        }

        #[test]
        fn a_missing_file_names_its_path() {
            let err = config_error(TlsConfig {
                ca_file: Some(testdata("no-such-ca.pem")),
                ..Default::default()
            });
            assert!(
                matches!(&err, ConfigError::TlsFile { what: "CA", path, .. } if path.ends_with("no-such-ca.pem")),
                "{err:?}"
            );
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "__tls")]
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "__tls")]
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "__tls")]
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "__tls")]
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "__tls")]
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "__tls")]
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
