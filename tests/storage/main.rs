//! The storage conformance suite: every case runs against SQLite always, and against
//! PostgreSQL when `WP_LITE_TEST_POSTGRES_URL` is set
//! (each run says whether the PostgreSQL half ran or was skipped, and why).

mod broadcasts;
mod inbox;
mod jobs;
mod metrics;
mod sessions;
mod users;

use std::sync::Arc;
use wp_lite::storage::{self, OpenOptions, Store};

/// A store under test and what keeps it alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    /// The URL the store was opened with (to open a second store, a second node, on it).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<PgSchema>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    let store = storage::open(&url, &OpenOptions { migrate: true }).expect("open sqlite");
    Backend {
        name: "sqlite",
        store,
        url,
        _dir: Some(dir),
        _schema: None,
    }
}

/// A fresh schema of its own for one test, dropped when the test is done.
pub struct PgSchema {
    base: String,
    pub name: String,
}

impl PgSchema {
    pub fn new(base: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            base: base.to_string(),
            name: format!("wpt_{}_{n}_{nanos}", std::process::id()),
        }
    }

    /// The URL that puts the store in this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

fn postgres() -> Option<Backend> {
    let Ok(base) = std::env::var("WP_LITE_TEST_POSTGRES_URL") else {
        eprintln!(
            "storage conformance: PostgreSQL half SKIPPED (WP_LITE_TEST_POSTGRES_URL is not set)"
        );
        return None;
    };
    let schema = PgSchema::new(&base);
    let url = schema.url();
    match storage::open(&url, &OpenOptions { migrate: true }) {
        Ok(store) => {
            eprintln!(
                "storage conformance: PostgreSQL half RAN (schema {})",
                schema.name
            );
            Some(Backend {
                name: "postgres",
                store,
                url,
                _dir: None,
                _schema: Some(schema),
            })
        }
        Err(e) => panic!("WP_LITE_TEST_POSTGRES_URL is set but PostgreSQL cannot be opened: {e}"),
    }
}

/// Runs a case against every available backend.
pub fn each_backend(case: impl Fn(&Backend)) {
    let b = sqlite();
    case(&b);
    b.store.close();
    if let Some(b) = postgres() {
        case(&b);
        b.store.close();
    }
}
