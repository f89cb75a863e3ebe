//! `pika-perf`: see the crate docs of `pika_perf` and `pika-perf --help`.

use std::process::ExitCode;

use pika_perf::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse_perftest();
    if let Some(config) = args.scenario_config() {
        return match pika_perf::run_scenario_blocking(&config) {
            Ok(report) => {
                println!("{}", report.to_json_line());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!(
                    "pika-perf: {} {} with {} failed: {error}",
                    config.scenario, config.n, config.client
                );
                ExitCode::FAILURE
            }
        };
    }
    let config = match args.load_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pika-perf: {error} (see pika-perf --help)");
            return ExitCode::from(2);
        }
    };
    match pika_perf::load::run_blocking(&config, args.json) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pika-perf: load failed: {error}");
            ExitCode::FAILURE
        }
    }
}
