//! The opening handshake as a state machine without I/O: frames in,
//! frames out.
//!
//! ```text
//! client                         broker
//!   AMQP 0 0 9 1  ------------->
//!                 <-------------  connection.start
//!   start-ok      ------------->
//!                 <-------------  connection.tune
//!   tune-ok, open ------------->
//!                 <-------------  connection.open-ok
//! ```

use amqp_wire::{
    ConnectionClose, ConnectionCloseOk, ConnectionOpen, ConnectionStart, ConnectionStartOk,
    ConnectionTuneOk, FieldTable, Frame, Method, ProtocolHeader, ReplyCode, ShortString,
};
use bytes::BytesMut;

use crate::config::{AuthMechanism, ConnectionConfig};
use crate::error::{CloseReason, Error, Initiator};
use crate::sasl;
use crate::tuning::{negotiate, Tuning};

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    AwaitStart,
    AwaitTune,
    AwaitOpenOk,
    Done,
}

/// The result of a completed handshake.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    /// The negotiated limits.
    pub(crate) tuning: Tuning,
    /// What the broker said about itself in `connection.start`, encoded
    /// (see [`encoded`]).
    pub(crate) server_properties: bytes::Bytes,
}

/// The handshake state machine.
pub(crate) struct Handshake<'a> {
    config: &'a ConnectionConfig,
    stage: Stage,
    tuning: Option<Tuning>,
    server_properties: FieldTable,
}

fn s(text: &'static str) -> ShortString {
    ShortString::from_static(text)
}

/// The client properties sent in `connection.start-ok`.
pub(crate) fn client_properties(config: &ConnectionConfig) -> FieldTable {
    let mut capabilities = FieldTable::new();
    for capability in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        capabilities.insert(s(capability), true);
    }
    let mut properties = FieldTable::new();
    properties.insert(s("product"), "pika");
    properties.insert(s("version"), env!("CARGO_PKG_VERSION"));
    properties.insert(s("platform"), "Rust");
    properties.insert(s("information"), "pika: an AMQP 0-9-1 client for Rust");
    properties.insert(s("capabilities"), capabilities);
    if let Some(name) = &config.connection_name {
        properties.insert(s("connection_name"), name.as_str());
    }
    for (key, value) in config.client_properties.iter() {
        properties.insert(key.clone(), value.clone());
    }
    properties
}

impl<'a> Handshake<'a> {
    /// Starts the handshake: writes the protocol header into `out`.
    pub(crate) fn start(config: &'a ConnectionConfig, out: &mut BytesMut) -> Self {
        Frame::ProtocolHeader(ProtocolHeader::AMQP_0_9_1).encode(out);
        Handshake {
            config,
            stage: Stage::AwaitStart,
            tuning: None,
            server_properties: FieldTable::new(),
        }
    }

