//! Rewrites `amqp-wire/src/generated.rs` from the protocol definition.

fn main() {
    let source = amqp_codegen::generate_from_spec_file();
    let path = amqp_codegen::output_path();
    std::fs::write(&path, source).expect("write the generated file");
    println!("wrote {}", path.display());
}
