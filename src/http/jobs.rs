//! `/v1/worker/jobs*` and `/v1/worker/queues`: DTOs, their parsing into domain types, and
//! thin handlers that call one `JobService` method each.

use super::auth::{Admin, WorkerOrAdmin};
use super::error::{ApiError, ApiResult};
use super::extract::{
    optional_object, page_limit, parse_batch, refused, JobIdPath, JsonBody, PathString, QueryParams,
};
use super::openapi::{Access, Api};
use super::views::Updated;
use super::AppState;
use crate::domain::schedule::max_leased;
use crate::domain::time::{self, serde_ts, Ts};
use crate::domain::worker_input::{self as input, Fields};
use crate::domain::{
    bounded_text, in_range, Ack, AckOutcome, BulkAction, BulkFilter, Claim, Enqueued, Failure,
    Fence, FieldError, Job, JobEvent, JobFilter, JobId, JobMeta, JobStatus, JobType, NewJob,
    WorkerId, MAX_BATCH_ITEMS,
};
use crate::service::Error;
use crate::telemetry::views::{QueueList, QueueView};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------- views ----------

/// A job as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    #[schema(example = "0191e3c1-0000-7000-8000-000000000000")]
    job_id: String,
    #[serde(rename = "type")]
    job_type: String,
    #[schema(value_type = String, example = "queued")]
    status: JobStatus,
    priority: i64,
    idempotency_key: Option<String>,
    code_version: Option<String>,
    model_version: Option<String>,
    config_hash: Option<String>,
    cost_cap_eur: Option<String>,
    budget_tag: Option<String>,
    #[schema(value_type = Object)]
    input: Value,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    attempts: i64,
    max_attempts: i64,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    available_at: Ts,
    lease_owner: Option<String>,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    lease_until: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_token: Option<String>,
    last_error: Option<String>,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Ts,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: Ts,
}

