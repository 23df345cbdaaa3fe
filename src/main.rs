//! The `wp-lite` binary: parse the CLI, initialise logging, dispatch.

use clap::Parser;
use clap::ValueEnum;
use std::process::ExitCode;
use wp_lite::cli::{Cli, Command, LogLevel};

/// mimalloc for Rust and, through its `override` feature, for SQLite's C allocations too:
/// glibc's malloc was a tenth of the writer thread's time (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // mimalloc asks for transparent huge pages on its arenas, which turns a few touched bytes
    // into 2 MiB of resident memory (a server with 10 000 open streams went from 230 MB to
    // 410 MB). Without them, RSS is what glibc's was. Best effort: a kernel without the
    // setting only costs memory.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    // `run` also takes the original runner's WORKER_LOG_LEVEL.
    let worker_level = match (&cli.command, std::env::var("WORKER_LOG_LEVEL")) {
        (Command::Run(_), Ok(v)) if !v.trim().is_empty() => {
            match LogLevel::from_str(v.trim(), true) {
                Ok(l) => Some(l),
                Err(_) => {
                    eprintln!("error: WORKER_LOG_LEVEL='{v}' is not one of error, warn, info, debug, trace");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let level = cli
        .global
        .log_level
        .or(worker_level)
        .unwrap_or(LogLevel::Info);
    wp_lite::telemetry::init_logging(level, cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            let code = wp_lite::exit::exit_code(&e);
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
