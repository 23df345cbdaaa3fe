//! The storage abstraction: intent-named methods, one trait per feature (`JobStore`,
//! `BroadcastStore`, `UserStore`, `InboxStore`, `MetricStore`, `SessionStore`, `WorkerStore`,
//! `ScheduleStore`, `QueueControlStore`), with `Store` as their supertrait; the backend is
//! chosen once from the URL. Each backend implements each feature trait in its module of that
//! name (`sqlite::jobs`, `postgres::jobs`, …).
//!
//! Nothing outside this module names SQLite or PostgreSQL. Methods are synchronous and are
//! called only through [`Db`](crate::storage::Db), the one sync→async seam. `now` is always passed in.

pub mod blocking;
pub mod copy;
pub mod counts;
pub(crate) mod decode;
mod delivery;
pub mod postgres;
pub mod raw;
pub(crate) mod row;
pub(crate) mod schedules;
pub mod sqlite;
pub mod writer;

use crate::domain::metrics::{BroadcastStats, MetricDeltas, MetricTotals};
use crate::domain::notify::{
    Broadcast, BroadcastDraft, BroadcastFilter, BroadcastPage, ChunkOutcome, Delivered,
    DirectNotification, FeedItem, InboxItem, InboxPage, NewUser, User, UserId,
};
use crate::domain::schedule::{
    DueRun, Fired, QueueControl, Schedule, ScheduleName, SchedulePage, ScheduleSpec,
};
use crate::domain::{
    Ack, BulkAction, BulkFilter, BulkStep, Claim, Enqueued, Failure, Fence, Job, JobConflict,
    JobEvent, JobFilter, JobId, JobPage, JobStatus, NewJob, QueueStats, Reclaimed, Ts,
    WorkerProcess,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub use blocking::Db;

/// What can go wrong in a store, independent of the backend. Cheap to clone: the writer
/// answers every caller of a failed group commit with the same error.
#[derive(Debug, Clone)]
pub enum StoreError {
    NotFound,
    Conflict(JobConflict),
    Busy,
    /// The store cannot serve now (disk full, read-only file, I/O error, PostgreSQL down).
    Unavailable(Cause),
    /// A failure of the statement or the data (a bug, or a corrupt row).
    Backend(Cause),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("not found"),
            StoreError::Conflict(c) => write!(f, "conflict: {}", c.code()),
            StoreError::Busy => f.write_str("the store is busy"),
            StoreError::Unavailable(c) => write!(f, "the store is unavailable: {c}"),
            StoreError::Backend(c) => write!(f, "storage backend error: {c}"),
        }
    }
}

/// The chain below the message: the causes of the driver's error (its own text is already
/// the message), so `http::error` and the CLI log the whole chain without repeating it.
impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Unavailable(c) | StoreError::Backend(c) => c.error.as_ref()?.source(),
            _ => None,
        }
    }
}

