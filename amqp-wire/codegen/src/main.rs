//! Rewrites `amqp-wire/src/generated.rs` and the test strategies from the
//! protocol definition.

fn main() {
    for (path, source) in [
        (
            amqp_codegen::output_path(),
            amqp_codegen::generate_from_spec_file(),
        ),
        (
            amqp_codegen::strategies_path(),
            amqp_codegen::generate_strategies_from_spec_file(),
        ),
    ] {
        std::fs::write(&path, source).expect("write the generated file");
        println!("wrote {}", path.display());
    }
}
