//! `GET /v1/admin/workers`: worker processes with `alive` computed from the heartbeat age.

use super::auth::Admin;
use super::error::ApiResult;
use super::openapi::{Access, Api};
use super::AppState;
use crate::domain::time::{serde_ts, Ts};
use crate::domain::WorkerProcess;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

/// One item of `workers.processes` (SPEC §7).
#[derive(Serialize)]
pub struct ProcessView {
    id: String,
    name: String,
    pid: i64,
    host: String,
    state: String,
    #[serde(with = "serde_ts")]
    started_at: Ts,
    #[serde(with = "serde_ts")]
    last_heartbeat_at: Ts,
    #[serde(with = "serde_ts::option")]
    last_tick_at: Option<Ts>,
    last_tick_ms: Option<i64>,
    alive: bool,
}

impl ProcessView {
    pub fn new(p: WorkerProcess, alive: bool) -> Self {
        Self {
            id: p.id,
            name: p.name,
            pid: p.pid,
            host: p.host,
            state: p.state,
            started_at: p.started_at,
            last_heartbeat_at: p.last_heartbeat_at,
            last_tick_at: p.last_tick_at,
            last_tick_ms: p.last_tick_ms,
            alive,
        }
    }
}

async fn list(State(st): State<AppState>, _auth: Admin) -> ApiResult<Json<Value>> {
    let items: Vec<ProcessView> = st
        .workers
        .processes()
        .await?
        .into_iter()
        .map(|(p, alive)| ProcessView::new(p, alive))
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub fn router() -> Api {
    Api::new("workers").get(
        "/v1/admin/workers",
        list,
        "Worker processes and whether they are alive",
        Access::Admin,
    )
}