/// Why a store call failed, beyond its kind: a message, and the driver's error it came
/// from when there is one (kept, not flattened to text, so its causes can be logged).
#[derive(Debug, Clone)]
pub struct Cause {
    message: String,
    error: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// The cause is `e` itself: its text is the message, its sources the chain.
    pub fn of(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: e.to_string(),
            error: Some(Arc::new(e)),
        }
    }

    /// `e` with a clearer message of our own.
    pub fn with_message(
        message: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            error: Some(Arc::new(e)),
        }
    }

    /// The driver's error, if the cause came from one.
    pub fn error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.error.as_deref()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self {
            message,
            error: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The rest of a bulk pass once a backend has loaded (and locked) up to `limit` matching
/// rows in insertion order: applies the action to each, saves it through `save` (the row
/// and its events), and says where the next pass starts.
pub(crate) fn bulk_step(
    rows: Vec<(i64, Job)>,
    limit: usize,
    action: BulkAction,
    now: Ts,
    mut save: impl FnMut(i64, JobStatus, &Job, &[crate::domain::NewEvent]) -> Result<()>,
) -> Result<BulkStep> {
    let next_after = (rows.len() >= limit)
        .then(|| rows.last().map(|(s, _)| *s))
        .flatten();
    let mut changed = Vec::with_capacity(rows.len());
    for (seq, mut job) in rows {
        let was = job.status;
        let Ok(events) = job.bulk(action, now) else {
            continue;
        };
        save(seq, was, &job, &events)?;
        changed.push((was, job));
    }
    Ok(BulkStep {
        changed,
        next_after,
    })
}

/// How much a claim under queue controls may lease: how many more jobs each limited type
/// may lease (`left`), and the types it may not lease at all (`excluded`: paused, or at
/// their limit).
pub(crate) struct Budget {
    left: HashMap<String, i64>,
    excluded: Vec<String>,
}

impl Budget {
    /// From the paused types and each limited type's controls (as they stand under the
    /// backend's lock) with its leased jobs counted.
    pub(crate) fn new(paused: Vec<String>, counted: Vec<(String, QueueControl, i64)>) -> Self {
        let mut excluded = paused;
        let mut left = HashMap::new();
        for (t, control, leased) in counted {
            match control.max_leased {
                _ if control.paused => excluded.push(t),
                Some(max) if max - leased > 0 => {
                    left.insert(t, max - leased);
                }
                Some(_) => excluded.push(t),
                None => {}
            }
        }
        Self { left, excluded }
    }
}

/// A claim under queue controls, the same on both backends. `candidates(need, excluded)`
/// reads (and on PostgreSQL locks) the next `need` ready jobs in lease order as (seq, type);
/// `lease(seqs)` leases those rows. Candidates of a type with nothing left are passed over
/// and the type excluded, so a call gets what it asked for from the other types while any
/// are ready.
pub(crate) fn controlled_claim<C: ?Sized, J>(
    c: &mut C,
    claim: &Claim,
    budget: Budget,
    mut candidates: impl FnMut(&mut C, usize, &[String]) -> Result<Vec<(i64, String)>>,
    mut lease: impl FnMut(&mut C, &[i64]) -> Result<Vec<J>>,
) -> Result<Vec<J>> {
    let Budget {
        mut left,
        mut excluded,
    } = budget;
    let limit = claim.limit;
    let mut got = Vec::new();
    // Every type the claim names is shut: nothing to look for.
    if !claim.types.is_empty()
        && claim
            .types
            .iter()
            .all(|t| excluded.iter().any(|e| e == t.as_str()))
    {
        return Ok(got);
    }
    loop {
        let need = limit - got.len();
        let rows = candidates(c, need, &excluded)?;
        let mut take = Vec::with_capacity(rows.len());
        let mut full = Vec::new();
        for (seq, t) in &rows {
            match left.get_mut(t) {
                Some(0) => {
                    if !full.contains(t) {
                        full.push(t.clone());
                    }
                }
                Some(n) => {
                    *n -= 1;
                    take.push(*seq);
                }
                None => take.push(*seq),
            }
        }
        if !take.is_empty() {
            got.extend(lease(c, &take)?);
        }
        if full.is_empty() || got.len() >= limit {
            return Ok(got);
        }
        excluded.extend(full);
    }
}

/// The controls a claim must respect.
pub(crate) struct ClaimControls {
    /// Types it may not lease.
    pub paused: Vec<String>,
    /// Types it may lease up to a limit: (type, max_leased).
    pub limited: Vec<(String, i64)>,
}

/// What a claim must respect, from the control rows of the types it may lease. `None` when
/// no control applies (the usual case: the claim runs unchanged).
pub(crate) fn claim_controls(
    claim: &Claim,
    controls: Vec<(String, QueueControl)>,
) -> Option<ClaimControls> {
    let applies = |t: &str| claim.types.is_empty() || claim.types.iter().any(|c| c.as_str() == t);
    let mut paused = Vec::new();
    let mut limited = Vec::new();
    for (t, c) in controls.into_iter().filter(|(t, _)| applies(t)) {
        if c.paused {
            paused.push(t);
        } else if let Some(n) = c.max_leased {
            limited.push((t, n));
        }
    }
    (!paused.is_empty() || !limited.is_empty()).then_some(ClaimControls { paused, limited })
}

/// A page of schedules read with `limit + 1` rows: the extra row says there is more.
pub(crate) fn schedule_page(mut items: Vec<Schedule>, limit: usize) -> SchedulePage {
    let next_after = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|s| s.name.as_str().to_string())
    } else {
        None
    };
    SchedulePage { items, next_after }
}

