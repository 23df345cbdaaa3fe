//! JSON views of telemetry data that the API routes and the summary both show: one shape,
//! defined once, outside the HTTP layer (so telemetry does not depend on handlers).

use crate::domain::time::{serde_ts, Ts};
use crate::domain::{QueueStats, WorkerProcess};
use serde::Serialize;

/// One item of `workers.processes` (the summary and `/v1/admin/workers`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WorkerProcess)]
pub struct ProcessView {
    id: String,
    name: String,
    pid: i64,
    host: String,
    /// `running` or `stopped`.
    state: String,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    started_at: Ts,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    last_heartbeat_at: Ts,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
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

/// `GET /v1/admin/workers`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WorkerProcessList)]
pub struct ProcessList {
    pub items: Vec<ProcessView>,
}

/// Jobs of one type by status.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = QueueCounts)]
pub struct QueueCounts {
    queued: i64,
    leased: i64,
    succeeded: i64,
    failed: i64,
    canceled: i64,
}

/// One item of `GET /v1/worker/queues` (also in the telemetry summary), and the answer of
/// the queue control routes.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Queue)]
pub struct QueueView {
    #[serde(rename = "type")]
    job_type: String,
    counts: QueueCounts,
    oldest_queued_age_seconds: Option<f64>,
    leases_expired_total: i64,
    paused: bool,
    max_leased: Option<i64>,
}

impl From<&QueueStats> for QueueView {
    fn from(q: &QueueStats) -> Self {
        Self {
            job_type: q.job_type.clone(),
            counts: QueueCounts {
                queued: q.queued,
                leased: q.leased,
                succeeded: q.succeeded,
                failed: q.failed,
                canceled: q.canceled,
            },
            oldest_queued_age_seconds: q.oldest_queued_age_seconds,
            leases_expired_total: q.leases_expired_total,
            paused: q.paused,
            max_leased: q.max_leased,
        }
    }
}

/// `GET /v1/worker/queues`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = QueueList)]
pub struct QueueList {
    pub items: Vec<QueueView>,
}
