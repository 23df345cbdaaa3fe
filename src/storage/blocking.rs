//! The one sync→async seam. Every store call runs here, on tokio's blocking pool, with
//! the caller's tracing span, bounded by a semaphore sized to what the store can use, and
//! a panic inside a store call is raised again in the caller.

use super::{Result, Store, StoreError};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// The async handle to the store that services hold.
#[derive(Clone)]
pub struct Db {
    store: Arc<dyn Store>,
    permits: Arc<Semaphore>,
}

impl Db {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let permits = Arc::new(Semaphore::new(store.max_concurrency().max(1)));
        Self { store, permits }
    }

    /// The store itself, for synchronous callers that are already off the async runtime.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs `f` against the store on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        let store = self.store.clone();
        let span = tracing::Span::current();
        let handle = tokio::task::spawn_blocking(move || span.in_scope(|| f(store.as_ref())));
        match handle.instrument(tracing::Span::current()).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}
