//! Broadcast admin routes, under `/v1/admin/notifications/broadcasts` and the original
//! platform's `/v1/notifications/admin/broadcasts`.

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{
    page_limit, page_offset, search_query, JsonBody, OffsetPage, PathString, QueryPairs, Search,
};
use super::openapi::{Access, Api};
use super::AppState;
use crate::domain::notify::{
    Audience, Broadcast, BroadcastDraft, BroadcastFilter, BroadcastStatus,
};
use crate::domain::time::{self, serde_ts, Ts};
use crate::domain::{bounded_text, FieldError};
use crate::service::Error;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A broadcast with its delivery counters.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Broadcast)]
pub struct BroadcastView {
    #[schema(example = "0196a1f3-0c2d-7e45-8a11-5d9b7e3f2c01")]
    id: String,
    title: String,
    body: String,
    /// As given (`type` and its fields); in a list, an explicit audience shows its first
    /// 100 ids, `user_count`, and `user_ids_truncated` when there are more.
    #[schema(value_type = Object)]
    audience: Value,
    #[schema(value_type = String, pattern = "^(draft|scheduled|sending|sent|failed|cancelled)$", example = "draft")]
    status: BroadcastStatus,
    created_by: String,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Ts,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: Ts,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    scheduled_at: Option<Ts>,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<Ts>,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<Ts>,
    total: i64,
    sent: i64,
    failed: i64,
    skipped: i64,
    last_error: Option<String>,
}

/// How many ids of an explicit audience a list view shows (the broadcast's own view shows
/// them all).
const LISTED_USER_IDS: usize = 100;

impl BroadcastView {
    /// The view in a list: an explicit audience shows its first ids and how many there
    /// are, not up to 100 000 ids per row.
    fn listed(b: Broadcast) -> Self {
        let mut v = Self::from(b);
        if let Some(ids) = v
            .audience
            .get("user_ids")
            .and_then(Value::as_array)
            .cloned()
        {
            v.audience["user_count"] = json!(ids.len());
            if ids.len() > LISTED_USER_IDS {
                v.audience["user_ids"] = Value::Array(ids[..LISTED_USER_IDS].to_vec());
                v.audience["user_ids_truncated"] = json!(true);
            }
        }
        v
    }
}

impl From<Broadcast> for BroadcastView {
    fn from(b: Broadcast) -> Self {
        Self {
            id: b.id.to_string(),
            title: b.title,
            body: b.body,
            audience: b.audience.to_json(),
            status: b.status,
            created_by: b.created_by,
            created_at: b.created_at,
            updated_at: b.updated_at,
            scheduled_at: b.scheduled_at,
            started_at: b.started_at,
            finished_at: b.finished_at,
            total: b.total,
            sent: b.sent,
            failed: b.failed,
            skipped: b.skipped,
            last_error: b.last_error,
        }
    }
}

/// Who a broadcast reaches, as the API takes it (documentation only: the body is read as
/// JSON and checked by `Audience::parse`).
#[derive(utoipa::ToSchema)]
#[schema(as = Audience)]
#[allow(dead_code)]
struct AudienceDoc {
    /// `all_users`, `explicit_users` (with `user_ids`) or `segment` (with `filters`).
    #[schema(
        rename = "type",
        pattern = "^(all_users|explicit_users|segment)$",
        example = "all_users"
    )]
    kind: String,
    /// The users of an `explicit_users` audience.
    user_ids: Option<Vec<String>>,
    /// Attribute filters of a `segment` audience (`{"plan": "pro"}`, lists for any-of).
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
}

/// A broadcast's content, audience and optional time.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = BroadcastDraft)]
struct DraftBody {
    #[schema(required = true, value_type = String, min_length = 1, example = "Feature launch")]
    title: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, example = "We are live!")]
    body: Option<String>,
    #[schema(required = true, value_type = AudienceDoc)]
    audience: Option<Value>,
    #[schema(max_length = 200)]
    created_by: Option<String>,
    /// Absent: a draft; a time: scheduled (a past time means now).
    #[schema(format = DateTime)]
    scheduled_at: Option<String>,
}