impl JobView {
    /// `with_token` only for lease responses and heartbeat responses to the owner.
    pub fn new(j: Job, with_token: bool) -> Self {
        Self {
            job_id: j.id.to_string(),
            job_type: j.job_type.as_str().to_string(),
            status: j.status,
            priority: j.priority,
            idempotency_key: j.meta.idempotency_key,
            code_version: j.meta.code_version,
            model_version: j.meta.model_version,
            config_hash: j.meta.config_hash,
            cost_cap_eur: j.meta.cost_cap_eur,
            budget_tag: j.meta.budget_tag,
            input: j.input,
            result: j.result,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            available_at: j.available_at,
            lease_owner: j.lease_owner,
            lease_until: j.lease_until,
            lease_token: if with_token { j.lease_token } else { None },
            last_error: j.last_error,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

fn view(j: Job) -> Json<JobView> {
    Json(JobView::new(j, false))
}

/// Jobs a batch enqueue created (or replayed), or a lease handed out.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = JobBatch)]
struct JobsView {
    jobs: Vec<JobView>,
}

/// A page of the job list, newest first; `next_cursor` fetches the next one.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = JobList)]
struct JobList {
    items: Vec<JobView>,
    next_cursor: Option<String>,
}

/// The answer to one item of `POST /v1/worker/jobs/ack`: the job, or why it was refused.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AckItemResult)]
struct AckItemView {
    job_id: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<JobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ItemError>,
}

/// Why one item of a batch was refused: the code and message its single call would give.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ItemError)]
struct ItemError {
    code: String,
    message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AckResult)]
struct AckView {
    items: Vec<AckItemView>,
}

// ---------- input ----------

/// A job to enqueue. `available_at` and `delay_seconds` exclude each other.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewJob)]
pub struct EnqueueBody {
    #[schema(example = "0191e3c1-0000-7000-8000-000000000000")]
    job_id: Option<String>,
    #[serde(rename = "type")]
    #[schema(required = true, value_type = String, pattern = "^[A-Za-z0-9._:-]{1,200}$", example = "email.send")]
    job_type: Option<String>,
    #[schema(required = true, value_type = Object, example = json!({}))]
    input: Option<Value>,
    #[schema(minimum = 0, maximum = 1000)]
    priority: Option<i64>,
    #[schema(minimum = 1, maximum = 100)]
    max_attempts: Option<i64>,
    #[schema(format = DateTime)]
    available_at: Option<String>,
    #[schema(minimum = 0, maximum = 31_536_000)]
    delay_seconds: Option<i64>,
    #[schema(max_length = 255)]
    idempotency_key: Option<String>,
    #[schema(max_length = 255)]
    code_version: Option<String>,
    #[schema(max_length = 255)]
    model_version: Option<String>,
    #[schema(max_length = 255)]
    config_hash: Option<String>,
    #[schema(pattern = "^[0-9]{1,15}([.][0-9]{1,6})?$", example = "10.50")]
    cost_cap_eur: Option<String>,
    #[schema(max_length = 255)]
    budget_tag: Option<String>,
}

fn opaque(
    errs: &mut Vec<FieldError>,
    field: &str,
    v: Option<String>,
    max: usize,
) -> Option<String> {
    let v = v?;
    match bounded_text(field, &v, 0, max) {
        Ok(()) => Some(v),
        Err(e) => {
            errs.push(e);
            None
        }
    }
}

/// `"10"`, `"10.5"`, `"0.005"`: digits, optionally a point and 1–6 more digits.
fn is_decimal(s: &str) -> bool {
    let digits = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
    };
    match s.split_once('.') {
        None => digits(s, 15),
        Some((int, frac)) => digits(int, 15) && digits(frac, 6),
    }
}

impl EnqueueBody {
    /// Parses into a `NewJob`, collecting every field error (prefixed for batch items).
    pub(super) fn parse(self, prefix: &str, now: Ts, errs: &mut Vec<FieldError>) -> Option<NewJob> {
        let before = errs.len();
        let f = |name: &str| format!("{prefix}{name}");
        let id = match self.job_id.as_deref() {
            None => None,
            Some(s) => match JobId::parse(s) {
                Some(id) => Some(id),
                None => {
                    errs.push(FieldError::new(f("job_id"), "must be a UUID"));
                    None
                }
            },
        };
        let job_type = match self.job_type.as_deref() {
            None => {
                errs.push(FieldError::new(f("type"), "is required"));
                None
            }
            Some(t) => JobType::parse(&f("type"), t).map_err(|e| errs.push(e)).ok(),
        };
        let input = match self.input {
            Some(v @ Value::Object(_)) => crate::domain::nesting_ok(&f("input"), &v)
                .map_err(|e| errs.push(e))
                .ok()
                .map(|()| v),
            None | Some(Value::Null) => {
                errs.push(FieldError::new(
                    f("input"),
                    "is required and must be a JSON object",
                ));
                None
            }
            Some(_) => {
                errs.push(FieldError::new(f("input"), "must be a JSON object"));
                None
            }
        };
        let priority = in_range(&f("priority"), self.priority.unwrap_or(5), 0, 1000)
            .map_err(|e| errs.push(e))
            .ok();
        let max_attempts = in_range(&f("max_attempts"), self.max_attempts.unwrap_or(3), 1, 100)
            .map_err(|e| errs.push(e))
            .ok();
        let available_at = match (self.available_at.as_deref(), self.delay_seconds) {
            (Some(_), Some(_)) => {
                errs.push(FieldError::new(
                    f("delay_seconds"),
                    "give either available_at or delay_seconds, not both",
                ));
                None
            }
            (Some(s), None) => match time::parse(s) {
                Some(t) => Some(t),
                None => {
                    errs.push(FieldError::new(
                        f("available_at"),
                        "must be an RFC 3339 timestamp with an offset",
                    ));
                    None
                }
            },
            (None, Some(d)) => in_range(&f("delay_seconds"), d, 0, 31_536_000)
                .map(|d| now + Duration::seconds(d))
                .map_err(|e| errs.push(e))
                .ok(),
            (None, None) => None,
        };
        let cost_cap_eur = opaque(errs, &f("cost_cap_eur"), self.cost_cap_eur, 64);
        if cost_cap_eur.as_deref().is_some_and(|c| !is_decimal(c)) {
            errs.push(FieldError::new(
                f("cost_cap_eur"),
                "must be a decimal string such as \"10.50\"",
            ));
        }
        let meta = JobMeta {
            idempotency_key: opaque(errs, &f("idempotency_key"), self.idempotency_key, 255),
            code_version: opaque(errs, &f("code_version"), self.code_version, 255),
            model_version: opaque(errs, &f("model_version"), self.model_version, 255),
            config_hash: opaque(errs, &f("config_hash"), self.config_hash, 255),
            budget_tag: opaque(errs, &f("budget_tag"), self.budget_tag, 255),
            cost_cap_eur,
        };
        if errs.len() != before {
            return None;
        }
        Some(NewJob {
            id,
            job_type: job_type?,
            priority: priority?,
            max_attempts: max_attempts?,
            available_at,
            meta,
            input: input?,
        })
    }
}

// ---------- handlers ----------

async fn enqueue(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JsonBody(body): JsonBody<EnqueueBody>,
) -> ApiResult<Response> {
    let mut errs = Vec::new();
    let new = match body.parse("", st.clock.now(), &mut errs) {
        Some(new) if errs.is_empty() => new,
        _ => return Err(refused(errs)),
    };
    let out = st.jobs.enqueue(vec![new]).await?;
    let one = out.into_iter().next().expect("one job in, one out");
    Ok(match one {
        Enqueued::Created(j) => (StatusCode::CREATED, view(j)).into_response(),
        Enqueued::Replayed(j) => {
            let mut r = (StatusCode::OK, view(j)).into_response();
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
    })
}

/// 1 to 1000 jobs, enqueued all or nothing.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewJobBatch)]
struct BatchBody {
    #[schema(required = true, value_type = Vec<EnqueueBody>, min_items = 1, max_items = 1000)]
    jobs: Option<Vec<Value>>,
}

async fn enqueue_batch(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JsonBody(body): JsonBody<BatchBody>,
) -> ApiResult<Response> {
    let now = st.clock.now();
    let new: Vec<NewJob> = parse_batch("jobs", body.jobs, 1000, |b: EnqueueBody, prefix, errs| {
        b.parse(prefix, now, errs)
    })?;
    let out = st.jobs.enqueue(new).await?;
    let jobs: Vec<JobView> = out
        .into_iter()
        .map(|e| JobView::new(e.into_job(), false))
        .collect();
    Ok((StatusCode::CREATED, Json(JobsView { jobs })).into_response())
}

async fn get_job(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JobIdPath(id): JobIdPath,
) -> ApiResult<Json<JobView>> {
    Ok(view(st.jobs.get(id).await?))
}

/// The most `job_types` one lease may name (each becomes a bound SQL parameter).
const MAX_LEASE_TYPES: usize = 1000;

/// A lease request.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Lease)]
struct LeaseBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, example = "worker-1")]
    worker_id: Option<String>,
    /// Types to lease (none or empty: any).
    #[schema(max_items = 1000)]
    job_types: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[schema(minimum = 1, maximum = 3600)]
    lease_seconds: Option<i64>,
    #[schema(minimum = 0, maximum = 30000)]
    wait_ms: Option<i64>,
}

