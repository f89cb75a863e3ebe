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
        ..ScenarioConfig::default()
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

/// Runs a scenario of scale with `client` at width `width` and checks what
/// every such run must show: nothing lost or duplicated, the width and the
/// messages counted, and (where it has a setup) its time and RSS.
fn run_scale(client: ClientKind, scenario: Scenario, width: u32, size: usize, rt: Rt, n: u64) {
    let config = ScenarioConfig {
        client,
        scenario,
        n,
        size,
        rt,
        url: url(),
        width,
        ..ScenarioConfig::default()
    };
    let report = run_scenario_blocking(&config)
        .unwrap_or_else(|e| panic!("{scenario} at width {width} with {client} failed: {e}"));
    assert_eq!((report.lost, report.dup), (0, 0), "{scenario}: {report:?}");
    assert_eq!(report.width, width, "{report:?}");
    let per_message = if scenario == Scenario::Fanout {
        u64::from(width)
    } else {
        1
    };
    assert_eq!(report.msgs, n * per_message, "{report:?}");
    assert!(report.peak_rss_kib > 0, "{report:?}");
    if matches!(
        scenario,
        Scenario::Channels | Scenario::Consumers | Scenario::Connections | Scenario::Fanout
    ) {
        assert!(report.open_s.is_some_and(|s| s > 0.0), "{report:?}");
        assert!(report.rss_per_unit_kib.is_some(), "{report:?}");
    }
    if scenario == Scenario::Large {
        assert!(report.mb_per_s > 0.0, "{report:?}");
    }
}

/// Every scenario of scale, at small sizes, with `client`.
fn every_scale_scenario(client: ClientKind) {
    run_scale(client, Scenario::Channels, 20, 64, Rt::Ct, N);
    run_scale(client, Scenario::Consumers, 20, 64, Rt::Ct, N);
    run_scale(client, Scenario::Connections, 3, 64, Rt::Ct, N);
    run_scale(client, Scenario::Fanout, 3, 64, Rt::Ct, N);
    run_scale(client, Scenario::Large, 1, 300 * 1024, Rt::Ct, 20);
    run_scale(client, Scenario::Parallel, 4, 64, Rt::Ct, N);
    run_scale(client, Scenario::Parallel, 4, 64, Rt::Mt, N);
}

#[test]
fn the_scale_scenarios_lose_and_duplicate_nothing_with_pika() {
    every_scale_scenario(ClientKind::Pika);
}

#[test]
fn the_scale_scenarios_lose_and_duplicate_nothing_with_raw() {
    every_scale_scenario(ClientKind::Raw);
}

#[test]
fn more_consumers_than_messages_leave_some_queues_empty_and_lose_nothing() {
    run_scale(ClientKind::Pika, Scenario::Consumers, 50, 64, Rt::Ct, 30);
}
