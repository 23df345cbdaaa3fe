//! `/v1/worker/schedules*`: recurring jobs on a cron calendar (admin only).

use super::auth::Admin;
use super::error::ApiError;
use super::error::ApiResult;
use super::extract::{page_limit, refused, JsonBody, PathString, QueryParams};
use super::jobs::{EnqueueBody, JobView};
use super::openapi::{Access, Api};
use super::AppState;
use crate::domain::schedule::{
    cron_text, Calendar, JobTemplate, Overlap, Schedule, ScheduleName, ScheduleSpec,
};
use crate::domain::time::{serde_ts, Ts};
use crate::domain::{FieldError, JobId};
use crate::service::Error;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A schedule as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Schedule)]
pub struct ScheduleView {
    name: String,
    cron: String,
    timezone: String,
    /// The enqueue body each run uses.
    #[schema(value_type = Object)]
    job: JobTemplate,
    enabled: bool,
    #[schema(value_type = String, example = "skip")]
    overlap: Overlap,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    next_run_at: Option<Ts>,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_run_at: Option<Ts>,
    last_job_id: Option<String>,
    runs_total: i64,
    skipped_total: i64,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Ts,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: Ts,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> Self {
        Self {
            name: s.name.as_str().to_string(),
            cron: s.cron,
            timezone: s.timezone,
            job: s.job,
            enabled: s.enabled,
            overlap: s.overlap,
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_job_id: s.last_job_id.map(|j: JobId| j.to_string()),
            runs_total: s.runs_total,
            skipped_total: s.skipped_total,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A schedule to create or replace.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ScheduleSpec)]
struct ScheduleBody {
    /// 5 fields, 6 with seconds first, a macro (`@daily`) or `@every <duration>`.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200, example = "@daily")]
    cron: Option<String>,
    /// An IANA time zone (default UTC).
    #[schema(example = "Europe/Berlin")]
    timezone: Option<String>,
    /// An enqueue body without job_id, available_at, delay_seconds or idempotency_key.
    #[schema(required = true, value_type = EnqueueBody)]
    job: Option<Value>,
    enabled: Option<bool>,
    #[schema(pattern = "^(skip|allow)$", example = "skip")]
    overlap: Option<String>,
}

/// Fields of an enqueue body a schedule sets itself (each run has its own id, time and
/// idempotency key).
const NOT_IN_TEMPLATE: [&str; 4] = ["job_id", "available_at", "delay_seconds", "idempotency_key"];

impl ScheduleBody {
    /// Parses into a spec, collecting every field error.
    fn parse(self, name: ScheduleName, now: Ts) -> Result<ScheduleSpec, ApiError> {
        let mut errs = Vec::new();
        let cron = match self.cron {
            None => {
                errs.push(FieldError::new("cron", "is required"));
                None
            }
            Some(c) => cron_text(&c).map_err(|e| errs.push(e)).ok().map(|()| c),
        };
        let timezone = self.timezone.unwrap_or_else(|| "UTC".to_string());
        let calendar = match &cron {
            Some(c) => Calendar::parse(c, &timezone)
                .map_err(|e| errs.extend(e))
                .ok(),
            None => timezone
                .parse::<chrono_tz::Tz>()
                .map_err(|_| {
                    errs.push(FieldError::new(
                        "timezone",
                        "must be an IANA time zone name such as UTC or Europe/Berlin",
                    ))
                })
                .ok()
                .and(None),
        };
        if calendar
            .as_ref()
            .is_some_and(|c| c.next_after(now, now).is_none())
        {
            errs.push(FieldError::new(
                "cron",
                "never matches a time (no next run)",
            ));
        }
        let job = match self.job {
            Some(Value::Object(mut map)) => {
                for f in NOT_IN_TEMPLATE {
                    if map.remove(f).is_some() {
                        errs.push(FieldError::new(
                            format!("job.{f}"),
                            "is set by the schedule for each run, not in its job",
                        ));
                    }
                }
                match serde_path_to_error::deserialize::<_, EnqueueBody>(Value::Object(map)) {
                    Ok(b) => b
                        .parse("job.", now, &mut errs)
                        .map(JobTemplate::from_new_job),
                    Err(e) => {
                        errs.push(FieldError::new(
                            format!("job.{}", e.path()),
                            e.into_inner().to_string(),
                        ));
                        None
                    }
                }
            }
            None | Some(Value::Null) => {
                errs.push(FieldError::new("job", "is required"));
                None
            }
            Some(_) => {
                errs.push(FieldError::new(
                    "job",
                    "must be an object (an enqueue body)",
                ));
                None
            }
        };
        let overlap = match self.overlap.as_deref() {
            None => Some(Overlap::Skip),
            Some(o) => Overlap::parse(o).or_else(|| {
                errs.push(FieldError::new("overlap", "must be skip or allow"));
                None
            }),
        };
        let built = match (cron, calendar, job, overlap) {
            (Some(cron), Some(calendar), Some(job), Some(overlap)) => Some(ScheduleSpec {
                name,
                cron: cron.trim().to_string(),
                timezone,
                calendar,
                job,
                enabled: self.enabled.unwrap_or(true),
                overlap,
            }),
            _ => None,
        };
        match built {
            Some(spec) if errs.is_empty() => Ok(spec),
            _ => Err(refused(errs)),
        }
    }
}

fn name(PathString(raw): PathString) -> Result<ScheduleName, Error> {
    ScheduleName::parse("name", &raw).map_err(|e| Error::invalid(vec![e]))
}

async fn put(
    State(st): State<AppState>,
    _auth: Admin,
    path: PathString,
    JsonBody(body): JsonBody<ScheduleBody>,
) -> ApiResult<Json<ScheduleView>> {
    let spec = body.parse(name(path)?, st.clock.now())?;
    let (schedule, _created) = st.schedules.put(spec).await?;
    Ok(Json(schedule.into()))
}

async fn get_one(
    State(st): State<AppState>,
    _auth: Admin,
    path: PathString,
) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(st.schedules.get(name(path)?).await?.into()))
}