/// A lease request: the claim, and how long to wait for work.
impl TryFrom<LeaseBody> for (Claim, std::time::Duration) {
    type Error = Vec<FieldError>;

    fn try_from(b: LeaseBody) -> Result<Self, Self::Error> {
        let mut f = Fields::default();
        let worker = f.take(input::worker_id(b.worker_id));
        let job_types = b.job_types.unwrap_or_default();
        let types: Vec<JobType> = if job_types.len() > MAX_LEASE_TYPES {
            f.push(FieldError::new(
                "job_types",
                format!("must hold at most {MAX_LEASE_TYPES} types"),
            ));
            Vec::new()
        } else {
            job_types
                .iter()
                .enumerate()
                .filter_map(|(i, t)| f.take(JobType::parse(&format!("job_types[{i}]"), t)))
                .collect()
        };
        let limit = f.take(input::lease_limit(b.limit));
        let lease = f.take(input::lease_seconds(b.lease_seconds));
        let wait = f.take(input::wait_ms(b.wait_ms));
        let built = match (worker, limit, lease, wait) {
            (Some(worker_id), Some(limit), Some(lease), Some(wait)) => Some((
                Claim {
                    worker_id,
                    types,
                    limit,
                    lease,
                },
                wait,
            )),
            _ => None,
        };
        f.finish(built)
    }
}

