//! Typed configuration, built from the CLI. Secrets are wrapped so `Debug` never prints them.

use crate::storage::{parse_url, Target, UrlError};
use crate::worker::WorkerOptions;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A secret string; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub migrate: bool,
    pub bind: String,
    /// A plain `/metrics` listener without auth (private interface).
    pub metrics_bind: Option<String>,
    pub admin_token: Option<Secret>,
    pub worker_token: Option<Secret>,
    /// HS256 secret of end-user JWTs (inbox routes).
    pub jwt_secret: Option<Secret>,
    pub max_body_bytes: usize,
    pub session_ttl: Duration,
    /// Which workers `serve` runs besides jobs.maintenance.
    pub workers: WorkerSelection,
    pub worker_options: WorkerOptions,
}

/// `serve --workers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerSelection {
    /// The built-in workers meant to run inside serve.
    Default,
    /// Only jobs.maintenance.
    None,
    Named(Vec<String>),
}

impl WorkerSelection {
    pub fn parse(s: Option<&str>) -> Self {
        match s.map(str::trim) {
            None | Some("") => WorkerSelection::Default,
            Some(v) if v.eq_ignore_ascii_case("none") => WorkerSelection::None,
            Some(v) => WorkerSelection::Named(
                v.split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
            ),
        }
    }
}

impl Config {
    /// A configuration for tests and embedding: the given database, port 0, defaults.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            migrate: true,
            bind: "127.0.0.1:0".into(),
            metrics_bind: None,
            admin_token: None,
            worker_token: None,
            jwt_secret: None,
            max_body_bytes: 1_048_576,
            session_ttl: Duration::from_secs(12 * 3600),
            workers: WorkerSelection::Default,
            worker_options: WorkerOptions::default(),
        }
    }
}

/// Configuration errors: exit 2 with the message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("an admin token must be configured (--admin-token / WP_LITE_ADMIN_TOKEN) when the database is PostgreSQL")]
    AdminTokenRequired,
    #[error("cannot use the admin token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token must not be empty")]
    EmptyToken,
    #[error("unknown worker '{name}'; known workers: {known}")]
    UnknownWorker { name: String, known: String },
    #[error("worker '{name}': {reason}")]
    Worker { name: String, reason: String },
}

/// Where a SQLite database keeps its generated admin token.
pub fn admin_token_path(database_url: &str) -> Result<Option<PathBuf>, UrlError> {
    Ok(match parse_url(database_url)? {
        Target::Sqlite(p) => {
            let mut s = p.into_os_string();
            s.push(".admin-token");
            Some(PathBuf::from(s))
        }
        Target::Postgres(_) => None,
    })
}

/// The admin token in use: the configured one, or (SQLite) the one kept beside the
/// database, generated on first use with mode 0600.
pub fn resolve_admin_token(
    database_url: &str,
    configured: Option<&str>,
) -> Result<Secret, ConfigError> {
    if let Some(t) = configured {
        if t.trim().is_empty() {
            return Err(ConfigError::EmptyToken);
        }
        return Ok(Secret::new(t.trim()));
    }
    let path = admin_token_path(database_url)?.ok_or(ConfigError::AdminTokenRequired)?;
    let io = |source| ConfigError::TokenFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(Secret::new(s.trim())),
        Ok(_) => std::fs::remove_file(&path).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let token = crate::service::auth::generate_token();
    match write_private(&path, &token) {
        Ok(()) => {}
        // Another process created it first: use theirs, so every process agrees.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let theirs = std::fs::read_to_string(&path).map_err(io)?;
            return Ok(Secret::new(theirs.trim()));
        }
        Err(e) => return Err(io(e)),
    }
    tracing::info!(path = %path.display(), "generated an admin token (read it with `wp-lite admin-token`)");
    Ok(Secret::new(token))
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{content}\n"))
}
