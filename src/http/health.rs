//! `/healthz` (the process runs) and `/readyz` (the store answers and is migrated), and
//! the schema gate: `serve --no-migrate` on a database that is behind starts, answers
//! `/healthz`, and answers every other API route 503 until another process migrates it.

use super::error::ApiError;
use super::openapi::{Access, Api};
use super::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Whether the database has the schema this build needs; while it has not, which
/// migrations are pending.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    pending: Mutex<Vec<String>>,
}

impl Readiness {
    pub fn new(pending: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(pending.is_empty()),
            pending: Mutex::new(pending),
        })
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
    pub fn set_pending(&self, pending: Vec<String>) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = pending;
    }
    pub fn set_ready(&self) {
        self.set_pending(Vec::new());
        self.ready.store(true, Ordering::Release);
    }
    pub fn pending(&self) -> Vec<String> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn message(&self) -> String {
        format!(
            "the database schema is behind this build: migrations pending ({}); run `wp-lite migrate`",
            self.pending().join(", ")
        )
    }
}

/// Routes that answer whatever the schema: they do not touch the store's tables.
fn schema_free(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/openapi.json")
}

/// A 503 `unavailable` naming the pending migrations, for every route that needs the
/// store while the schema is behind (one atomic load once it is not).
pub async fn require_schema(State(r): State<Arc<Readiness>>, req: Request, next: Next) -> Response {
    if r.is_ready() || schema_free(req.uri().path()) {
        return next.run(req).await;
    }
    ApiError::unavailable(r.message()).into_response()
}

/// `GET /healthz`: the process runs.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Health)]
struct HealthView {
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /readyz`: whether this process can serve requests that need the store (200 ready,
/// 503 not ready, with the reason).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Readiness)]
struct ReadinessView {
    /// `ready` or `not_ready`.
    #[schema(example = "ready", pattern = "^(ready|not_ready)$")]
    status: &'static str,
    /// The schema version, when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_version: Option<i64>,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The migrations still to run, when that is why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_migrations: Option<Vec<String>>,
}

impl ReadinessView {
    fn ready(schema_version: i64) -> Json<Self> {
        Json(Self {
            status: "ready",
            schema_version: Some(schema_version),
            reason: None,
            pending_migrations: None,
        })
    }

    fn not_ready(reason: impl Into<String>) -> Json<Self> {
        Json(Self {
            status: "not_ready",
            schema_version: None,
            reason: Some(reason.into()),
            pending_migrations: None,
        })
    }
}

async fn healthz() -> Json<HealthView> {
    Json(HealthView { status: "ok" })
}

async fn readyz(State(st): State<AppState>) -> Response {
    if !st.readiness.is_ready() {
        let pending = st.readiness.pending();
        let mut resp = ApiError::unavailable(st.readiness.message()).into_response();
        *resp.body_mut() = axum::body::Body::from(
            json!({
                "status": "not_ready",
                "reason": "migrations are pending",
                "pending_migrations": pending,
                "detail": "unavailable",
                "error": { "code": "unavailable", "message": st.readiness.message() },
            })
            .to_string(),
        );
        return resp;
    }
    if st.db.recently_faulted() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            ReadinessView::not_ready("the store failed to serve a request moments ago (disk full, read-only, I/O error or database down)"),
        )
            .into_response();
    }
    match st
        .db
        .call(|s| Ok((s.schema_version()?, s.latest_schema_version())))
        .await
    {
        Ok((v, expected)) if v >= expected => ReadinessView::ready(v).into_response(),
        Ok((v, expected)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadinessView::not_ready(format!(
                "schema version {v}, expected {expected}: run `wp-lite migrate`"
            )),
        )
            .into_response(),
        Err(e) => {
            // The cause goes to the log, not to an unauthenticated caller.
            tracing::warn!(error = %e, "readiness check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "1")],
                ReadinessView::not_ready("the store is unavailable"),
            )
                .into_response()
        }
    }
}

pub fn router() -> Api {
    Api::new("health")
        .get(
            "/healthz",
            healthz,
            "200 while the process runs",
            Access::Public,
        )
        .returns::<HealthView>(200)
        .get(
            "/readyz",
            readyz,
            "200 when the store answers and is migrated",
            Access::Public,
        )
        .returns::<ReadinessView>(200)
}
