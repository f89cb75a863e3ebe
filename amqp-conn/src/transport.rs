//! The byte stream under a connection: plain TCP, or TLS over TCP
//! (tokio-rustls).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{ConfigError, ConnectionConfig, TlsConfig};
use crate::error::Error;

/// TCP or TLS.
#[derive(Debug)]
pub(crate) enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
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
    let connector = TlsConnector::from(Arc::new(client_config(tls)?));
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

fn read_pem<T>(
    what: &'static str,
    path: &std::path::Path,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, Error> {
    let file_error = |reason: String| {
        Error::Config(ConfigError::TlsFile {
            what,
            path: path.to_path_buf(),
            reason,
        })
    };
    let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    parse(&bytes).map_err(file_error)
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

/// The rustls client configuration: which roots to trust, which client
/// certificate to present.
fn client_config(tls: &TlsConfig) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
        match &tls.ca_file {
            Some(path) => {
                for cert in read_pem("CA", path, certificates)? {
                    roots.add(cert).map_err(|e| {
                        Error::Config(ConfigError::TlsFile {
                            what: "CA",
                            path: path.clone(),
                            reason: e.to_string(),
                        })
                    })?;
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
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_pem("certificate", cert, certificates)?;
            let key = read_pem("key", key, |bytes| {
                PrivateKeyDer::from_pem_slice(bytes)
                    .map_err(|e| format!("no usable private key: {e}"))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::Config(ConfigError::TlsFile {
                    what: "key",
                    path: tls.key_file.clone().unwrap_or_default(),
                    reason: e.to_string(),
                })
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The verifier behind `dangerous_accept_invalid_certs`: checks the
/// handshake signatures, not who signed the certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

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

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
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
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