    /// Handles one frame from the broker, writing replies into `out`;
    /// returns the result once the connection is open.
    pub(crate) fn handle(
        &mut self,
        frame: Frame,
        out: &mut BytesMut,
    ) -> Result<Option<Opened>, Error> {
        let method = match frame {
            Frame::Method { channel: 0, method } => method,
            Frame::Heartbeat => return Ok(None),
            Frame::ProtocolHeader(header) => return Err(Error::UnsupportedProtocol(header)),
            other => return Err(self.unexpected(&other)),
        };
        match (self.stage, method) {
            (Stage::AwaitStart, Method::ConnectionStart(start)) => {
                self.on_start(start, out)?;
                Ok(None)
            }
            (Stage::AwaitTune, Method::ConnectionTune(tune)) => {
                let ours = Tuning {
                    channel_max: self.config.channel_max,
                    frame_max: self.config.frame_max,
                    heartbeat: self.config.heartbeat,
                };
                let server = Tuning {
                    channel_max: tune.channel_max,
                    frame_max: tune.frame_max,
                    heartbeat: tune.heartbeat,
                };
                let tuning = negotiate(ours, server);
                self.tuning = Some(tuning);
                amqp_wire::encode_method(
                    out,
                    0,
                    &ConnectionTuneOk {
                        channel_max: tuning.channel_max,
                        frame_max: tuning.frame_max,
                        heartbeat: tuning.heartbeat,
                    }
                    .into(),
                );
                let vhost = ShortString::try_from(self.config.vhost.as_str())?;
                amqp_wire::encode_method(
                    out,
                    0,
                    &ConnectionOpen {
                        virtual_host: vhost,
                        ..Default::default()
                    }
                    .into(),
                );
                self.stage = Stage::AwaitOpenOk;
                Ok(None)
            }
            (Stage::AwaitOpenOk, Method::ConnectionOpenOk(_)) => {
                self.stage = Stage::Done;
                Ok(Some(Opened {
                    tuning: self.tuning.expect("tuned before open"),
                    server_properties: encoded(&self.server_properties),
                }))
            }
            (_, Method::ConnectionClose(close)) => {
                amqp_wire::encode_method(out, 0, &ConnectionCloseOk::default().into());
                Err(self.on_close(close))
            }
            (_, Method::ConnectionSecure(_)) => Err(Error::UnexpectedFrame {
                channel: 0,
                got: "connection.secure",
                state: "logging in (no mechanism this client uses needs a challenge)",
            }),
            (_, other) => Err(Error::UnexpectedFrame {
                channel: 0,
                got: other.name(),
                state: self.state_name(),
            }),
        }
    }

    /// The error when the broker closes the socket without a
    /// `connection.close`: right after our credentials, that is how older
    /// brokers refuse a login.
    pub(crate) fn on_eof(&self) -> Error {
        match self.stage {
            // A broker without `authentication_failure_close` refuses a
            // login by closing the socket; one with it (RabbitMQ since
            // 3.2) sends connection.close 403 instead, so there an end of
            // stream is the network's doing, and worth a retry.
            Stage::AwaitTune if !self.broker_reports_auth_failures() => {
                self.auth_failed("the broker closed the connection after the login".into())
            }
            _ => Error::io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the broker closed the socket while {}", self.state_name()),
            )),
        }
    }

    /// True when the broker said (in connection.start) that it refuses a
    /// login with connection.close rather than by closing the socket.
    fn broker_reports_auth_failures(&self) -> bool {
        match self.server_properties.get("capabilities") {
            Some(amqp_wire::FieldValue::Table(capabilities)) => capabilities
                .get("authentication_failure_close")
                .and_then(amqp_wire::FieldValue::as_bool)
                .unwrap_or(false),
            _ => false,
        }
    }

    fn on_start(&mut self, start: ConnectionStart, out: &mut BytesMut) -> Result<(), Error> {
        if (start.version_major, start.version_minor) != (0, 9) {
            return Err(Error::UnsupportedProtocol(ProtocolHeader {
                protocol_id: 0,
                major: start.version_major,
                minor: start.version_minor,
                revision: 0,
            }));
        }
        let mechanism = self.config.auth_mechanism;
        let offered = start.mechanisms.to_str().unwrap_or("");
        if !offered.split(' ').any(|m| m == mechanism.name()) {
            return Err(Error::MechanismNotOffered {
                mechanism: mechanism.name(),
                offered: offered.to_string(),
            });
        }
        self.server_properties = start.server_properties;
        let start_ok = ConnectionStartOk {
            client_properties: client_properties(self.config),
            mechanism: ShortString::from_static(mechanism.name()),
            response: sasl::response(mechanism, &self.config.credentials),
            locale: ShortString::try_from(self.config.locale.as_str())?,
        };
        amqp_wire::encode_method(out, 0, &start_ok.into());
        self.stage = Stage::AwaitTune;
        Ok(())
    }

    fn on_close(&self, close: ConnectionClose) -> Error {
        let code = ReplyCode(close.reply_code);
        if self.stage == Stage::AwaitTune && code == ReplyCode::ACCESS_REFUSED {
            return self.auth_failed(close.reply_text.to_string());
        }
        let reason = CloseReason {
            code,
            text: close.reply_text.to_string(),
            class_id: close.class_id,
            method_id: close.method_id,
            initiator: Initiator::Broker,
        };
        if self.stage == Stage::AwaitOpenOk && code == ReplyCode::NOT_ALLOWED {
            return Error::VhostRefused {
                vhost: self.config.vhost.clone(),
                reason,
            };
        }
        Error::ConnectionClosed(reason)
    }

    fn auth_failed(&self, reason: String) -> Error {
        let username = match self.config.auth_mechanism {
            AuthMechanism::External => "(from the client certificate)".to_string(),
            _ => self.config.credentials.username.clone(),
        };
        Error::AuthenticationFailed {
            username,
            mechanism: self.config.auth_mechanism.name(),
            reason,
        }
    }

    fn state_name(&self) -> &'static str {
        match self.stage {
            Stage::AwaitStart => "waiting for connection.start",
            Stage::AwaitTune => "logging in (waiting for connection.tune)",
            Stage::AwaitOpenOk => "opening the virtual host (waiting for connection.open-ok)",
            Stage::Done => "open",
        }
    }

    fn unexpected(&self, frame: &Frame) -> Error {
        Error::UnexpectedFrame {
            channel: frame.channel(),
            got: match frame {
                Frame::Header { .. } => "content header",
                Frame::Body { .. } => "body frame",
                Frame::Method { method, .. } => method.name(),
                _ => "frame",
            },
            state: self.state_name(),
        }
    }
}