async fn delete_one(
    State(st): State<AppState>,
    _auth: Admin,
    path: PathString,
) -> ApiResult<StatusCode> {
    st.schedules.delete(name(path)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn trigger(
    State(st): State<AppState>,
    _auth: Admin,
    path: PathString,
) -> ApiResult<Response> {
    let job = st.schedules.trigger(name(path)?).await?;
    Ok((StatusCode::CREATED, Json(JobView::new(job, false))).into_response())
}

/// The schedule list's paging.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
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
) -> ApiResult<Json<ScheduleList>> {
    let limit = page_limit(q.limit.as_deref())?;
    // The cursor is the last name of the previous page (names are printable ASCII).
    let after = match q.cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            ScheduleName::parse("cursor", &c)
                .map_err(|_| Error::field("cursor", "is not a cursor this API gave out"))?
                .as_str()
                .to_string(),
        ),
    };
    let page = st.schedules.list(after, limit).await?;
    let items: Vec<ScheduleView> = page.items.into_iter().map(Into::into).collect();
    Ok(Json(ScheduleList {
        items,
        next_cursor: page.next_after,
    }))
}

/// A page of schedules by name; `next_cursor` fetches the next one.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ScheduleList)]
struct ScheduleList {
    items: Vec<ScheduleView>,
    next_cursor: Option<String>,
}

pub fn router() -> Api {
    use Access::Admin as A;
    Api::new("schedules")
        .get(
            "/v1/worker/schedules",
            list,
            "List schedules by name (limit, cursor)",
            A,
        )
        .query::<ListQuery>()
        .returns::<ScheduleList>(200)
        .put(
            "/v1/worker/schedules/{name}",
            put,
            "Create or replace a schedule (cron, timezone, job, enabled, overlap)",
            A,
        )
        .body::<ScheduleBody>()
        .returns::<ScheduleView>(200)
        .get("/v1/worker/schedules/{name}", get_one, "One schedule", A)
        .returns::<ScheduleView>(200)
        .delete(
            "/v1/worker/schedules/{name}",
            delete_one,
            "Delete a schedule (its jobs stay)",
            A,
        )
        .no_content()
        .post(
            "/v1/worker/schedules/{name}/actions/trigger",
            trigger,
            "Enqueue the schedule's job now, outside its calendar",
            A,
        )
        .returns::<JobView>(201)
}
