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
