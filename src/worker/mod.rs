//! The worker framework: the `Worker` traits, the one registry that `wp-lite run`,
//! `wp-lite workers` and `serve --workers` read, and the environment workers get.
//!
//! Adding a worker is a module that implements
//! [`Periodic`](crate::worker::Periodic) or [`QueueHandler`](crate::worker::QueueHandler)
//! and one line in [`Registry::builtin`](crate::worker::Registry::builtin).

pub mod broadcast;
pub mod demo;
pub mod liveness;
pub mod maintenance;
pub mod periodic;
pub mod queue_worker;
pub mod runner;
pub mod send;

use crate::clock::SharedClock;
use crate::domain::{Job, JobType};
use crate::service::jobs::JobService;
use crate::storage::Db;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use periodic::PeriodicSpec;
pub use queue_worker::QueueSpec;

/// A boxed future, so worker traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What every worker has: a stable name and a one-line description.
pub trait Worker: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
}

/// A worker that ticks every `interval ± jitter`.
pub trait Periodic: Worker {
    fn spec(&self) -> PeriodicSpec;
    /// One tick. An error is logged with its cause chain and counted; the loop goes on.
    fn tick(&self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// A signal that ends the wait before the next tick early (e.g. send-now).
    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// How a job handler failed: the kind decides whether the job is retried.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another attempt (with backoff) while attempts remain.
    #[error("{0}")]
    Retryable(String),
    /// Final: the job fails now.
    #[error("{0}")]
    Fatal(String),
}

/// A worker that leases jobs of its types and handles them.
pub trait QueueHandler: Worker {
    fn spec(&self) -> QueueSpec;
    /// Handles one job; `Ok(result)` completes it. The future is dropped if the job is
    /// canceled or its lease is lost while it runs.
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Option<Value>, HandlerError>>;
}

/// A built worker of either kind.
#[derive(Clone)]
pub enum Built {
    Periodic(Arc<dyn Periodic>),
    Queue(Arc<dyn QueueHandler>),
}

impl Built {
    pub fn name(&self) -> &str {
        match self {
            Built::Periodic(w) => w.name(),
            Built::Queue(w) => w.name(),
        }
    }
}

/// Options every worker process shares.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long work in hand may take to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// How often a process records that it is alive.
    pub heartbeat: Duration,
    /// `jobs.maintenance`: how often expired leases are looked for.
    pub maintenance_interval: Duration,
    /// `jobs.maintenance`: run a pass as soon as the worker starts, so leases that
    /// expired while nothing ran are reclaimed at once (tests that step the clock
    /// themselves turn it off, so no pass races their steps).
    pub maintenance_at_start: bool,
    /// `jobs.maintenance`: keep finished jobs this long (`None` = forever).
    pub job_retention: Option<Duration>,
    /// `jobs.maintenance`: delete inbox items older than this many days.
    pub inbox_retention_days: Option<u32>,
    /// `jobs.maintenance`: keep at most this many inbox items per user.
    pub inbox_max_per_user: Option<usize>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            maintenance_interval: Duration::from_secs(1),
            maintenance_at_start: true,
            job_retention: Some(Duration::from_secs(7 * 86400)),
            inbox_retention_days: None,
            inbox_max_per_user: None,
        }
    }
}

/// What a worker is built from.
#[derive(Clone)]
pub struct WorkerEnv {
    pub jobs: JobService,
    pub db: Db,
    pub clock: SharedClock,
    pub options: WorkerOptions,
    /// Notified when a broadcast becomes due (send-now here, or on another node).
    pub broadcast_wake: Arc<tokio::sync::Notify>,
    /// This process's real-time inbox streams (none in `wp-lite run`).
    pub hub: Option<Arc<crate::service::streams::Hub>>,
}

impl WorkerEnv {
    /// Wires the store's cross-process wake-ups (PostgreSQL LISTEN/NOTIFY) to this
    /// process's waiters: leasers and queue workers on `Jobs`, the broadcast worker on
    /// `Broadcasts`, the real-time inbox on `Inbox`. A no-op on SQLite, where waiting
    /// callers poll on a bounded interval.
    pub fn subscribe_wakes(&self) {
        let queue = self.jobs.queue().clone();
        let broadcast = self.broadcast_wake.clone();
        let hub = self.hub.clone();
        self.db
            .store()
            .subscribe(Arc::new(move |w: crate::storage::Wake| match w {
                crate::storage::Wake::Jobs => queue.wake(),
                crate::storage::Wake::Broadcasts => broadcast.notify_one(),
                crate::storage::Wake::Inbox { lo, hi } => {
                    if let Some(h) = &hub {
                        h.range_committed(lo, hi);
                    }
                }
                crate::storage::Wake::InboxRescan => {
                    if let Some(h) = &hub {
                        h.rescan();
                    }
                }
            }));
    }

    /// How this process's services tell its real-time streams about inbox changes.
    pub fn inbox_signal(&self) -> crate::service::streams::InboxSignal {
        self.hub
            .clone()
            .map(crate::service::streams::InboxSignal::new)
            .unwrap_or_default()
    }

    /// The inbox service as workers use it.
    pub fn inbox(&self) -> crate::service::inbox::InboxService {
        crate::service::inbox::InboxService::new(self.db.clone(), self.clock.clone())
            .with_signal(self.inbox_signal())
    }
}

/// A configuration error found while building a worker (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkerConfigError(pub String);

type BuildFn = Arc<dyn Fn(&WorkerEnv) -> Result<Built, WorkerConfigError> + Send + Sync>;

/// One registered worker.
#[derive(Clone)]
pub struct Registration {
    pub name: &'static str,
    pub description: &'static str,
    /// Whether `serve` runs it when `--workers` is not given.
    pub in_serve_by_default: bool,
    build: BuildFn,
}

impl Registration {
    pub fn build(&self, env: &WorkerEnv) -> Result<Built, WorkerConfigError> {
        (self.build)(env)
    }
}

/// The registry of workers.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Registration>,
}

impl Registry {
    /// The built-in workers. Adding one is one line here plus its module.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        r.register(
            maintenance::NAME,
            maintenance::DESCRIPTION,
            true,
            maintenance::build,
        );
        r.register(
            broadcast::NAME,
            broadcast::DESCRIPTION,
            true,
            broadcast::build,
        );
        r.register(send::NAME, send::DESCRIPTION, true, send::build);
        r.register(demo::NAME, demo::DESCRIPTION, false, demo::build);
        r
    }

    /// Registers a worker (tests and embedders may add their own).
    pub fn register<F>(
        &mut self,
        name: &'static str,
        description: &'static str,
        in_serve_by_default: bool,
        build: F,
    ) where
        F: Fn(&WorkerEnv) -> Result<Built, WorkerConfigError> + Send + Sync + 'static,
    {
        self.entries.retain(|e| e.name != name);
        self.entries.push(Registration {
            name,
            description,
            in_serve_by_default,
            build: Arc::new(build),
        });
    }

    pub fn get(&self, name: &str) -> Option<&Registration> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub fn entries(&self) -> &[Registration] {
        &self.entries
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }
}

pub use crate::shutdown::stopped;

/// The job types a queue worker handles, parsed once.
pub fn job_types(types: &[&str]) -> Vec<JobType> {
    types
        .iter()
        .map(|t| JobType::parse("type", t).expect("built-in job types are valid"))
        .collect()
}
