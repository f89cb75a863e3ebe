//! The raw client's connection: a bare TCP socket, a read buffer and a
//! write buffer, the handshake written out by hand, and channel 1 open
//! (more on demand). Nothing runs in the background: whoever holds it
//! reads and writes.

use std::time::Duration;

use amqp_conn::ConnectionConfig;
use amqp_wire::{
    encode_method, ChannelOpen, ConnectionClose, ConnectionOpen, ConnectionStartOk,
    ConnectionTuneOk, FieldTable, Frame, LongString, Method, ProtocolHeader, ShortString,
};
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Result;

/// The channel every raw scenario works on.
pub const CHANNEL: u16 = 1;

/// The largest frame the raw client accepts (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;

/// How much the read buffer grows by before each read.
const READ_CHUNK: usize = 256 * 1024;

/// One connection with channel [`CHANNEL`] open.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    read: BytesMut,
    write: BytesMut,
    frame_max: u32,
    channel_max: u16,
}

impl RawConn {
    /// Connects to the broker of `url` (plain TCP, PLAIN auth, heartbeats
    /// off) and opens channel [`CHANNEL`].
    pub async fn open(url: &str) -> Result<RawConn> {
        let mut conn = RawConn::connect(url).await?;
        conn.open_channel(CHANNEL).await?;
        Ok(conn)
    }

    /// Connects to the broker of `url` (plain TCP, PLAIN auth, heartbeats
    /// off) without opening a channel.
    pub async fn connect(url: &str) -> Result<RawConn> {
        let config = ConnectionConfig::from_url(url)?;
        if config.tls.is_some() {
            return Err("the raw client speaks plain TCP only (amqp://, not amqps://)".into());
        }
        let stream = TcpStream::connect((config.host.as_str(), config.port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = RawConn {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(READ_CHUNK),
            frame_max: 4096,
            channel_max: 0,
        };
        conn.write.put_slice(&ProtocolHeader::AMQP_0_9_1.to_bytes());
        conn.flush().await?;
        let Method::ConnectionStart(_) = conn.recv_method(0).await? else {
            return Err("expected connection.start".into());
        };
        let username = config.credentials.username.as_bytes();
        let password = config.credentials.password().as_bytes();
        let mut response = Vec::with_capacity(2 + username.len() + password.len());
        response.push(0);
        response.extend_from_slice(username);
        response.push(0);
        response.extend_from_slice(password);
        let mut client_properties = FieldTable::new();
        client_properties.insert(ShortString::from_static("product"), "pika-perf raw");
        conn.send(
            0,
            ConnectionStartOk {
                client_properties,
                response: LongString::from(response),
                ..Default::default()
            },
        );
        conn.flush().await?;
        let Method::ConnectionTune(tune) = conn.recv_method(0).await? else {
            return Err("expected connection.tune (wrong user name or password?)".into());
        };
        conn.frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            max => max.min(FRAME_MAX),
        };
        conn.channel_max = tune.channel_max;
        conn.send(
            0,
            ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max: conn.frame_max,
                heartbeat: 0,
            },
        );
        conn.send(
            0,
            ConnectionOpen {
                virtual_host: ShortString::try_from(config.vhost.as_str())?,
                ..Default::default()
            },
        );
        conn.flush().await?;
        let Method::ConnectionOpenOk(_) = conn.recv_method(0).await? else {
            return Err("expected connection.open-ok".into());
        };
        Ok(conn)
    }

    /// Opens `channel` and waits for the broker's channel.open-ok.
    pub async fn open_channel(&mut self, channel: u16) -> Result<()> {
        match self.call_on(channel, ChannelOpen::default()).await? {
            Method::ChannelOpenOk(_) => Ok(()),
            other => Err(format!("expected channel.open-ok, got {other:?}").into()),
        }
    }

    /// The negotiated frame_max.
    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// The broker's channel_max (0: no limit), accepted as it is.
    pub fn channel_max(&self) -> u16 {
        self.channel_max
    }

    /// The write buffer: encode frames into it, then [`flush`](Self::flush).
    pub fn write_buf(&mut self) -> &mut BytesMut {
        &mut self.write
    }

    /// Encodes a method frame into the write buffer.
    pub fn send(&mut self, channel: u16, method: impl Into<Method>) {
        encode_method(&mut self.write, channel, &method.into());
    }