/// The table encoded in a buffer of its own, decoded when asked for
/// ([`Connection::server_properties`](crate::Connection::server_properties)):
/// as decoded, its strings are slices of the handshake's read buffer,
/// which they would keep alive (4 KiB or more, for as long as the
/// connection lives), and the decoded entries take twice the encoded
/// size.
fn encoded(table: &FieldTable) -> bytes::Bytes {
    let mut buf = bytes::BytesMut::with_capacity(4 + table.encoded_len());
    amqp_wire::encode_field_table(&mut buf, table);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_wire::{ConnectionOpenOk, ConnectionTune, FieldValue, LongString};

    fn long(text: &'static str) -> LongString {
        LongString::from_static(text.as_bytes())
    }

    fn frames(out: &mut BytesMut) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = Frame::decode(out, u32::MAX).unwrap() {
            frames.push(frame);
        }
        frames
    }

    fn method(m: impl Into<Method>) -> Frame {
        Frame::Method {
            channel: 0,
            method: m.into(),
        }
    }

    fn start_frame() -> Frame {
        method(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::new(),
            mechanisms: long("PLAIN AMQPLAIN"),
            locales: long("en_US"),
        })
    }

    #[test]
    fn full_handshake_negotiates_and_opens_the_vhost() {
        let config = ConnectionConfig::default()
            .with_vhost("billing")
            .with_heartbeat(30)
            .with_connection_name("app-1");
        let mut out = BytesMut::new();
        let mut hs = Handshake::start(&config, &mut out);
        assert_eq!(
            frames(&mut out),
            [Frame::ProtocolHeader(ProtocolHeader::AMQP_0_9_1)]
        );

        assert!(hs.handle(start_frame(), &mut out).unwrap().is_none());
        let [Frame::Method {
            method: Method::ConnectionStartOk(start_ok),
            ..
        }] = &frames(&mut out)[..]
        else {
            panic!("expected start-ok")
        };
        assert_eq!(start_ok.mechanism, "PLAIN");
        assert_eq!(start_ok.response.as_bytes(), b"\0guest\0guest");
        let props = &start_ok.client_properties;
        assert_eq!(
            props.get("connection_name").and_then(FieldValue::as_str),
            Some("app-1")
        );
        assert_eq!(
            props.get("product").and_then(FieldValue::as_str),
            Some("pika")
        );
        let Some(FieldValue::Table(caps)) = props.get("capabilities") else {
            panic!()
        };
        for cap in [
            "publisher_confirms",
            "basic.nack",
            "connection.blocked",
            "consumer_cancel_notify",
            "direct_reply_to",
        ] {
            assert_eq!(caps.get(cap), Some(&FieldValue::Boolean(true)), "{cap}");
        }

        let tune = method(ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        });
        assert!(hs.handle(tune, &mut out).unwrap().is_none());
        let sent = frames(&mut out);
        assert_eq!(
            sent[0],
            method(ConnectionTuneOk {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 30
            })
        );
        let Frame::Method {
            method: Method::ConnectionOpen(open),
            ..
        } = &sent[1]
        else {
            panic!()
        };
        assert_eq!(open.virtual_host, "billing");

        let opened = hs
            .handle(method(ConnectionOpenOk::default()), &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(
            opened.tuning,
            Tuning {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 30
            }
        );
    }

    #[test]
    fn access_refused_after_login_is_an_authentication_error() {
        let config = ConnectionConfig::default().with_credentials("bob", "wrong");
        let mut out = BytesMut::new();
        let mut hs = Handshake::start(&config, &mut out);
        hs.handle(start_frame(), &mut out).unwrap();
        frames(&mut out);
        let close = method(ConnectionClose {
            reply_code: 403,
            reply_text: ShortString::from_static("ACCESS_REFUSED - Login was refused"),
            class_id: 0,
            method_id: 0,
        });
        let err = hs.handle(close, &mut out).unwrap_err();
        let Error::AuthenticationFailed {
            username,
            mechanism,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((username.as_str(), *mechanism), ("bob", "PLAIN"));
        assert!(!err.to_string().contains("wrong"), "no password in {err}");
        // We answered the close.
        assert!(matches!(
            frames(&mut out)[..],
            [Frame::Method {
                method: Method::ConnectionCloseOk(_),
                ..
            }]
        ));
    }

    #[test]
    fn socket_closed_after_login_is_an_authentication_error_for_an_old_broker() {
        let config = ConnectionConfig::default();
        let mut out = BytesMut::new();
        let mut hs = Handshake::start(&config, &mut out);
        hs.handle(start_frame(), &mut out).unwrap();
        assert!(matches!(hs.on_eof(), Error::AuthenticationFailed { .. }));
    }

    #[test]
    fn socket_closed_after_login_is_a_connection_loss_when_the_broker_reports_refusals() {
        // RabbitMQ announces authentication_failure_close and refuses a
        // login with connection.close 403: an end of stream there is a
        // cut network, which a reconnecting client must retry.
        let mut capabilities = FieldTable::new();
        capabilities.insert(s("authentication_failure_close"), true);
        let mut server_properties = FieldTable::new();
        server_properties.insert(s("capabilities"), capabilities);
        let start = method(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties,
            mechanisms: long("PLAIN AMQPLAIN"),
            locales: long("en_US"),
        });
        let config = ConnectionConfig::default();
        let mut out = BytesMut::new();
        let mut hs = Handshake::start(&config, &mut out);
        hs.handle(start, &mut out).unwrap();
        let error = hs.on_eof();
        assert!(error.is_connection_error(), "{error:?}");
    }

    #[test]
    fn a_mechanism_the_broker_does_not_offer_is_refused() {
        let config = ConnectionConfig {
            auth_mechanism: AuthMechanism::External,
            ..ConnectionConfig::default()
        };
        let mut out = BytesMut::new();
        let mut hs = Handshake::start(&config, &mut out);
        let err = hs.handle(start_frame(), &mut out).unwrap_err();
        assert!(matches!(
            err,
            Error::MechanismNotOffered {
                mechanism: "EXTERNAL",
                ..
            }
        ));
    }

    #[test]
    fn a_server_speaking_another_protocol_is_refused() {
        let config = ConnectionConfig::default();
        let mut out = BytesMut::new();
        let mut hs = Handshake::start(&config, &mut out);
        let other = ProtocolHeader {
            protocol_id: 3,
            major: 1,
            minor: 0,
            revision: 0,
        };
        assert!(
            matches!(hs.handle(Frame::ProtocolHeader(other), &mut out), Err(Error::UnsupportedProtocol(h)) if h == other)
        );
    }
}
