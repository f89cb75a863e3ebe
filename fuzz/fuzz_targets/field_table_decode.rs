//! Decodes a field table from arbitrary bytes; a table that decodes must
//! re-encode to bytes that decode to the same table and encode again to
//! the same bytes.

#![no_main]

use amqp_wire::{decode_field_table, encode_field_table};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(table) = decode_field_table(&input) {
        let mut encoded = BytesMut::new();
        encode_field_table(&mut encoded, &table);
        assert_eq!(encoded.len(), 4 + table.encoded_len());
        let encoded = encoded.freeze();
        let again = decode_field_table(&encoded).expect("a re-encoded table decodes");
        assert_eq!(again, table, "decode(encode(table)) == table");
        let mut twice = BytesMut::new();
        encode_field_table(&mut twice, &again);
        assert_eq!(twice.freeze(), encoded, "encoding is a fixed point");
    }
});
