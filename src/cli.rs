//! The command line. Every option is also an environment variable (`WP_LITE_…`).

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "wp-lite",
    version,
    about = "wp-lite: a job control plane, worker framework and notification service in one binary",
    long_about = "wp-lite keeps jobs, leases, broadcasts and inboxes in one SQLite file (or PostgreSQL), \
                  serves a REST control plane and an observability page, and runs named workers."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Database: sqlite://PATH (relative or absolute) or postgres://user:pass@host:port/db.
    #[arg(
        long,
        global = true,
        env = "WP_LITE_DATABASE_URL",
        default_value = "sqlite://wp-lite.db"
    )]
    pub database_url: String,
    /// Log level (any case): error, warn, info, debug, trace [default: info; for `run` also WORKER_LOG_LEVEL]. RUST_LOG still works for fine filters.
    #[arg(long, global = true, env = "WP_LITE_LOG_LEVEL", ignore_case = true)]
    pub log_level: Option<LogLevel>,
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "WP_LITE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Do not apply pending migrations on start.
    #[arg(long, global = true, env = "WP_LITE_NO_MIGRATE")]
    pub no_migrate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API, with the chosen workers (and always jobs.maintenance) in the same process.
    Serve(ServeArgs),
    /// Run one registered worker as its own process against the same database.
    Run(RunArgs),
    /// Apply pending migrations and print the schema version (running it twice is a no-op).
    Migrate,
    /// List the registered workers with a one-line description each.
    Workers,
    /// List the schedules (recurring jobs) with their next run, in their time zone.
    Schedules,
    /// Manage the users mirrored from the host application.
    Users(UsersArgs),
    /// Print the admin token in use (generated beside a SQLite database if none is configured).
    AdminToken(TokenArgs),
    /// Run the benchmark scenarios on a throw-away database and print a table.
    Bench(BenchArgs),
    /// SQLite: an online, consistent copy of the live database into a new file, checked with PRAGMA integrity_check (PostgreSQL: use pg_dump).
    Backup(BackupArgs),
    /// Copy every table of a SQLite database into an empty PostgreSQL database: one consistent snapshot, written in one transaction.
    Copy(CopyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The new file to write the copy to; an existing file is never overwritten.
    #[arg(long)]
    pub to: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    /// The SQLite database to copy from: sqlite://PATH. A `serve` on it may keep running; the copy reads one consistent snapshot.
    #[arg(long, env = "WP_LITE_COPY_FROM")]
    pub from: String,
    /// The PostgreSQL database to copy into: postgres://user:pass@host:port/db[?schema=NAME]. Its migrations are applied first; it must hold no data yet.
    #[arg(long, env = "WP_LITE_COPY_TO", hide_env_values = true)]
    pub to: String,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Admin token. Without one, a SQLite database keeps a generated token in `<db file>.admin-token` (mode 0600).
    #[arg(long, env = "WP_LITE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WP_LITE_BIND", default_value = "127.0.0.1:8000", value_parser = parse_bind)]
    pub bind: String,
    /// Also serve a plain `/metrics` (no auth) on this address, for Prometheus on a private interface.
    #[arg(long, env = "WP_LITE_METRICS_BIND", value_parser = parse_bind)]
    pub metrics_bind: Option<String>,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Worker token: may call the worker job routes and nothing else.
    #[arg(long, env = "WP_LITE_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// HS256 secret the host application signs end-user JWTs with (inbox routes).
    #[arg(long, env = "WP_LITE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The audience (`aud`) end-user JWTs must name; without it, a token that names any audience is refused.
    #[arg(long, env = "NOTIFICATIONS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Mark the session cookies `Secure` (browsers then send them over HTTPS only): set it when wp-lite is reached through a TLS-terminating proxy.
    #[arg(long, env = "WP_LITE_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WP_LITE_MAX_BODY_BYTES", default_value_t = 1_048_576, value_parser = parse_body_limit)]
    pub max_body_bytes: usize,
    /// Leases that may wait for work (`wait_ms`) at once in this process; past them a lease answers at once.
    #[arg(long, env = "WP_LITE_MAX_LONG_POLLS", default_value_t = crate::service::jobs::MAX_LONG_POLLS, value_parser = parse_long_polls)]
    pub max_long_polls: usize,
    /// Real-time inbox streams (SSE and WebSocket) open at once in this process; past them a new stream is refused (503 / close 1013). Each user may hold 5.
    #[arg(long, env = "WP_LITE_MAX_STREAMS", default_value_t = crate::service::streams::MAX_STREAMS, value_parser = parse_streams)]
    pub max_streams: usize,
    /// How long a client may take to send a request's headers (or each chunk of its body), and how long a kept-alive connection may stay silent, before it is closed (at least 1s).
    #[arg(long, env = "WP_LITE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: std::time::Duration,
    /// How long a browser session lasts (at least 1s).
    #[arg(long, env = "WP_LITE_SESSION_TTL", default_value = "12h", value_parser = parse_positive_duration)]
    pub session_ttl: std::time::Duration,
    /// Workers to run in this process: comma-separated names, or `none` [default: every built-in worker meant for serve]. jobs.maintenance always runs.
    #[arg(long, env = "WP_LITE_WORKERS")]
    pub workers: Option<String>,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Options every process that runs workers shares.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// How long a graceful stop waits for work in hand (e.g. 30s).
    #[arg(long, env = "WP_LITE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Keep finished jobs and their events this long (e.g. 7d, 12h, 90m; 0 keeps them forever).
    #[arg(long, env = "WP_LITE_JOB_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub job_retention: std::time::Duration,
    /// How often jobs.maintenance looks for expired leases (at least 100ms).
    #[arg(long, env = "WP_LITE_MAINTENANCE_INTERVAL", default_value = "1s", value_parser = parse_tick)]
    pub maintenance_interval: std::time::Duration,
    /// How often a worker process records that it is alive (three missed beats = not alive; at least 100ms).
    #[arg(long, env = "WP_LITE_WORKER_HEARTBEAT", default_value = "5s", value_parser = parse_tick)]
    pub worker_heartbeat: std::time::Duration,
    /// Delete inbox items older than this many days (off by default).
    #[arg(long, env = "WP_LITE_INBOX_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub inbox_retention_days: Option<u32>,
    /// Keep at most this many inbox items per user (off by default).
    #[arg(long, env = "WP_LITE_INBOX_MAX_PER_USER", value_parser = clap::value_parser!(u64).range(1..))]
    pub inbox_max_per_user: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// Bulk-import users from CSV or JSON Lines (all rows are checked before anything is written).
    Import(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The file: .csv or .jsonl/.ndjson (or say which with --format).
    pub file: std::path::PathBuf,
    /// File format, when the extension does not say.
    #[arg(long)]
    pub format: Option<ImportFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The worker to run (see `wp-lite workers`).
    #[arg(long, env = "WORKER_NAME")]
    pub name: String,
    /// One tick now (periodic worker) or drain until the queue is empty (queue worker), then exit 0.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Scenario to run (repeatable; default: all).
    #[arg(long = "scenario")]
    pub scenarios: Vec<Scenario>,
    /// Scale: jobs per scenario (100 to 100 000 000).
    #[arg(long, default_value_t = 100_000, value_parser = parse_ops)]
    pub ops: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the table as Markdown into this file (used by `make bench` for BENCHMARKS.md).
    #[arg(long)]
    pub markdown: Option<std::path::PathBuf>,
}

/// A `wp-lite bench` scenario (`docs/operations.md`, "Benchmarks"). Declared in the order they run when
/// no `--scenario` is given; each is named on the command line, in `--json` and in the
/// tables as [`Scenario::as_str`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    RawMinimalInsertSingle,
    RawMinimalInsertBatch,
    RawMinimalClaimComplete,
    RawInsertSingle,
    RawInsertBatch,
    RawClaimComplete,
    EnqueueSingle,
    EnqueueBatch,
    #[value(name = "drain-1")]
    Drain1,
    #[value(name = "drain-4")]
    Drain4,
    #[value(name = "drain-1-history")]
    Drain1History,
    HttpRoundtrip,
    HttpBatch,
    PickupLatency,
    RawInsertSelect,
    BroadcastFanout,
    StreamFanout,
    #[value(name = "stream-fanout-1m")]
    StreamFanout1m,
    #[value(name = "inbox-list-10")]
    InboxList10,
    #[value(name = "inbox-list-10000")]
    InboxList10000,
}

