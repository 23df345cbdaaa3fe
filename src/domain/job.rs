//! Jobs: identifiers, states, the lease fence and the retry backoff.

use super::time::Ts;
use super::FieldError;
use chrono::Duration;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A job's id: a UUID (v7 when wp-lite makes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s.trim()).ok().map(Self)
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A job type: 1–200 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobType(String);

impl JobType {
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        if s.is_empty() || s.len() > 200 {
            return Err(FieldError::new(field, "must be 1 to 200 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(FieldError::new(
                field,
                "may only contain A-Z a-z 0-9 . _ : -",
            ));
        }
        Ok(Self(s.to_string()))
    }
    /// For values read back from the store, which were parsed on the way in.
    pub fn trusted(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The five states of a job.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Leased,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Leased,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Leased => "leased",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }
    /// Admin cancel is allowed from these.
    pub fn can_cancel(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Leased)
    }
    /// Admin retry is allowed from these.
    pub fn can_retry(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Canceled)
    }
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

impl FromStr for JobStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

/// Opaque strings stored and echoed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMeta {
    pub idempotency_key: Option<String>,
    pub code_version: Option<String>,
    pub model_version: Option<String>,
    pub config_hash: Option<String>,
    pub budget_tag: Option<String>,
    pub cost_cap_eur: Option<String>,
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub job_type: JobType,
    pub status: JobStatus,
    pub priority: i64,
    pub meta: JobMeta,
    pub input: Value,
    pub result: Option<Value>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub available_at: Ts,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Ts>,
    pub lease_token: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

/// A validated enqueue request.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Option<JobId>,
    pub job_type: JobType,
    pub priority: i64,
    pub max_attempts: i64,
    pub available_at: Option<Ts>,
    pub meta: JobMeta,
    pub input: Value,
}

/// What an enqueue did.
#[derive(Debug, Clone)]
pub enum Enqueued {
    Created(Job),
    /// The idempotency key was used before with an equal input.
    Replayed(Job),
}

impl Enqueued {
    pub fn job(&self) -> &Job {
        match self {
            Enqueued::Created(j) | Enqueued::Replayed(j) => j,
        }
    }
    pub fn into_job(self) -> Job {
        match self {
            Enqueued::Created(j) | Enqueued::Replayed(j) => j,
        }
    }
}

/// A worker's name for itself, under which it leases and acts on jobs: 1 to 200
/// characters. Made from a request by [`worker_input::worker_id`](super::worker_input::worker_id),
/// or by [`WorkerId::local`] for this process's own workers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    /// The longest id, in characters.
    pub const MAX_CHARS: usize = 200;

    /// An id this process makes for one of its own workers, cut to [`Self::MAX_CHARS`].
    pub fn local(id: impl Into<String>) -> Self {
        let id: String = id.into();
        Self(id.chars().take(Self::MAX_CHARS).collect())
    }

    /// An id already checked against the rules (`worker_input::worker_id`).
    pub(super) fn checked(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The token a lease hands its worker. A call that names one acts only while that lease
/// is the job's current one, which fences off a worker whose lease was taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// A token already checked against the rules (`worker_input::lease_token`).
    pub(super) fn checked(token: String) -> Self {
        Self(token)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A claim request: lease up to `limit` ready jobs of these types (empty = any).
#[derive(Debug, Clone)]
pub struct Claim {
    pub worker_id: WorkerId,
    pub types: Vec<JobType>,
    pub limit: usize,
    pub lease: Duration,
}

/// Who says they hold a lease: the worker, and optionally the lease token they were given.
#[derive(Debug, Clone)]
pub struct Fence {
    pub worker_id: WorkerId,
    pub lease_token: Option<LeaseToken>,
}

/// Why a worker's call on a job was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobConflict {
    NotLeased,
    LeaseLost,
    Canceled,
    InvalidStatus,
    IdempotencyConflict,
    DuplicateJobId,
}

impl JobConflict {
    pub fn code(self) -> &'static str {
        match self {
            JobConflict::NotLeased => "job_not_leased",
            JobConflict::LeaseLost => "lease_lost",
            JobConflict::Canceled => "job_canceled",
            JobConflict::InvalidStatus => "invalid_status",
            JobConflict::IdempotencyConflict => "idempotency_conflict",
            JobConflict::DuplicateJobId => "duplicate_job_id",
        }
    }
}

