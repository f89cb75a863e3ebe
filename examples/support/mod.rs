//! What every example shares: a failure is printed as one line a person
//! reads (what happened, then why, from the error's Display and its
//! causes), never as a Debug dump, and the example exits with code 1.

use std::process::ExitCode;

/// The example's exit: success, or the error on one line of stderr.
pub(crate) fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}`: the error and its causes, separated by ": ".
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The broker: `AMQP_URL`, by default the local RabbitMQ.
#[allow(dead_code)]
pub(crate) fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into())
}

/// `PIKA_EXAMPLE_MAX_MESSAGES`, when set: how many messages an example
/// handles (or sends) before it stops.
#[allow(dead_code)]
pub(crate) fn max_messages() -> Option<usize> {
    std::env::var("PIKA_EXAMPLE_MAX_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
}

/// Waits for Ctrl-C, or until `done` has reported `max_messages()`
/// handled messages when that is set.
#[allow(dead_code)]
pub(crate) async fn until_ctrl_c_or_max_messages(
    mut done: tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let max = max_messages();
    let enough = async {
        let mut count = 0;
        while done.recv().await.is_some() {
            count += 1;
            if Some(count) == max {
                break;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = enough => {}
    }
}