async fn lease(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JsonBody(b): JsonBody<LeaseBody>,
) -> ApiResult<Json<JobsView>> {
    let (claim, wait) = checked(b)?;
    let jobs = st.jobs.lease(claim, wait).await?;
    let jobs: Vec<JobView> = jobs.into_iter().map(|j| JobView::new(j, true)).collect();
    Ok(Json(JobsView { jobs }))
}

/// Converts a body into what its handler needs, every field error in one 400.
fn checked<B, T: TryFrom<B, Error = Vec<FieldError>>>(b: B) -> Result<T, ApiError> {
    T::try_from(b).map_err(refused)
}

/// Who says they hold a lease: every worker call but lease carries these two fields.
fn fence(f: &mut Fields, worker_id: Option<String>, lease_token: Option<String>) -> Option<Fence> {
    let worker = f.take(input::worker_id(worker_id));
    let token = f.take(input::lease_token(lease_token));
    Some(Fence {
        worker_id: worker?,
        lease_token: token?,
    })
}

/// Extends a lease.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Heartbeat)]
struct HeartbeatBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, example = "worker-1")]
    worker_id: Option<String>,
    #[schema(minimum = 1, maximum = 3600)]
    lease_seconds: Option<i64>,
    #[schema(max_length = 200)]
    lease_token: Option<String>,
}

impl TryFrom<HeartbeatBody> for (Fence, Duration) {
    type Error = Vec<FieldError>;

    fn try_from(b: HeartbeatBody) -> Result<Self, Self::Error> {
        let mut f = Fields::default();
        let fence = fence(&mut f, b.worker_id, b.lease_token);
        let lease = f.take(input::lease_seconds(b.lease_seconds));
        f.finish(fence.zip(lease))
    }
}

async fn heartbeat(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JobIdPath(id): JobIdPath,
    JsonBody(b): JsonBody<HeartbeatBody>,
) -> ApiResult<Json<JobView>> {
    let (fence, lease) = checked(b)?;
    let job = st.jobs.heartbeat(id, fence, lease).await?;
    Ok(Json(JobView::new(job, true)))
}

/// Completes a leased job.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Complete)]
struct CompleteBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, example = "worker-1")]
    worker_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    #[schema(max_length = 200)]
    lease_token: Option<String>,
}

impl TryFrom<CompleteBody> for (Fence, Option<Value>) {
    type Error = Vec<FieldError>;

    fn try_from(b: CompleteBody) -> Result<Self, Self::Error> {
        let mut f = Fields::default();
        let fence = fence(&mut f, b.worker_id, b.lease_token);
        let result = f.take(input::optional_object("result", b.result));
        f.finish(fence.zip(result))
    }
}

async fn complete(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JobIdPath(id): JobIdPath,
    JsonBody(b): JsonBody<CompleteBody>,
) -> ApiResult<Json<JobView>> {
    let (fence, result) = checked(b)?;
    Ok(view(st.jobs.complete(id, fence, result).await?))
}

/// Gives a lease back unused.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Release)]
struct ReleaseBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, example = "worker-1")]
    worker_id: Option<String>,
    #[schema(max_length = 200)]
    lease_token: Option<String>,
}

impl TryFrom<ReleaseBody> for Fence {
    type Error = Vec<FieldError>;

    fn try_from(b: ReleaseBody) -> Result<Self, Self::Error> {
        let mut f = Fields::default();
        let fence = fence(&mut f, b.worker_id, b.lease_token);
        f.finish(fence)
    }
}

/// Gives a lease back unused: the job is queued again at once and the attempt does not
/// count (a worker that stops before it starts, or gives up a job it cannot run now).
async fn release(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JobIdPath(id): JobIdPath,
    JsonBody(b): JsonBody<ReleaseBody>,
) -> ApiResult<Json<JobView>> {
    let fence: Fence = checked(b)?;
    Ok(view(st.jobs.release(id, fence).await?))
}

