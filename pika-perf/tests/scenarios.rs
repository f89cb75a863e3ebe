//! Each fixed scenario with pika against the local RabbitMQ (`AMQP_URL`
//! or amqp://guest:guest@127.0.0.1:5672/%2f), at a small N: nothing lost,
//! nothing duplicated, and a JSON line with every field. Correctness
//! only: no timing assertions.

use pika_perf::report::FIELDS;
use pika_perf::scenario::DEFAULT_URL;
use pika_perf::{run_scenario_blocking, ClientKind, Rt, Scenario, ScenarioConfig};

const N: u64 = 2000;

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

fn run(scenario: Scenario, rt: Rt, direct_reply_to: bool) -> serde_json::Value {
    let config = ScenarioConfig {
        client: ClientKind::Pika,
        scenario,
        n: N,
        size: 64,
        rt,
        url: url(),
        direct_reply_to,
    };
    let report = run_scenario_blocking(&config)
        .unwrap_or_else(|e| panic!("{scenario} with pika failed: {e}"));
    assert_eq!(report.lost, 0, "{scenario}: lost messages: {report:?}");
    assert_eq!(report.dup, 0, "{scenario}: duplicated messages: {report:?}");
    assert_eq!(report.n, N);
    assert_eq!(report.client, "pika");
    assert_eq!(report.scenario, scenario.name());
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json_line()).expect("the JSON line parses");
    let object = json.as_object().expect("the JSON line is an object");
    for field in FIELDS {
        assert!(
            object.contains_key(field),
            "{scenario}: no `{field}` in {json}"
        );
    }
    assert_eq!(
        object.len(),
        FIELDS.len(),
        "{scenario}: extra fields in {json}"
    );
    json
}

#[test]
fn publish_loses_and_duplicates_nothing() {
    let json = run(Scenario::Publish, Rt::Ct, false);
    assert!(json["p50_us"].is_null());
}

#[test]
fn publish_confirm_loses_and_duplicates_nothing() {
    run(Scenario::PublishConfirm, Rt::Ct, false);
}

#[test]
fn consume_loses_and_duplicates_nothing() {
    run(Scenario::Consume, Rt::Ct, false);
}

#[test]
fn consume_on_the_multi_thread_runtime_loses_nothing() {
    let json = run(Scenario::Consume, Rt::Mt, false);
    assert_eq!(json["rt"], "mt");
}

#[test]
fn rpc_over_a_callback_queue_answers_every_request() {
    let json = run(Scenario::Rpc, Rt::Ct, false);
    assert!(json["p50_us"].as_f64().is_some_and(|p| p > 0.0));
    assert!(json["p99_us"].as_f64() >= json["p50_us"].as_f64());
}

#[test]
fn rpc_over_direct_reply_to_answers_every_request() {
    run(Scenario::Rpc, Rt::Ct, true);
}

#[test]
fn the_raw_client_loses_nothing_either() {
    for scenario in [
        Scenario::Publish,
        Scenario::PublishConfirm,
        Scenario::Consume,
        Scenario::Rpc,
    ] {
        let config = ScenarioConfig {
            client: ClientKind::Raw,
            scenario,
            n: N,
            url: url(),
            ..ScenarioConfig::default()
        };
        let report = run_scenario_blocking(&config)
            .unwrap_or_else(|e| panic!("{scenario} with raw failed: {e}"));
        assert_eq!((report.lost, report.dup), (0, 0), "{scenario}: {report:?}");
    }
}
