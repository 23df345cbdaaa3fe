//! The storage conformance suite: every case runs against SQLite always, and against
//! PostgreSQL when `WP_LITE_TEST_POSTGRES_URL` is set
//! (each run says whether the PostgreSQL half ran or was skipped, and why).

/// One conformance case, run as one test per backend (`<file>::<case>::sqlite` and
/// `…::postgres`), so a failure names its case and its backend. Without a PostgreSQL server
/// configured, the `postgres` test passes and says that it skipped.
macro_rules! conformance {
    ($(#[$meta:meta])* fn $name:ident($b:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn case($b: &$crate::Backend) $body

            #[test]
            fn sqlite() {
                $crate::on_sqlite(case)
            }

            #[test]
            fn postgres() {
                $crate::on_postgres(case)
            }
        }
    };
}

mod broadcasts;
#[path = "../common/mod.rs"]
mod common;
mod inbox;
mod jobs;
mod metrics;
mod schedules;
mod seam;
mod sessions;
mod users;

use common::PgSchema;
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

fn postgres() -> Option<Backend> {
    let Ok(base) = std::env::var("WP_LITE_TEST_POSTGRES_URL") else {
        eprintln!(
            "storage conformance: PostgreSQL half SKIPPED (WP_LITE_TEST_POSTGRES_URL is not set)"
        );
        return None;
    };
    let schema = PgSchema::new(&base, "storage");
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

impl Backend {
    /// Reads one integer with SQL on the database directly, behind the store's back.
    pub fn count_raw(&self, sql: &str) -> i64 {
        match &self._schema {
            Some(schema) => schema.client().query_one(sql, &[]).unwrap().get(0),
            None => {
                let path = self.url.trim_start_matches("sqlite://");
                rusqlite::Connection::open(path)
                    .unwrap()
                    .query_row(sql, [], |r| r.get(0))
                    .unwrap()
            }
        }
    }

    /// The query plan of `sql` on PostgreSQL (`EXPLAIN`, one line per node), after
    /// `ANALYZE`; None on SQLite.
    pub fn pg_plan(&self, sql: &str) -> Option<String> {
        let schema = self._schema.as_ref()?;
        let mut c = schema.client();
        c.batch_execute("ANALYZE").unwrap();
        let rows = c.query(&format!("EXPLAIN {sql}"), &[]).unwrap();
        Some(
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// Runs SQL on the database directly, behind the store's back (to corrupt a row).
    pub fn exec_raw(&self, sql: &str) {
        self.try_exec_raw(sql).unwrap()
    }

    /// Runs SQL straight on the database; the database's refusal as text.
    pub fn try_exec_raw(&self, sql: &str) -> Result<(), String> {
        match &self._schema {
            Some(schema) => schema
                .client()
                .batch_execute(sql)
                .map_err(|e| format!("{e:?}")),
            None => {
                let path = self.url.trim_start_matches("sqlite://");
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Runs a case on a fresh SQLite database.
pub fn on_sqlite(case: impl Fn(&Backend)) {
    let b = sqlite();
    case(&b);
    b.store.close();
}

/// Runs a case in a fresh PostgreSQL schema, when a server is configured.
pub fn on_postgres(case: impl Fn(&Backend)) {
    if let Some(b) = postgres() {
        case(&b);
        b.store.close();
    }
}

/// Runs a case against every available backend, one after the other (for the few cases
/// that set something up before they choose what to run on each).
pub fn each_backend(case: impl Fn(&Backend)) {
    on_sqlite(&case);
    on_postgres(&case);
}