/// For calls answered per item (`ack_jobs`): an item's own refusal (unknown job, a state
/// conflict) is its answer; any other error fails the whole call.
pub(crate) fn per_item<T>(r: Result<T>) -> Result<Result<T>> {
    match r {
        Err(e @ (StoreError::NotFound | StoreError::Conflict(_))) => Ok(Err(e)),
        Err(e) => Err(e),
        Ok(v) => Ok(Ok(v)),
    }
}

/// How often a write that lost a deadlock (`Busy`: its work was rolled back) runs again,
/// waiting [`busy_backoff`] before each try, so the other side can commit first.
pub(crate) const BUSY_RETRIES: u64 = 8;

/// The wait before the `attempt`-th retry of a write that lost a deadlock.
pub(crate) fn busy_backoff(attempt: u64) -> std::time::Duration {
    std::time::Duration::from_millis(attempt)
}

/// The error of a write whose group-commit transaction the database rolled back under it.
pub(crate) fn lost_transaction() -> StoreError {
    StoreError::Unavailable("the transaction was lost (rolled back by the database)".into())
}

impl StoreError {
    /// Whether trying again later may succeed (busy, or the store unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy | StoreError::Unavailable(_))
    }
}

/// Runs one item's work of a call that handles several (the broadcasts a tick claims)
/// inside its own savepoint: a failure of that item alone is rolled back and handed back
/// as `Ok(Err(e))`, so the others go on; a transient failure fails the whole call.
/// `exec` runs a statement without parameters on the backend's connection.
pub(crate) fn isolated<C: ?Sized, T>(
    c: &mut C,
    exec: impl Fn(&mut C, &str) -> Result<()>,
    f: impl FnOnce(&mut C) -> Result<T>,
) -> Result<Result<T>> {
    exec(c, "SAVEPOINT wp_item")?;
    match f(c) {
        Ok(v) => {
            exec(c, "RELEASE SAVEPOINT wp_item")?;
            Ok(Ok(v))
        }
        Err(e) => {
            exec(c, "ROLLBACK TO SAVEPOINT wp_item")?;
            exec(c, "RELEASE SAVEPOINT wp_item")?;
            if e.is_transient() {
                Err(e)
            } else {
                Ok(Err(e))
            }
        }
    }
}

/// A browser session created by `POST /v1/auth/login`.
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the cookie value, hex; the cookie itself is never stored.
    pub token_hash: String,
    pub csrf_token: String,
    pub principal: String,
    pub created_at: Ts,
    pub expires_at: Ts,
    /// A fingerprint of the admin token the session was opened with.
    pub epoch: String,
}

/// What a wake-up from another process or node is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Jobs may be ready to lease.
    Jobs,
    /// A broadcast may be due.
    Broadcasts,
    /// Inbox items with sequence numbers in `lo..=hi` were committed (PostgreSQL: one per
    /// committed delivery, whichever node made it). Items of other transactions may share
    /// the range; a reader takes only the users it cares about and drops repeats.
    Inbox { lo: i64, hi: i64 },
    /// Inbox notifications may have been missed (the listener (re)connected): read again
    /// what committed lately.
    InboxRescan,
}

/// Called (on a store thread) when a wake-up arrives; must be quick and not block.
pub type WakeFn = Arc<dyn Fn(Wake) + Send + Sync>;