/// Fails a leased job (retried with backoff when retryable and attempts remain).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Fail)]
struct FailBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, example = "worker-1")]
    worker_id: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, max_length = 10000, example = "SMTP 451")]
    error: Option<String>,
    retryable: Option<bool>,
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
    #[schema(max_length = 200)]
    lease_token: Option<String>,
}

/// A failure report: who holds the lease, the error, whether to retry, and details.
impl TryFrom<FailBody> for (Fence, String, bool, Option<Value>) {
    type Error = Vec<FieldError>;

    fn try_from(b: FailBody) -> Result<Self, Self::Error> {
        let mut f = Fields::default();
        let fence = fence(&mut f, b.worker_id, b.lease_token);
        let error = f.take(input::failure_message("error", b.error));
        let details = f.take(input::optional_object("details", b.details));
        let built = match (fence, error, details) {
            (Some(fence), Some(error), Some(details)) => {
                Some((fence, error, b.retryable.unwrap_or(false), details))
            }
            _ => None,
        };
        f.finish(built)
    }
}

async fn fail(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JobIdPath(id): JobIdPath,
    JsonBody(b): JsonBody<FailBody>,
) -> ApiResult<Json<JobView>> {
    let (fence, error, retryable, details) = checked(b)?;
    Ok(view(
        st.jobs.fail(id, fence, error, retryable, details).await?,
    ))
}

/// Completes or fails many leased jobs, answered per item.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Ack)]
struct AckBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, example = "worker-1")]
    worker_id: Option<String>,
    #[schema(required = true, value_type = Vec<AckItemBody>, min_items = 1, max_items = 1000)]
    items: Option<Vec<Value>>,
}

/// One job of an ack (`error` is required when `outcome` is `fail`).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AckItem)]
struct AckItemBody {
    #[schema(required = true, value_type = String, example = "0191e3c1-0000-7000-8000-000000000000")]
    job_id: Option<String>,
    #[schema(max_length = 200)]
    lease_token: Option<String>,
    #[schema(required = true, value_type = String, pattern = "^(complete|fail)$", example = "complete")]
    outcome: Option<String>,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    #[schema(max_length = 10000)]
    error: Option<String>,
    retryable: Option<bool>,
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
}

impl AckItemBody {
    fn parse(self, prefix: &str, worker: &WorkerId, errs: &mut Vec<FieldError>) -> Option<Ack> {
        let before = errs.len();
        let f = |name: &str| format!("{prefix}{name}");
        let id = match self.job_id.as_deref() {
            None => {
                errs.push(FieldError::new(f("job_id"), "is required"));
                None
            }
            Some(s) => JobId::parse(s).or_else(|| {
                errs.push(FieldError::new(f("job_id"), "must be a UUID"));
                None
            }),
        };
        let token = input::lease_token_at(&f("lease_token"), self.lease_token)
            .map_err(|e| errs.push(e))
            .ok()
            .flatten();
        let outcome = match self.outcome.as_deref() {
            None => {
                errs.push(FieldError::new(f("outcome"), "is required"));
                None
            }
            Some("complete") => Some(AckOutcome::Complete(optional_object(
                errs,
                &f("result"),
                self.result,
            ))),
            Some("fail") => {
                let error = input::failure_message(&f("error"), self.error)
                    .map_err(|e| errs.push(e))
                    .ok();
                let details = optional_object(errs, &f("details"), self.details);
                error.map(|error| {
                    AckOutcome::Fail(Failure {
                        error,
                        retryable: self.retryable.unwrap_or(false),
                        details,
                        jitter: rand::random::<f64>(),
                    })
                })
            }
            Some(_) => {
                errs.push(FieldError::new(f("outcome"), "must be complete or fail"));
                None
            }
        };
        if errs.len() != before {
            return None;
        }
        Some(Ack {
            id: id?,
            fence: Fence {
                worker_id: worker.clone(),
                lease_token: token,
            },
            outcome: outcome?,
        })
    }
}