fn required_text(
    errs: &mut Vec<FieldError>,
    field: &str,
    v: Option<String>,
    max: usize,
) -> Option<String> {
    match v {
        None => {
            errs.push(FieldError::new(field, "is required"));
            None
        }
        Some(t) => bounded_text(field, &t, 1, max)
            .map(|_| t)
            .map_err(|e| errs.push(e))
            .ok(),
    }
}

fn timestamp(errs: &mut Vec<FieldError>, field: &str, v: Option<&str>) -> Option<Ts> {
    let s = v?;
    match time::parse(s) {
        Some(t) => Some(t),
        None => {
            errs.push(FieldError::new(
                field,
                "must be an RFC 3339 timestamp with an offset",
            ));
            None
        }
    }
}

impl DraftBody {
    fn parse(self) -> ApiResult<(BroadcastDraft, Option<String>)> {
        let mut errs = Vec::new();
        let title = required_text(&mut errs, "title", self.title, 200);
        let body = required_text(&mut errs, "body", self.body, 10_000);
        let audience = match &self.audience {
            None | Some(Value::Null) => {
                errs.push(FieldError::new("audience", "is required"));
                None
            }
            Some(v) => Audience::parse(v).map_err(|e| errs.push(e)).ok(),
        };
        let created_by = match self.created_by {
            None => None,
            Some(c) => bounded_text("created_by", &c, 1, 200)
                .map(|_| c)
                .map_err(|e| errs.push(e))
                .ok(),
        };
        let scheduled_at = timestamp(&mut errs, "scheduled_at", self.scheduled_at.as_deref());
        match (title, body, audience) {
            (Some(title), Some(body), Some(audience)) if errs.is_empty() => Ok((
                BroadcastDraft {
                    title,
                    body,
                    audience,
                    scheduled_at,
                },
                created_by,
            )),
            _ => Err(Error::invalid(errs).into()),
        }
    }
}

fn broadcast_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(raw.trim())
        .map_err(|_| ApiError::invalid_field("broadcast_id", "must be a UUID"))
}

async fn create(
    State(st): State<AppState>,
    _a: Admin,
    JsonBody(body): JsonBody<DraftBody>,
) -> ApiResult<Response> {
    let (draft, created_by) = body.parse()?;
    let b = st
        .broadcasts
        .create(draft, created_by.unwrap_or_else(|| "admin".into()))
        .await?;
    Ok((StatusCode::CREATED, Json(BroadcastView::from(b))).into_response())
}

/// The broadcast list's status filter (beside its paging and search).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct StatusFilter {
    /// Only these statuses, comma-separated (`status` works too): draft, scheduled,
    /// sending, sent, failed, cancelled.
    statuses: Option<String>,
}

/// A page of broadcasts, newest first, with the counts under the same search.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastList)]
struct BroadcastList {
    items: Vec<BroadcastView>,
    /// Broadcasts matching the filter.
    total: i64,
    offset: usize,
    limit: usize,
    has_next: bool,
    /// Broadcasts per status, under `q` only.
    status_counts: BTreeMap<String, i64>,
    /// The sum of `total` recipients over the matching broadcasts.
    recipients: i64,
}

async fn list(
    State(st): State<AppState>,
    _a: Admin,
    q: QueryPairs,
) -> ApiResult<Json<BroadcastList>> {
    let limit = page_limit(q.get("limit"))?;
    let offset = page_offset(q.get("offset"))?;
    let mut statuses = Vec::new();
    for v in q.all("statuses").into_iter().chain(q.all("status")) {
        for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            statuses.push(s.parse::<BroadcastStatus>().map_err(|_| {
                ApiError::invalid_field(
                    "statuses",
                    "must be draft, scheduled, sending, sent, failed or cancelled",
                )
            })?);
        }
    }
    let search = search_query(&q)?;
    let page = st
        .broadcasts
        .list(BroadcastFilter {
            statuses,
            q: search,
            limit,
            offset,
        })
        .await?;
    let status_counts = page
        .status_counts
        .iter()
        .map(|(s, n)| (s.as_str().to_string(), *n))
        .collect();
    let items: Vec<BroadcastView> = page.items.into_iter().map(BroadcastView::listed).collect();
    Ok(Json(BroadcastList {
        items,
        total: page.total,
        offset,
        limit,
        has_next: (offset + limit) < page.total as usize,
        status_counts,
        recipients: page.recipients,
    }))
}