/// Schedules (recurring jobs). Each backend implements it in its `schedules` module.
pub trait ScheduleStore {
    /// Creates or replaces a schedule; a replaced one keeps its counters, its last run and
    /// its creation time. Returns the schedule and whether it was created.
    fn put_schedule(&self, spec: &ScheduleSpec, now: Ts) -> Result<(Schedule, bool)>;
    fn get_schedule(&self, name: &ScheduleName) -> Result<Schedule>;
    /// Schedules by name, after `after`, at most `limit`.
    fn list_schedules(&self, after: Option<&str>, limit: usize) -> Result<SchedulePage>;
    fn delete_schedule(&self, name: &ScheduleName) -> Result<()>;
    /// Enabled schedules whose next run is at or before `now`, soonest first.
    fn due_schedules(&self, now: Ts, limit: usize) -> Result<Vec<Schedule>>;
    /// Takes one due run in one transaction: only if the schedule's `next_run_at` is still
    /// `run.expected_next` (else `Taken`) it moves to `run.next_run_at`; then, unless the
    /// schedule skips overlapping runs and its last job is still queued or leased
    /// (`Skipped`), `job` is enqueued and counted as a run.
    fn fire_schedule(
        &self,
        name: &ScheduleName,
        run: &DueRun,
        job: NewJob,
        now: Ts,
    ) -> Result<Fired>;
    /// Enqueues `job` for the schedule now, outside its calendar (counted as a run; the
    /// next run is unchanged).
    fn trigger_schedule(&self, name: &ScheduleName, job: NewJob, now: Ts) -> Result<Job>;
}

/// Queue controls per job type (pause, a global limit on leased jobs).
pub trait QueueControlStore {
    /// Changes a type's controls: `paused` when given, `max_leased` when given (`Some(None)`
    /// removes the limit). Returns the controls now in force.
    fn set_queue_control(
        &self,
        job_type: &str,
        paused: Option<bool>,
        max_leased: Option<Option<i64>>,
        now: Ts,
    ) -> Result<QueueControl>;
    /// Every type with a control row.
    fn queue_controls(&self) -> Result<Vec<(String, QueueControl)>>;
}

/// Jobs: enqueueing, leasing, finishing and reading them back. Each backend implements it in
/// its `jobs` module.
pub trait JobStore {
    /// Enqueues all or nothing, applying idempotency per (type, key) and job id uniqueness.
    fn enqueue_jobs(&self, jobs: Vec<NewJob>, now: Ts) -> Result<Vec<Enqueued>>;
    fn get_job(&self, id: JobId) -> Result<Job>;
    /// Leases up to `claim.limit` ready jobs in (priority, available_at, created_at) order.
    fn claim_jobs(&self, claim: &Claim, now: Ts) -> Result<Vec<Job>>;
    fn heartbeat_job(&self, id: JobId, fence: &Fence, lease_until: Ts, now: Ts) -> Result<Job>;
    fn complete_job(&self, id: JobId, fence: &Fence, result: Option<Value>, now: Ts)
        -> Result<Job>;
    fn fail_job(&self, id: JobId, fence: &Fence, failure: &Failure, now: Ts) -> Result<Job>;
    fn cancel_job(&self, id: JobId, now: Ts) -> Result<Job>;
    fn retry_job(&self, id: JobId, now: Ts) -> Result<Job>;
    /// Gives leases back: `queued` again, available at once (used on graceful shutdown).
    fn release_job(&self, id: JobId, fence: &Fence, now: Ts) -> Result<Job>;
    /// Finishes many leased jobs in one transaction. Each item is judged exactly as its own
    /// `complete_job` / `fail_job` call would be: one answer per item, in order, an item's
    /// `NotFound` or `Conflict` never failing the others. Ids are distinct.
    fn ack_jobs(&self, acks: Vec<Ack>, now: Ts) -> Result<Vec<Result<Job>>>;
    /// One bounded pass of a bulk action: applies `action` to at most `limit` jobs that
    /// match `filter`, come after insertion sequence `after`, and whose state allows it.
    fn bulk_jobs(
        &self,
        action: BulkAction,
        filter: &BulkFilter,
        after: i64,
        limit: usize,
        now: Ts,
    ) -> Result<BulkStep>;
    fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage>;
    fn job_events(&self, id: JobId) -> Result<Vec<JobEvent>>;
    fn queue_stats(&self, now: Ts) -> Result<Vec<QueueStats>>;
    /// Ids of jobs ready now, oldest first (to rebuild the in-process queue).
    fn ready_job_ids(&self, now: Ts, limit: usize) -> Result<Vec<(JobId, String)>>;
    /// Takes back at most `limit` leases that ended before `now`.
    fn reclaim_expired_leases(&self, now: Ts, limit: usize) -> Result<Vec<Reclaimed>>;
    /// Deletes at most `limit` finished jobs (and their events) last updated before `before`.
    fn prune_finished_jobs(&self, before: Ts, limit: usize) -> Result<usize>;
    /// Folds the job-count changes the writers recorded apart into the counts (a backend
    /// whose writers add to the counts directly has nothing to do).
    fn fold_job_counts(&self) -> Result<()> {
        Ok(())
    }
}