/// `POST /v1/worker/jobs/ack`: per-item answers, in the order given.
async fn ack(
    State(st): State<AppState>,
    _auth: WorkerOrAdmin,
    JsonBody(b): JsonBody<AckBody>,
) -> ApiResult<Json<AckView>> {
    let worker =
        input::worker_id(b.worker_id).map_err(|e| ApiError::invalid_field(&e.field, &e.message))?;
    let acks: Vec<Ack> = parse_batch("items", b.items, MAX_BATCH_ITEMS, |i: AckItemBody, p, e| {
        i.parse(p, &worker, e)
    })?;
    let ids: Vec<JobId> = acks.iter().map(|a| a.id).collect();
    let answers = st.jobs.ack(acks).await?;
    let items: Vec<AckItemView> = ids
        .into_iter()
        .zip(answers)
        .map(|(id, answer)| match answer {
            Ok(job) => AckItemView {
                job_id: id.to_string(),
                ok: true,
                job: Some(JobView::new(job, false)),
                error: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                AckItemView {
                    job_id: id.to_string(),
                    ok: false,
                    job: None,
                    error: Some(ItemError {
                        code: e.code.to_string(),
                        message: e.message,
                    }),
                }
            }
        })
        .collect();
    Ok(Json(AckView { items }))
}

/// Which jobs a bulk action applies to (at least one field).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = BulkFilter, example = json!({"status": "failed"}))]
struct BulkBody {
    #[schema(
        example = "failed",
        pattern = "^(queued|leased|succeeded|failed|canceled)$"
    )]
    status: Option<String>,
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,200}$")]
    job_type: Option<String>,
    #[schema(min_items = 1, max_items = 1000)]
    job_ids: Option<Vec<String>>,
}

impl BulkBody {
    fn parse(self) -> Result<BulkFilter, Error> {
        let mut errs = Vec::new();
        if self.status.is_none() && self.job_type.is_none() && self.job_ids.is_none() {
            return Err(Error::field(
                "status",
                "give at least one of status, type and job_ids",
            ));
        }
        let status = self.status.as_deref().and_then(|s| {
            s.parse::<JobStatus>()
                .map_err(|_| {
                    errs.push(FieldError::new(
                        "status",
                        "must be one of queued, leased, succeeded, failed, canceled",
                    ))
                })
                .ok()
        });
        let job_type = self
            .job_type
            .as_deref()
            .and_then(|t| JobType::parse("type", t).map_err(|e| errs.push(e)).ok());
        let ids = match self.job_ids {
            None => None,
            Some(ids) if ids.is_empty() || ids.len() > MAX_BATCH_ITEMS => {
                errs.push(FieldError::new(
                    "job_ids",
                    format!("must hold 1 to {MAX_BATCH_ITEMS} ids"),
                ));
                None
            }
            Some(ids) => Some(
                ids.iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        JobId::parse(s).or_else(|| {
                            errs.push(FieldError::new(format!("job_ids[{i}]"), "must be a UUID"));
                            None
                        })
                    })
                    .collect(),
            ),
        };
        if !errs.is_empty() {
            return Err(Error::invalid(errs));
        }
        Ok(BulkFilter {
            status,
            job_type,
            ids,
        })
    }
}

async fn bulk(st: AppState, action: BulkAction, b: BulkBody) -> ApiResult<Json<Updated>> {
    let updated = st.jobs.bulk(action, b.parse()?).await?;
    Ok(Json(Updated { updated }))
}

async fn bulk_retry(
    State(st): State<AppState>,
    _auth: Admin,
    JsonBody(b): JsonBody<BulkBody>,
) -> ApiResult<Json<Updated>> {
    bulk(st, BulkAction::Retry, b).await
}

async fn bulk_cancel(
    State(st): State<AppState>,
    _auth: Admin,
    JsonBody(b): JsonBody<BulkBody>,
) -> ApiResult<Json<Updated>> {
    bulk(st, BulkAction::Cancel, b).await
}