async fn get_one(
    State(st): State<AppState>,
    _a: Admin,
    PathString(id): PathString,
) -> ApiResult<Json<BroadcastView>> {
    Ok(Json(st.broadcasts.get(broadcast_id(&id)?).await?.into()))
}

async fn replace(
    State(st): State<AppState>,
    _a: Admin,
    PathString(id): PathString,
    JsonBody(body): JsonBody<DraftBody>,
) -> ApiResult<Json<BroadcastView>> {
    let id = broadcast_id(&id)?;
    let (draft, _) = body.parse()?;
    Ok(Json(st.broadcasts.replace(id, draft).await?.into()))
}

async fn delete(
    State(st): State<AppState>,
    _a: Admin,
    PathString(id): PathString,
) -> ApiResult<StatusCode> {
    st.broadcasts.delete(broadcast_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn send_now(
    State(st): State<AppState>,
    _a: Admin,
    PathString(id): PathString,
) -> ApiResult<Json<BroadcastView>> {
    Ok(Json(
        st.broadcasts.send_now(broadcast_id(&id)?).await?.into(),
    ))
}

/// When to send a broadcast.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = BroadcastSchedule)]
struct ScheduleBody {
    #[schema(required = true, value_type = String, format = DateTime, example = "2030-01-01T09:00:00Z")]
    scheduled_at: Option<String>,
}

async fn schedule(
    State(st): State<AppState>,
    _a: Admin,
    PathString(id): PathString,
    JsonBody(body): JsonBody<ScheduleBody>,
) -> ApiResult<Json<BroadcastView>> {
    let id = broadcast_id(&id)?;
    let mut errs = Vec::new();
    if body.scheduled_at.is_none() {
        errs.push(FieldError::new("scheduled_at", "is required"));
    }
    let at = timestamp(&mut errs, "scheduled_at", body.scheduled_at.as_deref());
    match at {
        Some(at) if errs.is_empty() => Ok(Json(st.broadcasts.schedule(id, at).await?.into())),
        _ => Err(Error::invalid(errs).into()),
    }
}

async fn cancel(
    State(st): State<AppState>,
    _a: Admin,
    PathString(id): PathString,
) -> ApiResult<Json<BroadcastView>> {
    Ok(Json(st.broadcasts.cancel(broadcast_id(&id)?).await?.into()))
}

fn routes(prefix: &str) -> Api {
    let a = Access::Admin;
    let p = |s: &str| format!("{prefix}{s}");
    Api::new("broadcasts")
        .post(
            &p(""),
            create,
            "Create a broadcast (draft, or scheduled with scheduled_at)",
            a,
        )
        .body::<DraftBody>()
        .returns::<BroadcastView>(201)
        .get(
            &p(""),
            list,
            "List broadcasts (statuses, q, status_counts, recipients)",
            a,
        )
        .returns::<BroadcastList>(200)
        .query::<OffsetPage>()
        .query::<Search>()
        .query::<StatusFilter>()
        .get(&p("/{id}"), get_one, "One broadcast with its counters", a)
        .returns::<BroadcastView>(200)
        .put(
            &p("/{id}"),
            replace,
            "Replace title, body, audience, schedule (draft or scheduled)",
            a,
        )
        .body::<DraftBody>()
        .returns::<BroadcastView>(200)
        .delete(
            &p("/{id}"),
            delete,
            "Delete a draft or cancelled broadcast",
            a,
        )
        .no_content()
        .post(
            &p("/{id}/actions/send-now"),
            send_now,
            "Send now (a worker in this process starts at once)",
            a,
        )
        .returns::<BroadcastView>(200)
        .post(
            &p("/{id}/actions/schedule"),
            schedule,
            "Schedule at scheduled_at",
            a,
        )
        .body::<ScheduleBody>()
        .returns::<BroadcastView>(200)
        .post(
            &p("/{id}/actions/cancel"),
            cancel,
            "Cancel (also stops a sending broadcast)",
            a,
        )
        .returns::<BroadcastView>(200)
}

pub fn router() -> Api {
    routes("/v1/admin/notifications/broadcasts").merge(routes("/v1/notifications/admin/broadcasts"))
}