/// Worker processes' liveness rows. Each backend implements it in its `workers` module.
pub trait WorkerStore {
    /// Inserts or updates a worker process's liveness row.
    fn record_worker_process(&self, p: &WorkerProcess) -> Result<()>;
    /// Worker processes seen since `since`, newest first.
    fn list_worker_processes(&self, since: Ts) -> Result<Vec<WorkerProcess>>;
}

/// Users (the recipients of notifications). Each backend implements it in its `users` module.
pub trait UserStore {
    /// Upserts all in one transaction (reviving soft-deleted users); returns how many.
    fn upsert_users(&self, users: Vec<NewUser>, now: Ts) -> Result<usize>;
    fn get_user(&self, id: &UserId) -> Result<User>;
    /// Users whose id or email contains `q`, in creation order, and how many match.
    fn list_users(&self, q: Option<&str>, limit: usize, offset: usize) -> Result<(Vec<User>, i64)>;
    fn delete_user(&self, id: &UserId, now: Ts) -> Result<()>;
}

/// Broadcasts: drafts, schedules, claims and chunked delivery. Each backend implements it in
/// its `broadcasts` module.
pub trait BroadcastStore {
    fn create_broadcast(&self, b: &Broadcast) -> Result<()>;
    fn get_broadcast(&self, id: Uuid) -> Result<Broadcast>;
    fn list_broadcasts(&self, filter: &BroadcastFilter) -> Result<BroadcastPage>;
    /// Replaces content, audience and schedule; only from `draft` or `scheduled`.
    fn replace_broadcast(&self, id: Uuid, draft: &BroadcastDraft, now: Ts) -> Result<Broadcast>;
    /// `scheduled` at `at`; only from `draft` or `scheduled`.
    fn schedule_broadcast(&self, id: Uuid, at: Ts, now: Ts) -> Result<Broadcast>;
    /// `cancelled`; from `draft`, `scheduled` or `sending`.
    fn cancel_broadcast(&self, id: Uuid, now: Ts) -> Result<Broadcast>;
    /// Only `draft` or `cancelled`.
    fn delete_broadcast(&self, id: Uuid, now: Ts) -> Result<()>;
    /// Atomically claims due broadcasts (and ones whose claim expired) for `owner`.
    fn claim_due_broadcasts(
        &self,
        owner: &str,
        limit: usize,
        lease_until: Ts,
        now: Ts,
    ) -> Result<Vec<Broadcast>>;
    /// Delivers the next chunk; receipts, counters, cursor and claim renewal commit together.
    fn deliver_broadcast_chunk(
        &self,
        id: Uuid,
        owner: &str,
        chunk: usize,
        lease_until: Ts,
        now: Ts,
    ) -> Result<ChunkOutcome>;
    /// Ends a broadcast that cannot be delivered (`None` if the claim no longer holds).
    fn fail_broadcast(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        now: Ts,
    ) -> Result<Option<Broadcast>>;
}

