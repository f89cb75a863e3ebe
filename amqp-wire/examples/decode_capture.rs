//! Decodes the frames captured from RabbitMQ in `amqp-wire/tests/data/`
//! and prints them: `cargo run -p amqp-wire --example decode_capture`.

use amqp_wire::Frame;
use bytes::BytesMut;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    for name in [
        "connection_start.bin",
        "connection_tune.bin",
        "deliver_with_headers.bin",
        "channel_close_404.bin",
    ] {
        let mut buf = BytesMut::from(&std::fs::read(format!("{dir}/{name}"))?[..]);
        println!("== {name} ({} bytes)", buf.len());
        while let Some(frame) = Frame::decode(&mut buf, 131_072)? {
            println!("{frame:#?}");
        }
    }
    Ok(())
}
