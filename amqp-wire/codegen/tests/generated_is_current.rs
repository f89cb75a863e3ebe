//! The checked-in generated code matches what the generator produces now.

#[test]
fn generated_code_is_up_to_date() {
    let expected = amqp_codegen::generate_from_spec_file();
    let actual = std::fs::read_to_string(amqp_codegen::output_path()).expect("read generated.rs");
    assert!(
        actual == expected,
        "amqp-wire/src/generated.rs is stale: run `cargo run -p amqp-codegen` and commit the result"
    );
}

#[test]
fn generated_strategies_are_up_to_date() {
    let expected = amqp_codegen::generate_strategies_from_spec_file();
    let actual = std::fs::read_to_string(amqp_codegen::strategies_path())
        .expect("read method_strategies.rs");
    assert!(
        actual == expected,
        "amqp-wire/tests/support/method_strategies.rs is stale: run `cargo run -p amqp-codegen` and commit the result"
    );
}

#[test]
fn vendored_spec_matches_shared_copy_when_present() {
    let shared = amqp_codegen::workspace_root().join("../shared/spec/amqp-rabbitmq-0.9.1.json");
    if let Ok(shared) = std::fs::read(&shared) {
        let vendored = std::fs::read(amqp_codegen::spec_path()).expect("read vendored spec");
        assert_eq!(
            vendored, shared,
            "amqp-wire/spec differs from ../shared/spec"
        );
    }
}