/// Inboxes: direct notifications, reading and retention. Each backend implements it in its
/// `inbox` module.
pub trait InboxStore {
    fn deliver_direct(&self, n: &DirectNotification, now: Ts) -> Result<Delivered>;
    fn inbox_page(&self, user: &UserId, limit: usize, offset: usize) -> Result<InboxPage>;
    fn unread_count(&self, user: &UserId) -> Result<i64>;
    /// Marks one of the user's items read (idempotent); another user's item is not found.
    fn mark_read(&self, user: &UserId, item: uuid::Uuid, now: Ts) -> Result<InboxItem>;
    fn mark_all_read(&self, user: &UserId, now: Ts) -> Result<usize>;
    /// Retention: items older than `before`, and beyond `max_per_user` per user.
    fn prune_inbox(
        &self,
        before: Option<Ts>,
        max_per_user: Option<usize>,
        limit: usize,
    ) -> Result<usize>;
    /// One of the user's items; another user's is not found.
    fn inbox_item(&self, user: &UserId, item: uuid::Uuid) -> Result<InboxItem>;
    /// The highest item sequence number committed so far (0 when there is none).
    fn inbox_head(&self) -> Result<i64>;
    /// The items with sequence numbers in `after+1..=upto` that belong to `users`, oldest
    /// first, at most `limit`: one set-based read for every listening user at once.
    fn inbox_news(
        &self,
        after: i64,
        upto: i64,
        users: &[UserId],
        limit: usize,
    ) -> Result<Vec<FeedItem>>;
    /// Unread counts of `users` (a user without items is absent).
    fn unread_counts(&self, users: &[UserId]) -> Result<Vec<(UserId, i64)>>;
    /// The user's items after the one with public id `item`, oldest first, at most `limit`
    /// (nothing when that item is not the user's or is gone), with that item's sequence
    /// number (`None` then): a stream resumed after it must not send it, or anything older,
    /// again.
    fn inbox_after(&self, user: &UserId, item: uuid::Uuid, limit: usize) -> Result<Replay>;
}

/// What a stream resumed after an item replays: that item's sequence number (`None` when it
/// is not the user's) and the user's items after it.
pub type Replay = (Option<i64>, Vec<FeedItem>);

/// `inbox_after`'s answer from rows that begin with the anchor item itself (`id >=` its
/// sequence number, one more than the limit): its sequence number, and the items after it.
pub(crate) fn after_anchor(item: uuid::Uuid, mut rows: Vec<FeedItem>) -> Replay {
    match rows.first() {
        Some(f) if f.item.id == item => {
            let anchor = rows.remove(0).seq;
            (Some(anchor), rows)
        }
        _ => (None, Vec::new()),
    }
}

/// Metric totals shared by every process. Each backend implements it in its `metrics` module.
pub trait MetricStore {
    /// Adds a process's metric deltas to the shared totals.
    fn add_metrics(&self, deltas: &MetricDeltas) -> Result<()>;
    fn metric_totals(&self) -> Result<MetricTotals>;
    /// Broadcasts per status, and recipients by result over all broadcasts.
    fn broadcast_stats(&self) -> Result<BroadcastStats>;
}

/// Browser sessions. Each backend implements it in its `sessions` module.
pub trait SessionStore {
    fn create_session(&self, session: &Session) -> Result<()>;
    fn find_session(&self, token_hash: &str, now: Ts) -> Result<Option<Session>>;
    fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Live sessions, newest first (at most `limit`).
    fn list_sessions(&self, now: Ts, limit: usize) -> Result<Vec<Session>>;
    fn prune_sessions(&self, now: Ts) -> Result<usize>;
}

/// A store call for [`Store::run_on_writer`]: given the store (or why the writer could not
/// run it), it says whether it succeeded and how to answer once the commit's fate is known.
pub type WriterTask = Box<dyn FnOnce(Result<&dyn Store>) -> (bool, writer::Reply) + Send>;

