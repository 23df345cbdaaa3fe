//! The one sync→async seam. Every store call runs here, with the caller's tracing span:
//! reads on tokio's blocking pool, bounded by a semaphore sized to what the store can use
//! (a panic inside one is raised again in the caller); writes, where the backend can, on
//! the writer's own thread, which answers the awaiting caller directly once its
//! transaction has committed — no blocking-pool thread parked for each write.

use super::{QuickWrite, Result, Store, StoreError};
use crate::domain::{Claim, Fence, Job, JobId, NewJob};
use crate::storage::{Enqueued, Ts};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// The async handle to the store that services hold.
#[derive(Clone)]
pub struct Db {
    store: Arc<dyn Store>,
    permits: Arc<Semaphore>,
    /// When a call last failed because the store was unavailable (disk full, read-only,
    /// I/O error, PostgreSQL down), as milliseconds since `epoch`; 0 = never.
    last_fault_ms: Arc<std::sync::atomic::AtomicU64>,
    epoch: std::time::Instant,
}

/// How long `/readyz` stays 503 after the store last failed to serve a call.
pub const FAULT_MEMORY: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs synchronous work (a backup, a copy, filling a bench database) on the blocking pool:
/// the same seam as store calls, for work that is not one. A panic is raised again here.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Db {
    /// Opens the store a URL names (migrating unless told not to) off the async runtime.
    pub async fn open(
        url: &str,
        opts: super::OpenOptions,
    ) -> std::result::Result<Db, super::OpenError> {
        let url = url.to_string();
        let store = run(move || super::open(&url, &opts)).await?;
        Ok(Db::new(store))
    }

    /// Flushes and closes the store off the async runtime (its threads are joined).
    pub async fn close(&self) {
        let store = self.store.clone();
        run(move || store.close()).await
    }

    pub fn new(store: Arc<dyn Store>) -> Self {
        let permits = Arc::new(Semaphore::new(store.max_concurrency().max(1)));
        Self {
            store,
            permits,
            last_fault_ms: Arc::default(),
            epoch: std::time::Instant::now(),
        }
    }

    /// Whether the store failed a call as unavailable within `FAULT_MEMORY`.
    pub fn recently_faulted(&self) -> bool {
        let at = self
            .last_fault_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && self.epoch.elapsed().as_millis() as u64 <= at + FAULT_MEMORY.as_millis() as u64
    }

    fn note(&self, r: &Result<impl Sized>) {
        if let Err(StoreError::Unavailable(_)) = r {
            let now = (self.epoch.elapsed().as_millis() as u64).max(1);
            self.last_fault_ms
                .store(now, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The store itself, for synchronous callers that are already off the async runtime.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs `f`, a call that writes, in the store's group commit: on the writer's thread
    /// where the backend can (SQLite), otherwise as [`Db::call`] does. `f` answers once its
    /// writes have committed. Each store method is atomic, as with `call`, and `f` must not
    /// count on more: if a later call fails, an earlier one's writes stay (on SQLite they
    /// commit with the writer's group, on PostgreSQL each method commits on its own). Nor
    /// may `f` read back through the store what it wrote (a read may run on
    /// another connection, which sees only what has committed). A panic inside `f` fails
    /// this call only: on the writer's thread it is caught and answered as an error, on the
    /// blocking pool it resumes in the caller; the writer keeps going either way.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let task: super::WriterTask = Box::new(move |store| {
            let res = span.in_scope(|| store.and_then(f));
            super::writer::answer(res, move |out| {
                let _ = tx.send(out);
            })
        });
        if let Some(task) = self.store.run_on_writer(self.store.clone(), task) {
            self.call(move |s| {
                let (_, reply) = task(Ok(s));
                reply(None);
                Ok(())
            })
            .await?;
        }
        let r = rx
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("the write was abandoned".into())));
        self.note(&r);
        r
    }

    /// Enqueues one job: where the backend can (PostgreSQL), the request joins the writer's
    /// next batch with no thread waiting for it and the writer answers this task directly;
    /// otherwise as [`Db::write`] does. A batch that lost a deadlock is tried again.
    pub async fn enqueue_one(&self, job: NewJob, now: Ts) -> Result<Enqueued> {
        if !self.store.starts_writes() {
            return self
                .write(move |s| {
                    let mut out = s.enqueue_jobs(vec![job], now)?;
                    out.pop()
                        .ok_or_else(|| StoreError::Backend("an enqueue answered nothing".into()))
                })
                .await;
        }
        self.quick(move |done| QuickWrite::Enqueue {
            job: job.clone(),
            now,
            done,
        })
        .await
    }

    /// Completes a job, as [`Db::enqueue_one`] enqueues one.
    pub async fn complete_one(
        &self,
        id: JobId,
        fence: Fence,
        result: Option<Value>,
        now: Ts,
    ) -> Result<Job> {
        if !self.store.starts_writes() {
            return self
                .write(move |s| s.complete_job(id, &fence, result, now))
                .await;
        }
        self.quick(move |done| QuickWrite::Complete {
            id,
            fence: fence.clone(),
            result: result.clone(),
            now,
            done,
        })
        .await
    }

    /// Leases jobs for `claim`, as [`Db::enqueue_one`] enqueues one.
    pub async fn claim(&self, claim: Claim, now: Ts) -> Result<Vec<Job>> {
        if !self.store.starts_writes() {
            return self.write(move |s| s.claim_jobs(&claim, now)).await;
        }
        self.quick(move |done| QuickWrite::Claim {
            claim: claim.clone(),
            now,
            done,
        })
        .await
    }

    /// Starts the write `make` describes with [`Store::start_write`] and awaits its answer;
    /// `make` is called again for each retry of a batch that lost a deadlock.
    async fn quick<T: Send + 'static>(
        &self,
        make: impl Fn(super::Done<T>) -> QuickWrite,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let w = make(Box::new(move |r| {
                let _ = tx.send(r);
            }));
            self.store.start_write(w);
            let r = rx
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("the write was abandoned".into())));
            match r {
                Err(StoreError::Busy) if attempt < super::BUSY_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(super::busy_backoff(attempt)).await;
                }
                r => {
                    self.note(&r);
                    return r;
                }
            }
        }
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
        let r = match handle.instrument(tracing::Span::current()).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(super::Cause::of(e))),
        };
        self.note(&r);
        r
    }
}
