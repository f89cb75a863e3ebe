//! SASL responses for `connection.start-ok`.

use amqp_wire::{FieldTable, FieldValue, LongString, ShortString};
use bytes::BytesMut;

use crate::config::{AuthMechanism, Credentials};

/// The response bytes for `mechanism` with `credentials`.
pub(crate) fn response(mechanism: AuthMechanism, credentials: &Credentials) -> LongString {
    match mechanism {
        AuthMechanism::Plain => {
            let mut response =
                Vec::with_capacity(2 + credentials.username.len() + credentials.password().len());
            response.push(0);
            response.extend_from_slice(credentials.username.as_bytes());
            response.push(0);
            response.extend_from_slice(credentials.password().as_bytes());
            LongString::from(response)
        }
        AuthMechanism::AmqPlain => {
            // A field table without its length prefix: LOGIN and PASSWORD.
            let mut table = FieldTable::new();
            table.insert(
                ShortString::from_static("LOGIN"),
                FieldValue::from(credentials.username.as_str()),
            );
            table.insert(
                ShortString::from_static("PASSWORD"),
                FieldValue::from(credentials.password()),
            );
            let mut buf = BytesMut::new();
            amqp_wire::encode_field_table(&mut buf, &table);
            LongString::from(buf.split_off(4).freeze())
        }
        AuthMechanism::External => LongString::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_nul_user_nul_password() {
        let r = response(AuthMechanism::Plain, &Credentials::new("u", "p"));
        assert_eq!(r.as_bytes(), b"\0u\0p");
    }

    #[test]
    fn amqplain_is_a_table_without_length() {
        let r = response(AuthMechanism::AmqPlain, &Credentials::new("u", "p"));
        assert_eq!(
            r.as_bytes(),
            b"\x05LOGINS\x00\x00\x00\x01u\x08PASSWORDS\x00\x00\x00\x01p"
        );
    }

    #[test]
    fn external_is_empty() {
        assert!(response(AuthMechanism::External, &Credentials::default()).is_empty());
    }
}