impl Scenario {
    /// The scenario's name (the same as its `--scenario` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::RawMinimalInsertSingle => "raw-minimal-insert-single",
            Scenario::RawMinimalInsertBatch => "raw-minimal-insert-batch",
            Scenario::RawMinimalClaimComplete => "raw-minimal-claim-complete",
            Scenario::RawInsertSingle => "raw-insert-single",
            Scenario::RawInsertBatch => "raw-insert-batch",
            Scenario::RawClaimComplete => "raw-claim-complete",
            Scenario::EnqueueSingle => "enqueue-single",
            Scenario::EnqueueBatch => "enqueue-batch",
            Scenario::Drain1 => "drain-1",
            Scenario::Drain4 => "drain-4",
            Scenario::Drain1History => "drain-1-history",
            Scenario::HttpRoundtrip => "http-roundtrip",
            Scenario::HttpBatch => "http-batch",
            Scenario::PickupLatency => "pickup-latency",
            Scenario::RawInsertSelect => "raw-insert-select",
            Scenario::BroadcastFanout => "broadcast-fanout",
            Scenario::StreamFanout => "stream-fanout",
            Scenario::StreamFanout1m => "stream-fanout-1m",
            Scenario::InboxList10 => "inbox-list-10",
            Scenario::InboxList10000 => "inbox-list-10000",
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address to listen on: `HOST:PORT` (`127.0.0.1:8000`, `[::1]:8000`, `localhost:8000`).
pub fn parse_bind(s: &str) -> Result<String, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    match s.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(s.to_string()),
        _ => Err(format!(
            "'{s}' is not an address to listen on (HOST:PORT, e.g. 127.0.0.1:8000)"
        )),
    }
}