/// How a write started with [`Store::start_write`] is answered: once its transaction has
/// committed (or failed), on the writer's thread.
pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send>;

impl QuickWrite {
    /// Answers the write with `e` without running it.
    pub fn refuse(self, e: StoreError) {
        match self {
            QuickWrite::Enqueue { done, .. } => done(Err(e)),
            QuickWrite::Complete { done, .. } => done(Err(e)),
            QuickWrite::Claim { done, .. } => done(Err(e)),
        }
    }
}

/// The writes a store may start without a thread waiting for them
/// ([`Store::start_write`]): the three that workers make for every job, one at a time.
pub enum QuickWrite {
    /// `enqueue_jobs` of one job.
    Enqueue {
        job: NewJob,
        now: Ts,
        done: Done<Enqueued>,
    },
    /// `complete_job`.
    Complete {
        id: JobId,
        fence: Fence,
        result: Option<Value>,
        now: Ts,
        done: Done<Job>,
    },
    /// `claim_jobs`.
    Claim {
        claim: Claim,
        now: Ts,
        done: Done<Vec<Job>>,
    },
}

/// The whole store: every feature's trait, and the lifecycle of the store itself (opening
/// is [`open`]). One implementation of each trait per backend, in the backend's feature module.
pub trait Store:
    JobStore
    + WorkerStore
    + UserStore
    + BroadcastStore
    + InboxStore
    + MetricStore
    + SessionStore
    + ScheduleStore
    + QueueControlStore
    + Send
    + Sync
    + 'static
{
    /// How many calls may usefully run at once (the seam's semaphore size).
    fn max_concurrency(&self) -> usize;
    /// The applied schema version (0 when none).
    fn schema_version(&self) -> Result<i64>;
    /// The migrations this build carries: (version, name), oldest first.
    fn migrations(&self) -> Vec<(i64, String)>;
    /// The newest schema version this build knows.
    fn latest_schema_version(&self) -> i64 {
        self.migrations().last().map_or(0, |m| m.0)
    }
    /// The migrations this build carries that the database has not applied
    /// (`V7__inbox_uuid`), oldest first.
    fn pending_migrations(&self) -> Result<Vec<String>> {
        let applied = self.schema_version()?;
        Ok(self
            .migrations()
            .into_iter()
            .filter(|(v, _)| *v > applied)
            .map(|(v, name)| format!("V{v}__{name}"))
            .collect())
    }
    /// Flushes and stops background threads; later calls fail with `Unavailable`.
    fn close(&self);
    /// Whether [`Store::start_write`] starts writes; where it does not, callers make the
    /// blocking call through [`Db::write`] instead.
    fn starts_writes(&self) -> bool {
        false
    }
    /// Starts `w` on the writer without a thread waiting for it: `w`'s `done` is called once
    /// its transaction has committed (or failed), as the blocking call would have returned.
    /// A store that does not start writes answers that it cannot.
    fn start_write(&self, w: QuickWrite) {
        w.refuse(StoreError::Backend(
            "this store does not start writes".into(),
        ));
    }
    /// Runs `task` on the writer's own thread, inside its next group-commit transaction,
    /// where the store's writes run in place; its answer is sent once that transaction has
    /// committed. A backend that cannot gives the task back (the caller then runs it on the
    /// blocking pool, where each write waits for the writer as usual). `this` is this store.
    fn run_on_writer(&self, this: Arc<dyn Store>, task: WriterTask) -> Option<WriterTask> {
        let _ = this;
        Some(task)
    }
    /// Asks to be woken when another process or node makes work ready. A backend that
    /// cannot tell (SQLite) never calls; waiting callers poll on a bounded interval anyway.
    fn subscribe(&self, wake: WakeFn) {
        let _ = wake;
    }
}

/// A `LIKE … ESCAPE '\\'` pattern matching `q` anywhere, with `%` and `_` taken literally
/// (the same in both dialects).
pub(crate) fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Users whose inbox one retention pass trims at most.
pub const PRUNE_USERS_PER_PASS: usize = 100;

