//! Queue workers: lease jobs of the worker's types, run the handler with `concurrency`
//! jobs at once, heartbeat while each runs (dropping the handler when the job is canceled
//! or the lease is lost), then complete or fail with `retryable` from the handler's error
//! kind. Inside `serve` the in-process ready queue wakes the worker at once; in a separate
//! process it polls the store adaptively (50 ms doubling to 1 s while idle). On shutdown,
//! work in hand gets the shutdown timeout; leases still held after it are released.

use super::{HandlerError, QueueHandler};
use crate::domain::{Claim, Fence, Job, JobConflict, JobId, JobType, WorkerId};
use crate::service::jobs::JobService;
use crate::service::Error;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

const MIN_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub job_types: Vec<JobType>,
    pub concurrency: usize,
    pub lease: Duration,
}

impl QueueSpec {
    /// Heartbeats come three times per lease (at least every 100 ms apart).
    pub fn heartbeat_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(100))
    }
}

/// Counters of one queue worker.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub stopped: AtomicU64,
}

/// How one job ended in this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
    /// Canceled by an admin, or the lease was lost: the handler was stopped.
    Stopped,
}

/// Called after every job with how long it took and how it ended.
pub type OnJob = Arc<dyn Fn(Duration, Outcome) + Send + Sync>;

/// Leases held right now, so they can be released if the worker has to stop.
type Held = Arc<Mutex<HashMap<JobId, Fence>>>;

async fn run_job(
    worker: Arc<dyn QueueHandler>,
    jobs: JobService,
    job: Job,
    fence: Fence,
    spec: QueueSpec,
    held: Held,
) -> Outcome {
    let id = job.id;
    let handling = worker.handle(job);
    tokio::pin!(handling);
    let lease = chrono::Duration::from_std(spec.lease).unwrap_or(chrono::Duration::seconds(60));
    let mut beat = tokio::time::interval(spec.heartbeat_every());
    beat.tick().await; // the first tick is immediate
    let result = loop {
        tokio::select! {
            r = &mut handling => break Some(r),
            _ = beat.tick() => {
                match jobs.heartbeat(id, fence.clone(), lease).await {
                    Ok(_) => {}
                    Err(Error::Conflict(c @ (JobConflict::Canceled | JobConflict::LeaseLost | JobConflict::NotLeased))) => {
                        tracing::info!(worker = worker.name(), job.id = %id, reason = c.code(), "job stopped");
                        break None;
                    }
                    Err(e) => tracing::warn!(worker = worker.name(), job.id = %id, error = %e, "heartbeat failed; will retry"),
                }
            }
        }
    };
    let outcome = match result {
        None => Outcome::Stopped,
        Some(Ok(value)) => match jobs.complete(id, fence.clone(), value).await {
            Ok(_) => Outcome::Completed,
            Err(e) => {
                tracing::warn!(worker = worker.name(), job.id = %id, error = %e, "could not complete the job");
                Outcome::Stopped
            }
        },
        Some(Err(err)) => {
            let retryable = matches!(err, HandlerError::Retryable(_));
            tracing::warn!(worker = worker.name(), job.id = %id, error = %err, retryable, "job failed");
            match jobs
                .fail(id, fence.clone(), err.to_string(), retryable, None)
                .await
            {
                Ok(_) => Outcome::Failed,
                Err(e) => {
                    tracing::warn!(worker = worker.name(), job.id = %id, error = %e, "could not record the failure");
                    Outcome::Stopped
                }
            }
        }
    };
    held.lock().expect("held lock").remove(&id);
    outcome
}

/// Runs the worker until `stop` turns true, or (with `once`) until nothing is left.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    worker: Arc<dyn QueueHandler>,
    jobs: JobService,
    worker_id: WorkerId,
    mut stop: watch::Receiver<bool>,
    shutdown_timeout: Duration,
    once: bool,
    stats: Arc<QueueStats>,
    on_job: OnJob,
) {
    let spec = worker.spec();
    let permits = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let held: Held = Arc::default();
    let mut running: JoinSet<()> = JoinSet::new();
    let mut idle = MIN_POLL;
    loop {
        if *stop.borrow() {
            break;
        }
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                _ = running.join_next() => {}
                _ = super::stopped(&mut stop) => break,
            }
            continue;
        }
        let queue = jobs.queue().clone();
        let waiter = queue.waiter(&spec.job_types);
        let claim = Claim {
            worker_id: worker_id.clone(),
            types: spec.job_types.clone(),
            limit: free,
            lease: chrono::Duration::from_std(spec.lease).unwrap_or(chrono::Duration::seconds(60)),
        };
        let leased = match jobs.lease(claim, Duration::ZERO).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(worker = worker.name(), error = %e, "lease failed; backing off");
                Vec::new()
            }
        };
        if leased.is_empty() {
            if once && running.is_empty() {
                break;
            }
            tokio::select! {
                _ = waiter.woken() => {}
                _ = tokio::time::sleep(idle) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = super::stopped(&mut stop) => break,
            }
            idle = (idle * 2).min(MAX_POLL);
            continue;
        }
        idle = MIN_POLL;
        for job in leased {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore open");
            let fence = job.fence(&worker_id);
            held.lock()
                .expect("held lock")
                .insert(job.id, fence.clone());
            tracing::debug!(worker = worker.name(), job.id = %job.id, job_type = %job.job_type, attempt = job.attempts, "job started");
            stats.started.fetch_add(1, Ordering::Relaxed);
            let (w, j, s, h, st, cb) = (
                worker.clone(),
                jobs.clone(),
                spec.clone(),
                held.clone(),
                stats.clone(),
                on_job.clone(),
            );
            running.spawn(async move {
                let started = Instant::now();
                let outcome = run_job(w, j, job, fence, s, h).await;
                match outcome {
                    Outcome::Completed => st.completed.fetch_add(1, Ordering::Relaxed),
                    Outcome::Failed => st.failed.fetch_add(1, Ordering::Relaxed),
                    Outcome::Stopped => st.stopped.fetch_add(1, Ordering::Relaxed),
                };
                cb(started.elapsed(), outcome);
                drop(permit);
            });
        }
    }
    // Shutdown: let the jobs in hand finish, then give back what is still held.
    if !running.is_empty() {
        tracing::info!(worker = worker.name(), jobs = running.len(), timeout = ?shutdown_timeout, "waiting for jobs in hand");
        let drained = tokio::time::timeout(shutdown_timeout, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
    }
    let left: Vec<(JobId, Fence)> = held.lock().expect("held lock").drain().collect();
    for (id, fence) in left {
        match jobs.release(id, fence).await {
            Ok(_) => tracing::info!(worker = worker.name(), job.id = %id, "lease released"),
            Err(e) => {
                tracing::warn!(worker = worker.name(), job.id = %id, error = %e, "could not release the lease")
            }
        }
    }
}