impl Fence {
    /// Whether this caller may act on the job now; the one rule both backends apply.
    pub fn check(&self, job: &Job, now: Ts) -> Result<(), JobConflict> {
        if job.status == JobStatus::Canceled {
            return Err(JobConflict::Canceled);
        }
        let held = job.status == JobStatus::Leased
            && job.lease_owner.as_deref() == Some(self.worker_id.as_str());
        let token_ok = match &self.lease_token {
            Some(t) => job.lease_token.as_deref() == Some(t.as_str()),
            None => true,
        };
        let live = job.lease_until.is_some_and(|u| u >= now);
        match (self.lease_token.is_some(), held, token_ok, live) {
            (_, true, true, true) => Ok(()),
            // The token of the lease whose holder ended it (complete and fail keep it): a
            // second complete or fail.
            (true, false, true, _) if job.status != JobStatus::Leased => {
                Err(JobConflict::NotLeased)
            }
            // The caller held a lease and it is gone: expired, requeued or re-leased.
            (true, _, _, _) => Err(JobConflict::LeaseLost),
            (false, true, _, false) => Err(JobConflict::LeaseLost),
            _ => Err(JobConflict::NotLeased),
        }
    }
}

/// What a worker reports when a job failed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    pub retryable: bool,
    pub details: Option<Value>,
    /// Random jitter in [0, 1): the fraction of the 10 % jitter band to add.
    pub jitter: f64,
}

/// Backoff before retry number `attempts`: clamp(30 · 2^(attempts−1), 5, 1800) s plus up
/// to 10 % jitter (`jitter` in [0, 1)).
pub fn backoff(attempts: i64, jitter: f64) -> Duration {
    let exp = (attempts - 1).clamp(0, 30) as u32;
    let base = (30f64 * 2f64.powi(exp as i32)).clamp(5.0, 1800.0);
    let with_jitter = base * (1.0 + 0.1 * jitter.clamp(0.0, 1.0));
    Duration::milliseconds((with_jitter * 1000.0) as i64)
}

/// The result stored on a job that failed for good.
pub fn failure_result(error: &str, details: Option<&Value>) -> Value {
    serde_json::json!({ "error": error, "details": details.cloned().unwrap_or(Value::Null) })
}

/// What a worker reports for one job of an `ack` batch.
#[derive(Debug, Clone)]
pub enum AckOutcome {
    Complete(Option<Value>),
    Fail(Failure),
}

/// One item of an `ack` batch: judged exactly as its own `complete` or `fail` call.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: JobId,
    pub fence: Fence,
    pub outcome: AckOutcome,
}

/// The most items one `ack` call (and one bulk-action id list) may carry.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// An admin action applied to many jobs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Retry,
    Cancel,
}

impl BulkAction {
    /// The states the action applies to; jobs in any other state are left alone.
    pub fn from_states(self) -> &'static [JobStatus] {
        match self {
            BulkAction::Retry => &[JobStatus::Failed, JobStatus::Canceled],
            BulkAction::Cancel => &[JobStatus::Queued, JobStatus::Leased],
        }
    }

    /// The states a bulk pass selects: those the action allows, narrowed by `status`.
    pub fn selected_states(self, status: Option<JobStatus>) -> Vec<&'static str> {
        self.from_states()
            .iter()
            .filter(|s| status.is_none_or(|want| want == **s))
            .map(|s| s.as_str())
            .collect()
    }
}

/// Which jobs a bulk action looks at (at least one field is set).
#[derive(Debug, Clone, Default)]
pub struct BulkFilter {
    pub status: Option<JobStatus>,
    pub job_type: Option<JobType>,
    pub ids: Option<Vec<JobId>>,
}

impl BulkFilter {
    /// Whether no job can match (a status the action does not apply to, an empty id list).
    pub fn selects_nothing(&self, action: BulkAction) -> bool {
        action.selected_states(self.status).is_empty()
            || self.ids.as_ref().is_some_and(|ids| ids.is_empty())
    }
}

/// One bounded pass of a bulk action.
#[derive(Debug, Clone)]
pub struct BulkStep {
    /// Each changed job with the status it had before.
    pub changed: Vec<(JobStatus, Job)>,
    /// The insertion sequence to continue after, when more rows may match.
    pub next_after: Option<i64>,
}