/// Which backend a URL names, checked before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// Why a database URL cannot be used (a usage error: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("sqlite::memory: is not supported: a pool needs one shared database file; use sqlite://PATH")]
    Memory,
    #[error("unsupported database URL scheme in '{0}': use sqlite://PATH or postgres://user:pass@host:port/db")]
    Scheme(String),
    #[error("empty SQLite path in '{0}'")]
    EmptyPath(String),
}

/// Parses a database URL into a target.
pub fn parse_url(url: &str) -> std::result::Result<Target, UrlError> {
    let url = url.trim();
    if url.starts_with("sqlite::memory:") || url == "sqlite://:memory:" {
        return Err(UrlError::Memory);
    }
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(UrlError::EmptyPath(url.into()));
        }
        return Ok(Target::Sqlite(path.into()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_string()));
    }
    Err(UrlError::Scheme(redact_url(url)))
}

/// A URL with any password replaced by `***`, for logs and messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.split_once('@') {
            if let Some((user, _)) = cred.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

/// Errors of opening a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("migrations failed: {0}")]
    Migrate(String),
}

impl OpenError {
    /// Usage and configuration errors exit 2; the rest are runtime failures (1).
    pub fn is_usage(&self) -> bool {
        matches!(self, OpenError::Url(_))
    }
}

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub migrate: bool,
}

/// (version, name) of a backend's embedded migrations, oldest first.
pub(crate) fn migration_list(ms: &[refinery::Migration]) -> Vec<(i64, String)> {
    let mut all: Vec<(i64, String)> = ms
        .iter()
        .map(|m| (m.version() as i64, m.name().to_string()))
        .collect();
    all.sort();
    all
}

/// Applies the migrations up to `version` and no further: a database as an older release
/// left it (tests of upgrades).
pub fn migrate_to(url: &str, version: u32) -> std::result::Result<(), OpenError> {
    match parse_url(url)? {
        Target::Sqlite(path) => sqlite::migrate_to(&path, version),
        Target::Postgres(u) => postgres::migrate_to(&u, version),
    }
}

/// Opens the store a URL names, applying migrations unless told not to.
pub fn open(url: &str, opts: &OpenOptions) -> std::result::Result<Arc<dyn Store>, OpenError> {
    match parse_url(url)? {
        Target::Sqlite(path) => {
            let store = sqlite::SqliteStore::open(&path, opts)?;
            Ok(Arc::new(store))
        }
        Target::Postgres(u) => {
            let store = postgres::PgStore::open(&u, opts)?;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver error with a cause of its own (like a PostgreSQL error over a broken socket).
    #[derive(Debug, thiserror::Error)]
    #[error("connection lost")]
    struct DriverError(#[source] std::io::Error);

    #[test]
    fn store_errors_keep_the_drivers_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let e = StoreError::Unavailable(Cause::of(DriverError(io)));
        assert_eq!(e.to_string(), "the store is unavailable: connection lost");
        let mut chain = vec![e.to_string()];
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            chain.push(c.to_string());
            cur = c.source();
        }
        assert_eq!(
            chain,
            ["the store is unavailable: connection lost", "broken pipe"]
        );
        let again = e.clone();
        assert!(matches!(&again, StoreError::Unavailable(c) if c.error().is_some()));
        let plain = StoreError::Backend("a corrupt row".into());
        assert!(std::error::Error::source(&plain).is_none());
    }

    #[test]
    fn urls() {
        assert!(matches!(
            parse_url("sqlite::memory:"),
            Err(UrlError::Memory)
        ));
        assert!(matches!(parse_url("mysql://x"), Err(UrlError::Scheme(_))));
        assert_eq!(
            parse_url("sqlite://wp.db").unwrap(),
            Target::Sqlite("wp.db".into())
        );
        assert_eq!(
            parse_url("sqlite:///tmp/a.db").unwrap(),
            Target::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
