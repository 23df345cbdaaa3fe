//! Typed configuration, built from the CLI. Secrets are wrapped so `Debug` never prints them.

use crate::storage::{parse_url, Target, UrlError};
use crate::worker::WorkerOptions;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::secret::Secret;

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
    /// The `aud` end-user JWTs must carry.
    pub jwt_audience: Option<String>,
    pub max_body_bytes: usize,
    /// Session cookies carry `Secure`.
    pub secure_cookies: bool,
    /// Leases that may wait for work at once.
    pub max_long_polls: usize,
    /// Real-time inbox streams open at once.
    pub max_streams: usize,
    /// How long a client may take to send a request head or a body chunk, or stay
    /// silent on a kept-alive connection.
    pub idle_timeout: Duration,
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
            jwt_audience: None,
            max_body_bytes: 1_048_576,
            secure_cookies: false,
            max_long_polls: crate::service::jobs::MAX_LONG_POLLS,
            max_streams: crate::service::streams::MAX_STREAMS,
            idle_timeout: crate::http::serve::DEFAULT_IDLE_TIMEOUT,
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
    #[error("{0} must not be empty or whitespace")]
    EmptyCredential(&'static str),
    #[error("the admin token file {0} is empty: delete it to have a new token generated, or configure one")]
    EmptyTokenFile(PathBuf),
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
    let read = |path: &std::path::Path| match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Err(ConfigError::EmptyTokenFile(path.to_path_buf())),
        Ok(s) => Ok(Some(Secret::new(s.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    };
    if let Some(token) = read(&path)? {
        return Ok(token);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let token = crate::secret::generate_token();
    if !publish_private(&path, &token).map_err(io)? {
        // Another process published its token first: use theirs, so every process agrees.
        return read(&path)?.ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the token file vanished while it was being created",
            ))
        });
    }
    tracing::info!(path = %path.display(), "generated an admin token (read it with `wp-lite admin-token`)");
    Ok(Secret::new(token))
}

/// Writes `content` to `path` atomically, mode 0600: a private temporary file beside it,
/// written and fsynced, then hard-linked into place (which, unlike a rename, fails when
/// the file exists). A reader therefore sees no file or the whole file, never a partly
/// written one. `Ok(false)`: another process published the file first.
#[cfg(unix)]
fn publish_private(path: &std::path::Path, content: &str) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Make the new directory entry durable too.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn publish_private(path: &std::path::Path, content: &str) -> std::io::Result<bool> {
    use std::io::Write;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(format!("{content}\n").as_bytes())?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