    /// Writes out the write buffer.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.write.is_empty() {
            self.stream.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }

    /// Writes out at most `limit` bytes from the front of the write
    /// buffer while reading whatever the broker sends meanwhile into the
    /// read buffer, so that a loop that publishes and consumes on one
    /// socket never leaves the broker stuck writing deliveries to it while
    /// it waits for the broker to read. Returns early, with part of the
    /// write buffer left for the next call, once the read buffer holds a
    /// read's worth (256 KiB) to be handled first.
    pub async fn flush_reading(&mut self, limit: usize) -> Result<()> {
        let end = self.write.len().min(limit);
        let (mut reader, mut writer) = self.stream.split();
        let mut written = 0;
        while written < end && self.read.len() < READ_CHUNK {
            self.read.reserve(READ_CHUNK);
            tokio::select! {
                biased;
                wrote = writer.write(&self.write[written..end]) => match wrote? {
                    0 => return Err("the broker closed the connection".into()),
                    n => written += n,
                },
                read = reader.read_buf(&mut self.read) => {
                    if read? == 0 {
                        return Err("the broker closed the connection".into());
                    }
                }
            }
        }
        if written == self.write.len() {
            self.write.clear();
        } else {
            self.write.advance(written);
        }
        Ok(())
    }

    /// Reads what the socket holds now into the read buffer without
    /// waiting; false when there was nothing.
    pub fn try_fill(&mut self) -> Result<bool> {
        self.read.reserve(READ_CHUNK);
        match self.stream.try_read_buf(&mut self.read) {
            Ok(0) => Err("the broker closed the connection".into()),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads once from the socket into the read buffer (cancel-safe).
    pub async fn fill(&mut self) -> Result<()> {
        self.read.reserve(READ_CHUNK);
        if self.stream.read_buf(&mut self.read).await? == 0 {
            return Err("the broker closed the connection".into());
        }
        Ok(())
    }

    /// The next whole frame in the read buffer, if there is one. A
    /// `connection.close` or `channel.close` from the broker is an error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let frame = Frame::decode(&mut self.read, self.frame_max)?;
        if let Some(Frame::Method { method, .. }) = &frame {
            match method {
                Method::ConnectionClose(close) => {
                    return Err(format!(
                        "the broker closed the connection: {} {}",
                        close.reply_code, close.reply_text
                    )
                    .into())
                }
                Method::ChannelClose(close) => {
                    return Err(format!(
                        "the broker closed the channel: {} {}",
                        close.reply_code, close.reply_text
                    )
                    .into())
                }
                _ => {}
            }
        }
        Ok(frame)
    }

    /// The next frame, reading as needed.
    pub async fn recv_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// The next method on `channel`, skipping heartbeats.
    pub async fn recv_method(&mut self, channel: u16) -> Result<Method> {
        loop {
            match self.recv_frame().await? {
                Frame::Method { channel: c, method } if c == channel => return Ok(method),
                Frame::Heartbeat => {}
                other => return Err(format!("unexpected frame {other:?}").into()),
            }
        }
    }

    /// Sends a synchronous method on [`CHANNEL`] and returns its reply.
    pub async fn call(&mut self, method: impl Into<Method>) -> Result<Method> {
        self.call_on(CHANNEL, method).await
    }

    /// Sends a synchronous method on `channel` and returns its reply,
    /// skipping what may still arrive meanwhile: frames of other channels,
    /// content frames, deliveries and publisher confirms.
    pub async fn call_on(&mut self, channel: u16, method: impl Into<Method>) -> Result<Method> {
        self.send(channel, method);
        self.flush().await?;
        loop {
            match self.recv_frame().await? {
                Frame::Method {
                    method: Method::BasicDeliver(_) | Method::BasicAck(_) | Method::BasicNack(_),
                    ..
                } => {}
                Frame::Method { channel: c, method } if c == channel => return Ok(method),
                Frame::ProtocolHeader(header) => {
                    return Err(format!("unexpected protocol header {header:?}").into())
                }
                _ => {}
            }
        }
    }

    /// Closes the connection with code 200, waiting at most a second for
    /// the broker's close-ok.
    pub async fn close(mut self) -> Result<()> {
        self.send(
            0,
            ConnectionClose {
                reply_code: 200,
                reply_text: ShortString::from_static("done"),
                ..Default::default()
            },
        );
        self.flush().await?;
        let close_ok = async {
            loop {
                match Frame::decode(&mut self.read, self.frame_max)? {
                    Some(Frame::Method {
                        method: Method::ConnectionCloseOk(_),
                        ..
                    }) => return Ok::<_, crate::Error>(()),
                    Some(_) => {}
                    None => self.fill().await?,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), close_ok).await;
        Ok(())
    }
}