/// An integer within `range`, with a message naming it.
fn parse_in_range(s: &str, range: std::ops::RangeInclusive<u64>) -> Result<usize, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "'{s}' must be an integer from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// The body limit: 1 KiB to 1 GiB.
pub fn parse_body_limit(s: &str) -> Result<usize, String> {
    parse_in_range(s, 1024..=1 << 30)
}

fn parse_long_polls(s: &str) -> Result<usize, String> {
    parse_in_range(s, 1..=100_000)
}

fn parse_streams(s: &str) -> Result<usize, String> {
    parse_in_range(s, 1..=1_000_000)
}

fn parse_ops(s: &str) -> Result<usize, String> {
    parse_in_range(s, 100..=100_000_000)
}

/// A duration that must not be zero (at least one second).
pub fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    at_least(s, std::time::Duration::from_secs(1))
}

/// How often a loop ticks: at least 100 ms.
pub fn parse_tick(s: &str) -> Result<std::time::Duration, String> {
    at_least(s, std::time::Duration::from_millis(100))
}

fn at_least(s: &str, min: std::time::Duration) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < min {
        return Err(format!("'{}' is shorter than {min:?}", s.trim()));
    }
    Ok(d)
}

/// Parses `30s`, `500ms`, `90m`, `12h`, `7d` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 30s, 500ms, 90m, 12h, 7d)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(format!(
                "'{s}': unknown unit '{unit}' (use ms, s, m, h or d)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("'{s}' is not a valid duration"));
    }
    if secs > 100.0 * 365.0 * 86400.0 {
        return Err(format!("'{s}' is longer than 100 years"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("1e300").is_err());
        assert!(parse_tick("10ms").is_err());
        assert!(parse_positive_duration("0").is_err());
    }

    #[test]
    fn addresses_and_numbers() {
        assert!(parse_bind("127.0.0.1:0").is_ok());
        assert!(parse_bind("localhost:8000").is_ok());
        assert!(parse_bind("not-an-address").is_err());
        assert!(parse_bind("127.0.0.1:99999").is_err());
        assert!(parse_body_limit("0").is_err());
        assert!(parse_body_limit("-5").is_err());
        assert!(parse_body_limit("99999999999999999999").is_err());
        assert_eq!(parse_body_limit("2048"), Ok(2048));
    }

    /// A scenario's `--scenario` value is its name, and each name parses back to it.
    #[test]
    fn scenario_names() {
        for s in Scenario::value_variants() {
            let value = s.to_possible_value().expect("no scenario is hidden");
            assert_eq!(value.get_name(), s.as_str());
            assert_eq!(Scenario::from_str(s.as_str(), false), Ok(*s));
        }
        assert!(Scenario::from_str("nope", false).is_err());
    }
}
