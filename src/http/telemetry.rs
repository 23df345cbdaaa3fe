//! Telemetry routes: the JSON summary, the Prometheus text (also at the original
//! `/v1/metrics`), the plain `/metrics` listener, and the HTTP metrics middleware.

use super::auth::Admin;
use super::error::ApiResult;
use super::openapi::{Access, Answer, Api};
use super::AppState;
use crate::telemetry::summary::{Summary, WorkersSummary};
use crate::telemetry::Telemetry;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Instant;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn summary(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<Summary>> {
    Ok(Json(st.telemetry.snapshot().await?.summary()))
}

async fn workers_summary(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<WorkersSummary>> {
    Ok(Json(st.telemetry.snapshot().await?.workers()))
}

async fn prometheus_text(st: &AppState) -> ApiResult<Response> {
    let text = st.telemetry.prometheus().await?;
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response())
}

async fn prometheus(State(st): State<AppState>, _a: Admin) -> ApiResult<Response> {
    prometheus_text(&st).await
}

/// `/metrics` on `--metrics-bind`: no auth, meant for a private interface.
async fn open_metrics(State(st): State<AppState>) -> ApiResult<Response> {
    prometheus_text(&st).await
}

pub fn router() -> Api {
    let a = Access::Admin;
    Api::new("telemetry")
        .get(
            "/v1/admin/telemetry/summary",
            summary,
            "Workers, queues and broadcasts at a glance (all processes)",
            a,
        )
        .returns::<Summary>(200)
        .get(
            "/v1/admin/telemetry/workers/summary",
            workers_summary,
            "Just the workers part of the summary",
            a,
        )
        .returns::<WorkersSummary>(200)
        .get(
            "/v1/admin/telemetry/prometheus",
            prometheus,
            "Prometheus text format 0.0.4",
            a,
        )
        .answers(200, Answer::Media("text/plain"))
        .get(
            "/v1/metrics",
            prometheus,
            "Prometheus text (the original platform's path)",
            a,
        )
        .answers(200, Answer::Media("text/plain"))
}

/// The router of the `--metrics-bind` listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(open_metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.readiness.clone(),
            super::health::require_schema,
        ))
        .fallback(|| async { super::error::ApiError::not_found() })
        .with_state(state)
}

/// Counts every routed request by route template (never the raw path), method and status.
pub async fn track(State(t): State<Arc<Telemetry>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    t.http(&route, &method, resp.status().as_u16(), start.elapsed());
    resp
}
