//! The storage conformance suite: every case runs against SQLite always, and against
//! PostgreSQL when `WP_LITE_TEST_POSTGRES_URL` is set and the backend is in this build
//! (each run says whether the PostgreSQL half ran or was skipped, and why).

mod inbox;
mod jobs;
mod sessions;

use std::sync::Arc;
use wp_lite::storage::{self, OpenError, OpenOptions, Store};

/// A store under test and what keeps it alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    let store = storage::open(&url, &OpenOptions { migrate: true }).expect("open sqlite");
    Backend {
        name: "sqlite",
        store,
        _dir: Some(dir),
    }
}

fn postgres() -> Option<Backend> {
    let Ok(url) = std::env::var("WP_LITE_TEST_POSTGRES_URL") else {
        eprintln!(
            "storage conformance: PostgreSQL half SKIPPED (WP_LITE_TEST_POSTGRES_URL is not set)"
        );
        return None;
    };
    match storage::open(&url, &OpenOptions { migrate: true }) {
        Ok(store) => {
            eprintln!("storage conformance: PostgreSQL half RAN");
            Some(Backend {
                name: "postgres",
                store,
                _dir: None,
            })
        }
        Err(OpenError::NotInBuild(_)) => {
            eprintln!("storage conformance: PostgreSQL half SKIPPED (the PostgreSQL backend is not in this build yet)");
            None
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