/// The job list's filters and paging (read as text, then parsed with field errors).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only jobs in this status.
    #[param(pattern = "^(queued|leased|succeeded|failed|canceled)$")]
    status: Option<String>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    job_type: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    _auth: Admin,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<JobList>> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<JobStatus>().map_err(|_| {
            ApiError::invalid_field(
                "status",
                "must be one of queued, leased, succeeded, failed, canceled",
            )
        })?),
    };
    let job_type = match q.job_type.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(t) => Some(JobType::parse("type", t).map_err(|e| Error::invalid(vec![e]))?),
    };
    let before_seq = match q.cursor.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(c) => Some(
            i64::from_str_radix(c, 16)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError::invalid_field("cursor", "is not a cursor this API gave out")
                })?,
        ),
    };
    let filter = JobFilter {
        status,
        job_type,
        limit: page_limit(q.limit.as_deref())?,
        before_seq,
    };
    let page = st.jobs.list(filter).await?;
    let items: Vec<JobView> = page
        .items
        .into_iter()
        .map(|j| JobView::new(j, false))
        .collect();
    Ok(Json(JobList {
        items,
        next_cursor: page.next_seq.map(|s| format!("{s:x}")),
    }))
}

/// One entry of a job's history. The first is always `queued` (id 0, the job's creation);
/// the rest have increasing positive ids.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = JobEvent)]
struct EventView {
    id: i64,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    ts: Ts,
    #[schema(example = "leased")]
    event: String,
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = JobEventList)]
struct EventList {
    items: Vec<EventView>,
}

impl From<JobEvent> for EventView {
    fn from(e: JobEvent) -> Self {
        Self {
            id: e.id,
            ts: e.ts,
            event: e.event,
            details: e.details,
        }
    }
}

async fn events(
    State(st): State<AppState>,
    _auth: Admin,
    JobIdPath(id): JobIdPath,
) -> ApiResult<Json<EventList>> {
    let items: Vec<EventView> = st
        .jobs
        .events(id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(EventList { items }))
}

async fn cancel(
    State(st): State<AppState>,
    _auth: Admin,
    JobIdPath(id): JobIdPath,
) -> ApiResult<Json<JobView>> {
    Ok(view(st.jobs.cancel(id).await?))
}

async fn retry(
    State(st): State<AppState>,
    _auth: Admin,
    JobIdPath(id): JobIdPath,
) -> ApiResult<Json<JobView>> {
    Ok(view(st.jobs.retry(id).await?))
}

fn queue_type(PathString(raw): PathString) -> Result<JobType, Error> {
    JobType::parse("type", &raw).map_err(|e| Error::invalid(vec![e]))
}

async fn pause(
    State(st): State<AppState>,
    _auth: Admin,
    path: PathString,
) -> ApiResult<Json<QueueView>> {
    let q = st.jobs.control(queue_type(path)?, Some(true), None).await?;
    Ok(Json(QueueView::from(&q)))
}

async fn resume(
    State(st): State<AppState>,
    _auth: Admin,
    path: PathString,
) -> ApiResult<Json<QueueView>> {
    let q = st
        .jobs
        .control(queue_type(path)?, Some(false), None)
        .await?;
    Ok(Json(QueueView::from(&q)))
}

/// `{"max_leased": n | null}`: the field must be there (null removes the limit).
/// A job type's concurrency limit (`null` removes it).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = QueueLimits)]
struct LimitsBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, value_type = Option<i64>, minimum = 0, maximum = 1_000_000, example = 3)]
    max_leased: Option<Option<i64>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

async fn limits(
    State(st): State<AppState>,
    _auth: Admin,
    path: PathString,
    JsonBody(b): JsonBody<LimitsBody>,
) -> ApiResult<Json<QueueView>> {
    let job_type = queue_type(path)?;
    let Some(max) = b.max_leased else {
        return Err(Error::field("max_leased", "is required (null removes the limit)").into());
    };
    let max = max_leased(max).map_err(|e| Error::invalid(vec![e]))?;
    let q = st.jobs.control(job_type, None, Some(max)).await?;
    Ok(Json(QueueView::from(&q)))
}

