//! What each command does. Errors carry their exit code: usage and configuration
//! problems are 2, runtime failures 1.

use crate::app::{open_store, App};
use crate::cli::{Cli, Command, RunArgs, ServeArgs, WorkerArgs};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{resolve_admin_token, Config, ConfigError, Secret, WorkerSelection};
use crate::queue::ReadyQueue;
use crate::service::jobs::JobService;
use crate::storage::parse_url;
use crate::worker::runner::run_worker;
use crate::worker::{Registry, WorkerEnv, WorkerOptions};
use std::sync::Arc;
use tokio::sync::watch;

pub use crate::exit::{exit_code, UsageError};

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    // Refuse a bad URL before anything else happens.
    parse_url(&g.database_url).map_err(ConfigError::from)?;
    match cli.command {
        Command::Serve(args) => serve(&g.database_url, !g.no_migrate, args).await,
        Command::Run(args) => run(&g.database_url, !g.no_migrate, args).await,
        Command::Migrate => {
            let db = open_store(&g.database_url, true).await?;
            let v = db.call(|s| s.schema_version()).await?;
            println!("schema version {v}");
            db.close().await;
            Ok(())
        }
        Command::Workers => {
            for w in Registry::builtin().entries() {
                println!("{:<28} {}", w.name, w.description);
            }
            Ok(())
        }
        Command::Schedules => {
            let db = open_store(&g.database_url, !g.no_migrate).await?;
            let r = print_schedules(&db).await;
            db.close().await;
            r
        }
        Command::AdminToken(t) => {
            let configured = credential("--admin-token", t.admin_token)?;
            let token =
                resolve_admin_token(&g.database_url, configured.as_ref().map(|s| s.expose()))?;
            println!("{}", token.expose());
            Ok(())
        }
        Command::Bench(args) => crate::bench::run(args, &g.database_url).await,
        Command::Copy(args) => copy(args, !g.no_migrate).await,
        Command::Backup(args) => backup(&g.database_url, args).await,
        Command::Users(u) => match u.command {
            crate::cli::UsersCommand::Import(a) => {
                let db = open_store(&g.database_url, !g.no_migrate).await?;
                let r = crate::import::run(&db, &a).await;
                db.close().await;
                r
            }
        },
    }
}

