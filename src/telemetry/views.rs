//! JSON views of telemetry data that the API routes and the summary both show: one shape,
//! defined once, outside the HTTP layer (so telemetry does not depend on handlers).

use crate::domain::time::{serde_ts, Ts};
use crate::domain::{QueueStats, WorkerProcess};
use serde::Serialize;
use serde_json::{json, Value};

/// One item of `workers.processes` (the summary and `/v1/admin/workers`).
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

/// One item of `GET /v1/worker/queues` (also used by the telemetry summary).
pub fn queue_view(q: &QueueStats) -> Value {
    json!({
        "type": q.job_type,
        "counts": {
            "queued": q.queued, "leased": q.leased, "succeeded": q.succeeded,
            "failed": q.failed, "canceled": q.canceled,
        },
        "oldest_queued_age_seconds": q.oldest_queued_age_seconds,
        "leases_expired_total": q.leases_expired_total,
        "paused": q.paused,
        "max_leased": q.max_leased,
    })
}
