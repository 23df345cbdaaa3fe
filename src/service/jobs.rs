//! The job control plane: enqueue, lease (with long-poll), heartbeat, complete, fail,
//! admin cancel/retry, listing, and the maintenance duties (reclaim, retention).

use super::{Error, Result};
use crate::clock::SharedClock;
use crate::domain::{
    Ack, BulkAction, BulkFilter, Claim, Enqueued, Failure, Fence, Job, JobEvent, JobFilter, JobId,
    JobPage, JobStatus, JobType, NewJob, QueueStats,
};
use crate::queue::{Ready, ReadyQueue};
use crate::storage::Db;
use crate::telemetry::{counter, Telemetry};
use chrono::Duration;
use serde_json::Value;
use std::sync::Arc;
use tracing::instrument;

/// How often a waiting lease looks at the store even without a wake-up: covers delayed
/// jobs coming due and enqueues by other processes.
const WAIT_FALLBACK_POLL: std::time::Duration = std::time::Duration::from_millis(200);
const NOT_FOUND: &str = "job_not_found";

#[derive(Clone)]
pub struct JobService {
    db: Db,
    queue: Arc<ReadyQueue>,
    clock: SharedClock,
    telemetry: Arc<Telemetry>,
    /// Open long-polls (`wait_ms`) this process holds at most; past them a lease answers
    /// at once.
    long_polls: Arc<tokio::sync::Semaphore>,
}

/// Counts per type, each with its controls; a type with controls but no jobs is listed
/// too (a queue paused before its first job). The store lists types in name order.
pub fn queues_with_controls(
    s: &dyn crate::storage::Store,
    now: crate::domain::Ts,
) -> crate::storage::Result<Vec<QueueStats>> {
    let mut stats = s.queue_stats(now)?;
    for (t, c) in s.queue_controls()? {
        let i = match stats.binary_search_by(|q| q.job_type.as_str().cmp(&t)) {
            Ok(i) => i,
            Err(i) => {
                stats.insert(
                    i,
                    QueueStats {
                        job_type: t,
                        ..Default::default()
                    },
                );
                i
            }
        };
        stats[i].paused = c.paused;
        stats[i].max_leased = c.max_leased;
    }
    Ok(stats)
}

/// The default bound of open long-polls per process.
pub const MAX_LONG_POLLS: usize = 1024;

fn hint(job: &Job) -> Ready {
    Ready {
        id: job.id,
        job_type: job.job_type.as_str().to_string(),
    }
}

impl JobService {
    pub fn new(db: Db, queue: Arc<ReadyQueue>, clock: SharedClock) -> Self {
        Self {
            db,
            queue,
            clock,
            telemetry: Telemetry::new(),
            long_polls: Arc::new(tokio::sync::Semaphore::new(MAX_LONG_POLLS)),
        }
    }

    /// At most `n` leases wait (`wait_ms`) at once in this process.
    pub fn with_long_poll_limit(mut self, n: usize) -> Self {
        self.long_polls = Arc::new(tokio::sync::Semaphore::new(n));
        self
    }