async fn queues(State(st): State<AppState>, _auth: Admin) -> ApiResult<Json<QueueList>> {
    let items: Vec<QueueView> = st
        .jobs
        .queues()
        .await?
        .iter()
        .map(QueueView::from)
        .collect();
    Ok(Json(QueueList { items }))
}

pub fn router() -> Api {
    use Access::{Admin as A, Worker as W};
    Api::new("jobs")
        .post(
            "/v1/worker/jobs",
            enqueue,
            "Enqueue a job (idempotency key, delay, priority)",
            W,
        )
        .body::<EnqueueBody>()
        .returns::<JobView>(201)
        .returns::<JobView>(200)
        .get(
            "/v1/worker/jobs",
            list,
            "List jobs, newest first (status, type, cursor)",
            A,
        )
        .query::<ListQuery>()
        .returns::<JobList>(200)
        .post(
            "/v1/worker/jobs/batch",
            enqueue_batch,
            "Enqueue 1 to 1000 jobs, all or nothing",
            W,
        )
        .body::<BatchBody>()
        .returns::<JobsView>(201)
        .post(
            "/v1/worker/jobs/lease",
            lease,
            "Lease ready jobs (long poll with wait_ms)",
            W,
        )
        .body::<LeaseBody>()
        .returns::<JobsView>(200)
        .post(
            "/v1/worker/jobs/ack",
            ack,
            "Complete or fail 1 to 1000 leased jobs, answered per item",
            W,
        )
        .body::<AckBody>()
        .returns::<AckView>(200)
        .post(
            "/v1/worker/jobs/actions/retry",
            bulk_retry,
            "Retry every failed or canceled job matching a filter",
            A,
        )
        .body::<BulkBody>()
        .returns::<Updated>(200)
        .post(
            "/v1/worker/jobs/actions/cancel",
            bulk_cancel,
            "Cancel every queued or leased job matching a filter",
            A,
        )
        .body::<BulkBody>()
        .returns::<Updated>(200)
        .get("/v1/worker/jobs/{job_id}", get_job, "One job", W)
        .returns::<JobView>(200)
        .post(
            "/v1/worker/jobs/{job_id}/heartbeat",
            heartbeat,
            "Extend a lease",
            W,
        )
        .body::<HeartbeatBody>()
        .returns::<JobView>(200)
        .post(
            "/v1/worker/jobs/{job_id}/complete",
            complete,
            "Complete a leased job",
            W,
        )
        .body::<CompleteBody>()
        .returns::<JobView>(200)
        .post(
            "/v1/worker/jobs/{job_id}/fail",
            fail,
            "Fail a leased job (retry with backoff when retryable)",
            W,
        )
        .body::<FailBody>()
        .returns::<JobView>(200)
        .post(
            "/v1/worker/jobs/{job_id}/release",
            release,
            "Give a lease back unused: queued again at once, the attempt not counted",
            W,
        )
        .body::<ReleaseBody>()
        .returns::<JobView>(200)
        .get(
            "/v1/worker/jobs/{job_id}/events",
            events,
            "A job's event history",
            A,
        )
        .returns::<EventList>(200)
        .post(
            "/v1/worker/jobs/{job_id}/cancel",
            cancel,
            "Cancel a queued or leased job",
            A,
        )
        .returns::<JobView>(200)
        .post(
            "/v1/worker/jobs/{job_id}/retry",
            retry,
            "Retry a failed or canceled job",
            A,
        )
        .returns::<JobView>(200)
        .get(
            "/v1/worker/queues",
            queues,
            "Counts per job type and status, with each type's controls",
            A,
        )
        .returns::<QueueList>(200)
        .post(
            "/v1/worker/queues/{type}/pause",
            pause,
            "Pause a job type: none of its jobs is leased until it is resumed",
            A,
        )
        .returns::<QueueView>(200)
        .post(
            "/v1/worker/queues/{type}/resume",
            resume,
            "Resume a paused job type",
            A,
        )
        .returns::<QueueView>(200)
        .put(
            "/v1/worker/queues/{type}/limits",
            limits,
            "Set (or with null remove) how many jobs of a type may be leased at once",
            A,
        )
        .body::<LimitsBody>()
        .returns::<QueueView>(200)
}
