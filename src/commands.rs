//! What each command does. Errors carry their exit code: usage and configuration
//! problems are 2, runtime failures 1.

use crate::app::{open_store, App};
use crate::cli::{Cli, Command, ServeArgs};
use crate::clock::SystemClock;
use crate::config::{resolve_admin_token, Config, ConfigError, Secret};
use crate::storage::{parse_url, OpenError};
use std::sync::Arc;

/// A usage error with a one-line reason (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit status for an error: 2 for usage and configuration, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<ConfigError>().is_some() {
        return 2;
    }
    if e.downcast_ref::<OpenError>().is_some_and(|o| o.is_usage()) {
        return 2;
    }
    1
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    // Refuse a bad URL before anything else happens.
    parse_url(&g.database_url).map_err(ConfigError::from)?;
    match cli.command {
        Command::Serve(args) => serve(&g.database_url, !g.no_migrate, args).await,
        Command::Migrate => {
            let db = open_store(&g.database_url, true).await?;
            let v = db.call(|s| s.schema_version()).await?;
            println!("schema version {v}");
            let d = db.clone();
            tokio::task::spawn_blocking(move || d.store().close()).await?;
            Ok(())
        }
        Command::Workers => {
            for w in crate::worker::registry() {
                println!("{:<28} {}", w.name, w.description);
            }
            Ok(())
        }
        Command::AdminToken(t) => {
            let token = resolve_admin_token(&g.database_url, t.admin_token.as_deref())?;
            println!("{}", token.expose());
            Ok(())
        }
        Command::Bench(args) => crate::bench::run(args).await,
    }
}

fn serve_config(database_url: &str, migrate: bool, a: ServeArgs) -> Config {
    Config {
        database_url: database_url.to_string(),
        migrate,
        bind: a.bind,
        admin_token: a.tokens.admin_token.map(Secret::new),
        worker_token: a.worker_token.filter(|t| !t.trim().is_empty()).map(Secret::new),
        max_body_bytes: a.max_body_bytes,
        job_retention: Some(a.job_retention).filter(|d| !d.is_zero()),
        shutdown_timeout: a.shutdown_timeout,
        session_ttl: a.session_ttl,
        maintenance_interval: a.maintenance_interval.max(std::time::Duration::from_millis(100)),
    }
}

async fn serve(database_url: &str, migrate: bool, args: ServeArgs) -> anyhow::Result<()> {
    let config = serve_config(database_url, migrate, args);
    let app = App::start(config, Arc::new(SystemClock)).await?;
    shutdown_signal().await;
    tracing::info!("stopping: finishing work in hand (a second signal exits at once)");
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
    app.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes at SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
