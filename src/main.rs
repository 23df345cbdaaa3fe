//! The `wp-lite` binary: parse the CLI, initialise logging, dispatch.

use clap::Parser;
use std::process::ExitCode;
use wp_lite::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    wp_lite::telemetry::init_logging(cli.global.log_level, cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(wp_lite::commands::dispatch(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = wp_lite::commands::exit_code(&e);
            if code == 2 {
                eprintln!("error: {e}");
            } else {
                tracing::error!(error = ?e, "wp-lite failed");
                eprintln!("error: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