impl BulkStep {
    /// A pass that changed nothing and is the last.
    pub fn done() -> Self {
        Self {
            changed: Vec::new(),
            next_after: None,
        }
    }
}

/// Filters of the admin job list, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub job_type: Option<JobType>,
    pub limit: usize,
    /// Exclusive upper bound on the store's insertion sequence.
    pub before_seq: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct JobPage {
    pub items: Vec<Job>,
    /// Sequence of the last item when more may follow.
    pub next_seq: Option<i64>,
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub id: i64,
    pub ts: Ts,
    pub event: String,
    pub details: Option<Value>,
}

impl JobEvent {
    /// Id of the `queued` entry that opens every history. It is not stored: a job's row
    /// records its creation (`created_at`), so enqueueing writes no event row. Stored
    /// events have positive ids, so it sorts first.
    pub const QUEUED_ID: i64 = 0;

    /// A job's whole history: its creation, then the events stored for its transitions
    /// (in id order). A `queued` row stored by an older version is dropped in favour of
    /// the one read from the job.
    pub fn history(job: &Job, stored: impl IntoIterator<Item = JobEvent>) -> Vec<JobEvent> {
        std::iter::once(JobEvent {
            id: Self::QUEUED_ID,
            ts: job.created_at,
            event: "queued".into(),
            details: None,
        })
        .chain(stored.into_iter().filter(|e| e.event != "queued"))
        .collect()
    }
}

/// Per-type counts for `GET /v1/worker/queues`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub job_type: String,
    pub queued: i64,
    pub leased: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub canceled: i64,
    pub oldest_queued_age_seconds: Option<f64>,
    pub leases_expired_total: i64,
    /// Queue controls: nothing of this type is leased while paused.
    pub paused: bool,
    /// At most this many of this type leased at once (every worker, process and node).
    pub max_leased: Option<i64>,
}

/// A lease the maintenance loop took back.
#[derive(Debug, Clone)]
pub struct Reclaimed {
    pub id: JobId,
    pub job_type: JobType,
    pub status: JobStatus,
}

/// Compares JSON values the way idempotency needs: numbers by value, keys in any order.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                i == j
            } else if let (Some(i), Some(j)) = (x.as_u64(), y.as_u64()) {
                i == j
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// An event to append to a job's history, produced by a transition.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event: &'static str,
    pub details: Option<Value>,
}

/// How a heartbeat goes into the history: a run of heartbeats is one event whose count
/// and time move.
#[derive(Debug, Clone, PartialEq)]
pub enum HeartbeatEvent {
    /// Rewrite the stored event `id` (the job's last, itself a heartbeat) with these details.
    Update { id: i64, details: Value },
    /// Append this event.
    Append(NewEvent),
}

impl HeartbeatEvent {
    /// `beat` is the event `Job::heartbeat` returned; `last` the job's last stored event
    /// (id, event, details).
    pub fn coalesce(beat: NewEvent, last: Option<(i64, String, Option<Value>)>) -> Self {
        match last {
            Some((id, event, details)) if event == "heartbeat" => {
                let count = details
                    .as_ref()
                    .and_then(|d| d.get("count").and_then(Value::as_i64))
                    .unwrap_or(1);
                let mut details = beat.details.unwrap_or(Value::Null);
                details["count"] = (count + 1).into();
                HeartbeatEvent::Update { id, details }
            }
            _ => HeartbeatEvent::Append(beat),
        }
    }
}

impl NewEvent {
    fn new(event: &'static str, details: Value) -> Self {
        Self {
            event,
            details: Some(details),
        }
    }

    /// The event of a lease: the worker, the attempt it starts, the lease's end (PostgreSQL's
    /// claim statements build the same details in SQL).
    pub fn leased(worker_id: &str, attempt: i64, lease_until: &str) -> Self {
        Self::new(
            "leased",
            serde_json::json!({
                "worker_id": worker_id, "attempt": attempt, "lease_until": lease_until,
            }),
        )
    }

    /// The event of a successful completion (also written by set-based completions).
    pub fn succeeded(worker_id: &str, attempt: i64) -> Self {
        Self::new(
            "succeeded",
            serde_json::json!({ "worker_id": worker_id, "attempt": attempt }),
        )
    }
}

