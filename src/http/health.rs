//! `/healthz` (the process runs) and `/readyz` (the store answers and is migrated).

use super::openapi::{Access, Api};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.db.call(|s| Ok((s.schema_version()?, s.latest_schema_version()))).await {
        Ok((v, expected)) if v >= expected => Json(json!({ "status": "ready", "schema_version": v })).into_response(),
        Ok((v, expected)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": format!("schema version {v}, expected {expected}: run `wp-lite migrate`") })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": e.to_string() })),
        )
            .into_response(),
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
        .get(
            "/readyz",
            readyz,
            "200 when the store answers and is migrated",
            Access::Public,
        )
}
