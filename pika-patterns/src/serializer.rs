//! How task and RPC payloads become message bodies, and back.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a payload could not be written or read.
pub type SerializeError = Box<dyn std::error::Error + Send + Sync>;

/// A message format for [`Master`](crate::Master) and [`Rpc`](crate::Rpc):
/// JSON ([`Json`]) unless you give another.
///
/// The content type (and encoding, if any) is set on every message sent
/// and checked on every message received: a message in another format is
/// refused with [`PatternError::UnexpectedFormat`](crate::PatternError::UnexpectedFormat)
/// instead of being misread.
///
/// The docs' "Extending" chapter, gzip-compressed JSON, as a serializer:
///
/// ```
/// use std::io::{Read, Write};
/// use pika_patterns::{Json, SerializeError, Serializer};
///
/// #[derive(Debug, Clone, Copy)]
/// struct GzipJson;
///
/// impl Serializer for GzipJson {
///     fn content_type(&self) -> &str { "application/json" }
///     fn content_encoding(&self) -> Option<&str> { Some("gzip") }
///     fn serialize<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<bytes::Bytes, SerializeError> {
///         let json = Json.serialize(value)?;
///         let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
///         gzip.write_all(&json)?;
///         Ok(gzip.finish()?.into())
///     }
///     fn deserialize<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, SerializeError> {
///         let mut json = Vec::new();
///         flate2::read::GzDecoder::new(body).read_to_end(&mut json)?;
///         Json.deserialize(&json)
///     }
/// }
///
/// let body = GzipJson.serialize(&vec![1, 2, 3]).unwrap();
/// assert_eq!(GzipJson.deserialize::<Vec<i32>>(&body).unwrap(), vec![1, 2, 3]);
/// ```
pub trait Serializer: Send + Sync + 'static {
    /// The MIME type set on messages (`content_type`), such as
    /// `application/json`.
    fn content_type(&self) -> &str;

    /// The encoding set on messages (`content_encoding`), such as `gzip`;
    /// none by default.
    fn content_encoding(&self) -> Option<&str> {
        None
    }

    /// Writes `value` as a message body.
    ///
    /// # Errors
    /// When the value cannot be written in this format.
    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, SerializeError>;

    /// Reads a message body.
    ///
    /// # Errors
    /// When the body is not a `T` in this format.
    fn deserialize<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, SerializeError>;
}

/// JSON with serde_json, content type `application/json`: the default,
/// as in aio-pika's patterns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Serializer for Json {
    fn content_type(&self) -> &str {
        "application/json"
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, SerializeError> {
        Ok(serde_json::to_vec(value)?.into())
    }

    fn deserialize<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, SerializeError> {
        Ok(serde_json::from_slice(body)?)
    }
}

/// Sets the serializer's content type and encoding on `message`.
pub(crate) fn label<S: Serializer>(serializer: &S, message: pika::Message) -> pika::Message {
    let message = message.content_type(serializer.content_type());
    match serializer.content_encoding() {
        Some(encoding) => message.content_encoding(encoding),
        None => message,
    }
}

/// Checks that `message` is in the serializer's format and reads it.
pub(crate) fn read<S: Serializer, T: DeserializeOwned>(
    serializer: &S,
    message: &pika::IncomingMessage,
) -> Result<T, crate::PatternError> {
    let properties = message.properties();
    let found_type = properties.content_type.as_ref().map(|t| t.as_str());
    let found_encoding = properties.content_encoding.as_ref().map(|e| e.as_str());
    if found_type != Some(serializer.content_type())
        || found_encoding != serializer.content_encoding()
    {
        return Err(crate::PatternError::UnexpectedFormat {
            expected: describe(
                Some(serializer.content_type()),
                serializer.content_encoding(),
            ),
            found: describe(found_type, found_encoding),
        });
    }
    serializer
        .deserialize(message.body())
        .map_err(|source| crate::PatternError::Deserialize { source })
}

fn describe(content_type: Option<&str>, encoding: Option<&str>) -> String {
    match (content_type, encoding) {
        (None, _) => "no content type".into(),
        (Some(t), None) => t.to_string(),
        (Some(t), Some(e)) => format!("{t} ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_refuses_garbage() {
        let body = Json
            .serialize(&serde_json::json!({"x": 100, "y": 2}))
            .unwrap();
        let value: serde_json::Value = Json.deserialize(&body).unwrap();
        assert_eq!(value["x"], 100);
        assert!(Json.deserialize::<u32>(b"not json").is_err());
    }

    #[test]
    fn formats_are_described_for_errors() {
        assert_eq!(describe(None, None), "no content type");
        assert_eq!(
            describe(Some("application/json"), Some("gzip")),
            "application/json (gzip)"
        );
    }
}
