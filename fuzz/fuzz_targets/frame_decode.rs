//! Decodes frames from arbitrary bytes with a small frame_max, re-encodes
//! each one and checks the encoding is canonical: decoding it gives the
//! same frame, and encoding that again gives the same bytes.
//!
//! Inputs may use non-canonical encodings (a boolean octet of 2, unused
//! bits set in a bit octet), so the first re-encoding need not equal the
//! input; from then on everything must be a fixed point.

#![no_main]

use amqp_wire::Frame;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const FRAME_MAX: u32 = 16_384;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Each round either consumes bytes, waits for more (ends), or fails.
    while let Ok(Some(frame)) = Frame::decode(&mut buf, FRAME_MAX) {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        assert_eq!(encoded.len(), frame.encoded_len(), "encoded_len of {frame:?}");
        let canonical = encoded.clone().freeze();
        let again = Frame::decode(&mut encoded, u32::MAX)
            .expect("a re-encoded frame decodes")
            .expect("a re-encoded frame is whole");
        assert!(encoded.is_empty(), "re-encoded frame consumed exactly");
        assert_eq!(again, frame, "decode(encode(frame)) == frame");
        let mut twice = BytesMut::new();
        again.encode(&mut twice);
        assert_eq!(twice.freeze(), canonical, "encoding is a fixed point");
    }
});