/// `wp-lite schedules`: every schedule, one line each, with its next run in its own time
/// zone.
async fn print_schedules(db: &crate::storage::Db) -> anyhow::Result<()> {
    use crate::domain::schedule::in_zone;
    let show = |t: Option<crate::domain::Ts>, tz: &str| match t {
        None => "-".to_string(),
        Some(t) => in_zone(t, tz)
            .map(|l| l.format("%Y-%m-%d %H:%M:%S %Z").to_string())
            .unwrap_or_else(|| crate::domain::time::format(&t)),
    };
    let mut after: Option<String> = None;
    let mut any = false;
    println!(
        "{:<28} {:<18} {:<16} {:<8} {:<28} {:<28} {:>6} {:>7}",
        "NAME", "CRON", "TIMEZONE", "ENABLED", "NEXT RUN", "LAST RUN", "RUNS", "SKIPPED"
    );
    loop {
        let a = after.clone();
        let page = db
            .call(move |s| s.list_schedules(a.as_deref(), 200))
            .await?;
        for s in &page.items {
            any = true;
            println!(
                "{:<28} {:<18} {:<16} {:<8} {:<28} {:<28} {:>6} {:>7}",
                s.name.as_str(),
                s.cron,
                s.timezone,
                if s.enabled { "yes" } else { "no" },
                show(s.next_run_at, &s.timezone),
                show(s.last_run_at, &s.timezone),
                s.runs_total,
                s.skipped_total
            );
        }
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if !any {
        println!("(no schedules: create one with PUT /v1/worker/schedules/{{name}})");
    }
    Ok(())
}

/// `wp-lite backup --to FILE`: a consistent copy of a live SQLite database. It copies the
/// database as it is, so it applies no migrations.
async fn backup(database_url: &str, args: crate::cli::BackupArgs) -> anyhow::Result<()> {
    use crate::storage::sqlite::backup::{backup, BackupError};
    use crate::storage::Target;
    let source = match parse_url(database_url).map_err(ConfigError::from)? {
        Target::Sqlite(path) => path,
        Target::Postgres(_) => {
            return Err(UsageError(
                "backup copies SQLite databases; for PostgreSQL use pg_dump \
                 (for example: pg_dump --format=custom --file=wp-lite.dump \"$WP_LITE_DATABASE_URL\")"
                    .into(),
            )
            .into())
        }
    };
    let target = args.to.clone();
    let report = crate::storage::blocking::run(move || {
        let bar = progress_bar("backup");
        let r = backup(&source, &target, &mut |done, total| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        r
    })
    .await;
    let report = match report {
        Ok(r) => r,
        Err(BackupError::Usage(m)) => return Err(UsageError(m).into()),
        Err(e) => return Err(e.into()),
    };
    println!(
        "backed up {} ({} pages, {:.1} MB) to {} in {:.1} s; integrity check ok",
        crate::storage::redact_url(database_url),
        report.pages,
        report.bytes as f64 / 1e6,
        args.to.display(),
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

/// A progress bar on a terminal (stderr), none otherwise.
fn progress_bar(prefix: &'static str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0).with_prefix(prefix);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} pages ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// `wp-lite copy --from sqlite://… --to postgres://…`: every table, then a summary.
async fn copy(args: crate::cli::CopyArgs, migrate: bool) -> anyhow::Result<()> {
    use crate::storage::copy::{copy, CopyError};
    let (from, to) = (args.from.trim().to_string(), args.to.trim().to_string());
    let report = crate::storage::blocking::run(move || {
        let mut progress = CopyProgress::new();
        copy(&from, &to, migrate, &mut progress)
    })
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e @ CopyError::Usage(_)) => return Err(UsageError(e.to_string()).into()),
        Err(CopyError::Open(o)) => return Err(o.into()),
        Err(e) => return Err(e.into()),
    };
    let width = report
        .tables
        .iter()
        .map(|(t, _)| t.len())
        .max()
        .unwrap_or(0);
    println!(
        "copied {} rows in {} tables from {} to {} in {:.1} s",
        report.total_rows(),
        report.tables.len(),
        args.from.trim(),
        crate::storage::redact_url(args.to.trim()),
        report.elapsed.as_secs_f64()
    );
    for (table, rows) in &report.tables {
        println!("  {table:<width$}  {rows:>10} rows");
    }
    Ok(())
}

/// A progress bar per table on a terminal; otherwise one log line per table.
struct CopyProgress {
    terminal: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl CopyProgress {
    fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }
}

impl crate::storage::copy::Progress for CopyProgress {
    fn table_started(&mut self, table: &str, rows: u64) {
        if self.terminal {
            let bar = indicatif::ProgressBar::new(rows);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:<22} {bar:40} {human_pos}/{human_len} rows ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(table.to_string());
            self.bar = Some(bar);
        }
    }

    fn rows_copied(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn table_done(&mut self, table: &str, rows: u64, took: std::time::Duration) {
        match self.bar.take() {
            Some(bar) => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{prefix:<22} {pos} rows ({elapsed})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.finish();
            }
            None => tracing::info!(
                table,
                rows,
                ms = took.as_millis() as u64,
                "copied {rows} rows of {table}"
            ),
        }
    }
}

fn serve_config(database_url: &str, migrate: bool, a: ServeArgs) -> Result<Config, ConfigError> {
    Ok(Config {
        database_url: database_url.to_string(),
        migrate,
        bind: a.bind,
        metrics_bind: a.metrics_bind,
        admin_token: credential("--admin-token", a.tokens.admin_token)?,
        worker_token: credential("--worker-token", a.worker_token)?,
        jwt_secret: credential("--jwt-secret", a.jwt_secret)?,
        jwt_audience: a
            .jwt_audience
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        max_body_bytes: a.max_body_bytes,
        secure_cookies: a.secure_cookies,
        max_long_polls: a.max_long_polls,
        max_streams: a.max_streams,
        idle_timeout: a.idle_timeout,
        session_ttl: a.session_ttl,
        workers: WorkerSelection::parse(a.workers.as_deref()),
        worker_options: worker_options(&a.worker),
    })
}

/// A configured credential: an empty or whitespace one is refused, never "none".
fn credential(option: &'static str, v: Option<String>) -> Result<Option<Secret>, ConfigError> {
    match v {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Err(ConfigError::EmptyCredential(option)),
        Some(t) => Ok(Some(Secret::new(t.trim()))),
    }
}

fn worker_options(a: &WorkerArgs) -> WorkerOptions {
    WorkerOptions {
        shutdown_timeout: a.shutdown_timeout,
        heartbeat: a.worker_heartbeat,
        maintenance_interval: a.maintenance_interval,
        maintenance_at_start: true,
        job_retention: Some(a.job_retention).filter(|d| !d.is_zero()),
        inbox_retention_days: a.inbox_retention_days,
        inbox_max_per_user: a.inbox_max_per_user.map(|n| n as usize),
    }
}

/// `wp-lite run --name NAME`: one worker in its own process.
async fn run(database_url: &str, migrate: bool, args: RunArgs) -> anyhow::Result<()> {
    let registry = Registry::builtin();
    let Some(reg) = registry.get(args.name.trim()) else {
        return Err(ConfigError::UnknownWorker {
            name: args.name.clone(),
            known: registry.names().join(", "),
        }
        .into());
    };
    let db = open_store(database_url, migrate).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let telemetry = crate::telemetry::Telemetry::new();
    let env = WorkerEnv {
        jobs: JobService::new(db.clone(), Arc::new(ReadyQueue::new()), clock.clone())
            .with_telemetry(telemetry.clone()),
        db: db.clone(),
        clock,
        options: worker_options(&args.worker),
        broadcast_wake: Arc::default(),
        hub: None,
    };
    env.subscribe_wakes();
    let worker = reg.build(&env).map_err(|e| ConfigError::Worker {
        name: reg.name.to_string(),
        reason: e.0,
    })?;
    // Listen before any work starts, and keep listening: a second signal that comes
    // right after the first must not be lost.
    let mut signals = ShutdownSignals::new();
    let (stop, stop_rx) = watch::channel(false);
    // Counters and stage timings reach the store every few seconds and on stop.
    let flusher =
        telemetry
            .clone()
            .spawn_flusher(db.clone(), crate::telemetry::FLUSH_EVERY, stop_rx.clone());
    let task = {
        let env = env.clone();
        tokio::spawn(async move { run_worker(worker, &env, args.once, stop_rx).await })
    };
    tokio::pin!(task);
    let signaled = tokio::select! {
        r = &mut task => {
            r?;
            false
        }
        _ = signals.recv() => true,
    };
    if signaled {
        tracing::info!("stop requested: finishing work in hand (a second signal exits at once)");
        exit_on_second_signal(signals);
        let _ = stop.send(true);
        (&mut task).await?;
    }
    let _ = stop.send(true);
    let _ = flusher.await;
    if let Err(e) = telemetry.flush(&db).await {
        tracing::warn!(error = %e, "could not flush metrics on stop");
    }
    db.close().await;
    Ok(())
}

async fn serve(database_url: &str, migrate: bool, args: ServeArgs) -> anyhow::Result<()> {
    let config = serve_config(database_url, migrate, args)?;
    let mut signals = ShutdownSignals::new();
    let app = App::start(config, Arc::new(SystemClock)).await?;
    signals.recv().await;
    tracing::info!("stopping: finishing work in hand (a second signal exits at once)");
    exit_on_second_signal(signals);
    app.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT and SIGTERM, listened to from creation on: a signal that arrives while nobody
/// is waiting is kept for the next `recv`, so a quick second signal is never lost.
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                term: signal(SignalKind::terminate()).expect("install SIGTERM handler"),
                int: signal(SignalKind::interrupt()).expect("install SIGINT handler"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Completes at the next SIGINT or SIGTERM (or one that came since the last call).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl Default for ShutdownSignals {
    fn default() -> Self {
        Self::new()
    }
}

/// After the first signal: the next one ends the process at once (exit 130).
fn exit_on_second_signal(mut signals: ShutdownSignals) {
    tokio::spawn(async move {
        signals.recv().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
}

/// Completes at SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    ShutdownSignals::new().recv().await
}