    /// Counts this service's work into `telemetry` (the process's shared metrics).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub fn queue(&self) -> &Arc<ReadyQueue> {
        &self.queue
    }

    /// Pushes a job to the ready queue if it can be leased now.
    fn announce<'a>(&self, jobs: impl IntoIterator<Item = &'a Job>) {
        let now = self.clock.now();
        self.queue.push(
            jobs.into_iter()
                .filter(|j| j.status == JobStatus::Queued && j.available_at <= now)
                .map(hint),
        );
    }

    /// Announces one job made outside `enqueue` (a schedule's run).
    pub fn announce_one(&self, job: &Job) {
        self.announce(std::iter::once(job));
    }

    /// Enqueues all or nothing.
    #[instrument(skip_all, fields(jobs = new.len()))]
    pub async fn enqueue(&self, new: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let now = self.clock.now();
        let out = match <[NewJob; 1]>::try_from(new) {
            Ok([job]) => self.db.enqueue_one(job, now).await.map(|e| vec![e]),
            Err(new) => self.db.write(move |s| s.enqueue_jobs(new, now)).await,
        }
        .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        self.announce(out.iter().filter_map(|e| match e {
            Enqueued::Created(j) => Some(j),
            Enqueued::Replayed(_) => None,
        }));
        Ok(out)
    }

    #[instrument(skip_all, fields(job.id = %id))]
    pub async fn get(&self, id: JobId) -> Result<Job> {
        self.db
            .call(move |s| s.get_job(id))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    /// Leases up to `claim.limit` jobs; with `wait` > 0 and nothing ready, waits for a
    /// wake-up (or the fallback poll) until something is leased or the time is up.
    #[instrument(skip_all, fields(worker = %claim.worker_id, limit = claim.limit))]
    pub async fn lease(&self, claim: Claim, wait: std::time::Duration) -> Result<Vec<Job>> {
        // A waiting slot, or no wait at all: the number of parked callers is bounded.
        let slot = if wait.is_zero() {
            None
        } else {
            self.long_polls.clone().try_acquire_owned().ok()
        };
        let wait = if slot.is_some() {
            wait
        } else {
            std::time::Duration::ZERO
        };
        let _waiting = slot.map(|s| (s, self.telemetry.long_poll_started()));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let waiter = self.queue.waiter(&claim.types);
            let now = self.clock.now();
            let jobs = self
                .db
                .claim(claim.clone(), now)
                .await
                .map_err(|e| Error::from_store(e, NOT_FOUND))?;
            if !jobs.is_empty() {
                self.queue.pop(jobs.len());
                self.telemetry.jobs("started", jobs.len() as i64);
                return Ok(jobs);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(jobs);
            }
            tokio::select! {
                _ = waiter.woken() => {}
                _ = tokio::time::sleep(left.min(WAIT_FALLBACK_POLL)) => {}
            }
        }
    }

    #[instrument(skip_all, fields(job.id = %id))]
    pub async fn heartbeat(&self, id: JobId, fence: Fence, lease: Duration) -> Result<Job> {
        let now = self.clock.now();
        self.db
            .write(move |s| s.heartbeat_job(id, &fence, now + lease, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    #[instrument(skip_all, fields(job.id = %id))]
    pub async fn complete(&self, id: JobId, fence: Fence, result: Option<Value>) -> Result<Job> {
        let now = self.clock.now();
        let job = self
            .db
            .complete_one(id, fence, result, now)
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        self.telemetry.jobs("completed", 1);
        Ok(job)
    }

    #[instrument(skip_all, fields(job.id = %id))]
    pub async fn fail(
        &self,
        id: JobId,
        fence: Fence,
        error: String,
        retryable: bool,
        details: Option<Value>,
    ) -> Result<Job> {
        let now = self.clock.now();
        let failure = Failure {
            error,
            retryable,
            details,
            jitter: rand::random::<f64>(),
        };
        let job = self
            .db
            .write(move |s| s.fail_job(id, &fence, &failure, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        self.telemetry.jobs("failed", 1);
        if job.status == JobStatus::Queued {
            self.telemetry
                .count(counter::RETRIES, job.job_type.as_str(), 1);
        }
        self.announce([&job]);
        Ok(job)
    }

    /// Finishes many leased jobs in one store call: one answer per item, in order, each
    /// the answer its own `complete` or `fail` call would get. Two items naming one job are
    /// a 400 for the whole call.
    #[instrument(skip_all, fields(items = acks.len()))]
    pub async fn ack(&self, acks: Vec<Ack>) -> Result<Vec<Result<Job>>> {
        let mut seen = std::collections::HashSet::with_capacity(acks.len());
        if let Some(i) = acks.iter().position(|a| !seen.insert(a.id)) {
            return Err(Error::field(
                &format!("items[{i}].job_id"),
                "names a job that an earlier item names",
            ));
        }
        let now = self.clock.now();
        let out = self
            .db
            .write(move |s| s.ack_jobs(acks, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        let (mut completed, mut failed) = (0, 0);
        for job in out.iter().flatten() {
            match job.status {
                JobStatus::Succeeded => completed += 1,
                _ => {
                    failed += 1;
                    if job.status == JobStatus::Queued {
                        self.telemetry
                            .count(counter::RETRIES, job.job_type.as_str(), 1);
                    }
                }
            }
        }
        self.telemetry.jobs("completed", completed);
        self.telemetry.jobs("failed", failed);
        self.announce(out.iter().flatten());
        Ok(out
            .into_iter()
            .map(|r| r.map_err(|e| Error::from_store(e, NOT_FOUND)))
            .collect())
    }

    /// Retries or cancels every job that matches `filter` and whose state allows it, in
    /// bounded batches (each its own short transaction); returns how many changed.
    #[instrument(skip_all, fields(action = ?action))]
    pub async fn bulk(&self, action: BulkAction, filter: BulkFilter) -> Result<usize> {
        const BATCH: usize = 500;
        let filter = Arc::new(filter);
        let (mut after, mut total) = (0i64, 0usize);
        loop {
            let now = self.clock.now();
            let f = filter.clone();
            let step = self
                .db
                .write(move |s| s.bulk_jobs(action, &f, after, BATCH, now))
                .await?;
            total += step.changed.len();
            let leased = step
                .changed
                .iter()
                .filter(|(was, _)| *was == JobStatus::Leased)
                .count();
            if action == BulkAction::Cancel && leased > 0 {
                self.telemetry.jobs("canceled", leased as i64);
            }
            self.announce(step.changed.iter().map(|(_, j)| j));
            match step.next_after {
                Some(next) => after = next,
                None => return Ok(total),
            }
            tokio::task::yield_now().await;
        }
    }

    /// Gives back a lease that was never started.
    pub async fn release(&self, id: JobId, fence: Fence) -> Result<Job> {
        let now = self.clock.now();
        let job = self
            .db
            .write(move |s| s.release_job(id, &fence, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        self.announce([&job]);
        Ok(job)
    }

    #[instrument(skip_all, fields(job.id = %id))]
    pub async fn cancel(&self, id: JobId) -> Result<Job> {
        let now = self.clock.now();
        // An attempt in flight ends as `canceled` (a queued job was never started).
        let was_leased = self.get(id).await?.status == JobStatus::Leased;
        let job = self
            .db
            .write(move |s| s.cancel_job(id, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        if was_leased {
            self.telemetry.jobs("canceled", 1);
        }
        Ok(job)
    }

    #[instrument(skip_all, fields(job.id = %id))]
    pub async fn retry(&self, id: JobId) -> Result<Job> {
        let now = self.clock.now();
        let job = self
            .db
            .write(move |s| s.retry_job(id, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        self.announce([&job]);
        Ok(job)
    }

    pub async fn list(&self, filter: JobFilter) -> Result<JobPage> {
        Ok(self.db.call(move |s| s.list_jobs(&filter)).await?)
    }

    pub async fn events(&self, id: JobId) -> Result<Vec<JobEvent>> {
        self.db
            .call(move |s| s.job_events(id))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    /// Counts per type, with each type's controls (`queues_with_controls`).
    pub async fn queues(&self) -> Result<Vec<QueueStats>> {
        let now = self.clock.now();
        Ok(self.db.call(move |s| queues_with_controls(s, now)).await?)
    }

    /// One type's queue item (all zero when it has no jobs).
    pub async fn queue_item(&self, job_type: &JobType) -> Result<QueueStats> {
        let t = job_type.as_str();
        Ok(self
            .queues()
            .await?
            .into_iter()
            .find(|q| q.job_type == t)
            .unwrap_or_else(|| QueueStats {
                job_type: t.to_string(),
                ..Default::default()
            }))
    }

    /// Pauses or resumes a type, or sets its limit (`Some(None)` removes it); leasers
    /// waiting in this process look again at once. Returns the queue item.
    #[instrument(skip_all, fields(job.type = %job_type))]
    pub async fn control(
        &self,
        job_type: JobType,
        paused: Option<bool>,
        max_leased: Option<Option<i64>>,
    ) -> Result<QueueStats> {
        let now = self.clock.now();
        let t = job_type.as_str().to_string();
        self.db
            .write(move |s| s.set_queue_control(&t, paused, max_leased, now))
            .await?;
        self.queue.wake();
        self.queue_item(&job_type).await
    }

    /// Folds the job counts the writers recorded apart (PostgreSQL's delta rows).
    pub async fn fold_counts(&self) -> Result<()> {
        Ok(self.db.write(|s| s.fold_job_counts()).await?)
    }

    /// Takes back every lease that has ended, in batches; returns how many.
    pub async fn reclaim_expired(&self) -> Result<usize> {
        const BATCH: usize = 500;
        let mut total = 0;
        loop {
            let now = self.clock.now();
            let got = self
                .db
                .write(move |s| s.reclaim_expired_leases(now, BATCH))
                .await?;
            let n = got.len();
            total += n;
            self.telemetry.jobs("failed", n as i64);
            let ready: Vec<Ready> = got
                .into_iter()
                .filter(|r| r.status == JobStatus::Queued)
                .map(|r| Ready {
                    id: r.id,
                    job_type: r.job_type.as_str().to_string(),
                })
                .collect();
            if n > 0 {
                tracing::info!(reclaimed = n, "expired leases reclaimed");
            }
            self.queue.push(ready);
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Deletes finished jobs older than `retention`, in bounded batches so the write lock
    /// is never held for long; returns how many.
    pub async fn prune(&self, retention: Duration) -> Result<usize> {
        const BATCH: usize = 1000;
        let Some(before) = self.clock.now().checked_sub_signed(retention) else {
            return Ok(0);
        };
        let mut total = 0;
        loop {
            let n = self
                .db
                .write(move |s| s.prune_finished_jobs(before, BATCH))
                .await?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Refills the ready queue from the store (at start).
    pub async fn rebuild_queue(&self) -> Result<usize> {
        let now = self.clock.now();
        let ids = self.db.call(move |s| s.ready_job_ids(now, 100_000)).await?;
        let n = ids.len();
        self.queue
            .push(ids.into_iter().map(|(id, job_type)| Ready { id, job_type }));
        Ok(n)
    }
}