/// The job state machine. Each method checks that the transition is allowed,
/// changes the job and returns the events to record in the same transaction. Both
/// backends load the row, call one of these and save the result, so the rules live once.
impl Job {
    /// The fence of the lease this job was handed out under, for the worker holding it.
    pub fn fence(&self, worker_id: &WorkerId) -> Fence {
        Fence {
            worker_id: worker_id.clone(),
            lease_token: self.lease_token.clone().map(LeaseToken),
        }
    }

    /// The row a newly enqueued job gets (every backend inserts exactly this).
    pub fn queued(nj: NewJob, now: Ts) -> Job {
        Job {
            id: nj.id.unwrap_or_default(),
            job_type: nj.job_type,
            status: JobStatus::Queued,
            priority: nj.priority,
            meta: nj.meta,
            input: nj.input,
            result: None,
            attempts: 0,
            max_attempts: nj.max_attempts,
            available_at: nj.available_at.unwrap_or(now),
            lease_owner: None,
            lease_until: None,
            lease_token: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn clear_lease(&mut self) {
        self.lease_owner = None;
        self.lease_until = None;
        self.lease_token = None;
    }

    /// The holder ends its own lease: the token stays on the row (it is never shown
    /// again), so that holder calling once more is told `job_not_leased` and the holder
    /// of any older, lost lease `lease_lost`.
    fn end_lease(&mut self) {
        self.lease_owner = None;
        self.lease_until = None;
    }

    /// The owner extends its lease.
    pub fn heartbeat(
        &mut self,
        fence: &Fence,
        lease_until: Ts,
        now: Ts,
    ) -> Result<NewEvent, JobConflict> {
        fence.check(self, now)?;
        self.lease_until = Some(lease_until);
        self.updated_at = now;
        Ok(NewEvent::new(
            "heartbeat",
            serde_json::json!({ "worker_id": fence.worker_id, "lease_until": super::time::format(&lease_until), "count": 1 }),
        ))
    }

    /// The owner reports success.
    pub fn complete(
        &mut self,
        fence: &Fence,
        result: Option<Value>,
        now: Ts,
    ) -> Result<Vec<NewEvent>, JobConflict> {
        fence.check(self, now)?;
        self.status = JobStatus::Succeeded;
        self.result = result;
        self.end_lease();
        self.updated_at = now;
        Ok(vec![NewEvent::succeeded(
            fence.worker_id.as_str(),
            self.attempts,
        )])
    }

    /// The owner reports failure: requeued with backoff when retryable and attempts
    /// remain, failed for good otherwise.
    pub fn fail(
        &mut self,
        fence: &Fence,
        failure: &Failure,
        now: Ts,
    ) -> Result<Vec<NewEvent>, JobConflict> {
        fence.check(self, now)?;
        let retry = failure.retryable && self.attempts < self.max_attempts;
        self.last_error = Some(failure.error.clone());
        self.end_lease();
        self.updated_at = now;
        let failed = NewEvent::new(
            "failed",
            serde_json::json!({
                "worker_id": fence.worker_id, "attempt": self.attempts, "error": failure.error,
                "retryable": failure.retryable, "details": failure.details,
            }),
        );
        if retry {
            self.status = JobStatus::Queued;
            self.available_at = now + backoff(self.attempts, failure.jitter);
            let requeued = NewEvent::new(
                "requeued",
                serde_json::json!({ "available_at": super::time::format(&self.available_at) }),
            );
            Ok(vec![failed, requeued])
        } else {
            self.status = JobStatus::Failed;
            self.result = Some(failure_result(&failure.error, failure.details.as_ref()));
            Ok(vec![failed])
        }
    }

    /// One item of an `ack` batch: the same rules as `complete` or `fail`.
    pub fn ack(&mut self, ack: &Ack, now: Ts) -> Result<Vec<NewEvent>, JobConflict> {
        match &ack.outcome {
            AckOutcome::Complete(result) => self.complete(&ack.fence, result.clone(), now),
            AckOutcome::Fail(failure) => self.fail(&ack.fence, failure, now),
        }
    }

    /// One job of a bulk action: the same rules as `retry` or `cancel`.
    pub fn bulk(&mut self, action: BulkAction, now: Ts) -> Result<Vec<NewEvent>, JobConflict> {
        match action {
            BulkAction::Retry => self.retry(now),
            BulkAction::Cancel => self.cancel(now),
        }
    }

    /// An admin cancels a queued or leased job.
    pub fn cancel(&mut self, now: Ts) -> Result<Vec<NewEvent>, JobConflict> {
        if !self.status.can_cancel() {
            return Err(JobConflict::InvalidStatus);
        }
        let was = self.status;
        self.status = JobStatus::Canceled;
        self.clear_lease();
        self.updated_at = now;
        Ok(vec![NewEvent::new(
            "canceled",
            serde_json::json!({ "from": was.as_str() }),
        )])
    }

    /// An admin sends a failed or canceled job back to the queue, available at once.
    pub fn retry(&mut self, now: Ts) -> Result<Vec<NewEvent>, JobConflict> {
        if !self.status.can_retry() {
            return Err(JobConflict::InvalidStatus);
        }
        let was = self.status;
        self.status = JobStatus::Queued;
        self.max_attempts = self.max_attempts.max(self.attempts + 1);
        self.available_at = now;
        self.result = None;
        self.clear_lease();
        self.updated_at = now;
        Ok(vec![NewEvent::new(
            "retried",
            serde_json::json!({ "from": was.as_str(), "max_attempts": self.max_attempts }),
        )])
    }

    /// A worker gives back a lease it did not start (graceful shutdown); the attempt it
    /// was charged is returned.
    pub fn release(&mut self, fence: &Fence, now: Ts) -> Result<Vec<NewEvent>, JobConflict> {
        fence.check(self, now)?;
        self.status = JobStatus::Queued;
        self.attempts = (self.attempts - 1).max(0);
        self.available_at = now;
        self.clear_lease();
        self.updated_at = now;
        Ok(vec![NewEvent::new(
            "released",
            serde_json::json!({ "worker_id": fence.worker_id }),
        )])
    }

    /// The lease ran out without a heartbeat: queued again at once, or failed when no
    /// attempts remain.
    pub fn expire(&mut self, now: Ts) -> Vec<NewEvent> {
        let owner = self.lease_owner.clone();
        self.clear_lease();
        self.last_error = Some("lease_expired".into());
        self.updated_at = now;
        if self.attempts >= self.max_attempts {
            self.status = JobStatus::Failed;
            self.result = Some(failure_result("lease_expired", None));
        } else {
            self.status = JobStatus::Queued;
            self.available_at = now;
        }
        vec![NewEvent::new(
            "expired",
            serde_json::json!({ "worker_id": owner, "attempt": self.attempts, "to": self.status.as_str() }),
        )]
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_run_of_heartbeats_is_one_event_whose_count_moves() {
        let beat = || {
            NewEvent::new(
                "heartbeat",
                serde_json::json!({ "worker_id": "w", "count": 1 }),
            )
        };
        assert_eq!(
            HeartbeatEvent::coalesce(beat(), None),
            HeartbeatEvent::Append(beat())
        );
        let leased = Some((7, "leased".to_string(), None));
        assert_eq!(
            HeartbeatEvent::coalesce(beat(), leased),
            HeartbeatEvent::Append(beat())
        );
        let last = Some((
            9,
            "heartbeat".to_string(),
            Some(serde_json::json!({ "count": 4 })),
        ));
        assert_eq!(
            HeartbeatEvent::coalesce(beat(), last),
            HeartbeatEvent::Update {
                id: 9,
                details: serde_json::json!({ "worker_id": "w", "count": 5 })
            }
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn backoff_follows_the_contract() {
        assert_eq!(backoff(1, 0.0), Duration::seconds(30));
        assert_eq!(backoff(2, 0.0), Duration::seconds(60));
        assert_eq!(backoff(20, 0.0), Duration::seconds(1800));
        assert_eq!(backoff(1, 0.999).num_milliseconds(), 32_997);
    }

    #[test]
    fn json_equal_compares_numbers_by_value_and_ignores_key_order() {
        assert!(json_equal(
            &json!({"a": 1, "b": [1.0]}),
            &json!({"b": [1], "a": 1.0})
        ));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 1})));
    }

    #[test]
    fn job_type_rules() {
        assert!(JobType::parse("type", "email.send:v2-x_y").is_ok());
        assert!(JobType::parse("type", "").is_err());
        assert!(JobType::parse("type", "a b").is_err());
        assert!(JobType::parse("type", &"a".repeat(201)).is_err());
    }
}
