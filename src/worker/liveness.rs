//! Worker liveness: every worker process records itself in the store when it starts,
//! every `heartbeat` period, after ticks (on the next beat), and when it stops, so
//! `GET /v1/admin/workers` can tell which workers are alive and which went silent.

use crate::clock::SharedClock;
use crate::domain::WorkerProcess;
use crate::service::workers::WorkerService;
use crate::storage::Db;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Liveness {
    workers: WorkerService,
    clock: SharedClock,
    row: Mutex<WorkerProcess>,
    period: Duration,
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

impl Liveness {
    pub fn new(db: Db, clock: SharedClock, name: &str, period: Duration) -> Arc<Self> {
        let now = clock.now();
        let row = WorkerProcess {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_string(),
            host: host_name(),
            pid: std::process::id() as i64,
            state: "running".into(),
            started_at: now,
            last_heartbeat_at: now,
            last_tick_at: None,
            last_tick_ms: None,
            heartbeat_ms: period.as_millis().max(1) as i64,
        };
        Arc::new(Self {
            workers: WorkerService::new(db, clock.clone()),
            clock,
            row: Mutex::new(row),
            period,
        })
    }

    /// The id of this process's row.
    pub fn id(&self) -> String {
        self.row.lock().expect("liveness lock").id.clone()
    }

    /// Notes a finished tick (or job); written with the next report.
    pub fn tick_done(&self, took: Duration) {
        let mut row = self.row.lock().expect("liveness lock");
        row.last_tick_at = Some(self.clock.now());
        row.last_tick_ms = Some(took.as_millis() as i64);
    }

    /// Writes the row now, optionally with a new state.
    pub async fn report(&self, state: Option<&str>) {
        let row = {
            let mut row = self.row.lock().expect("liveness lock");
            if let Some(s) = state {
                row.state = s.to_string();
            }
            row.last_heartbeat_at = self.clock.now();
            row.clone()
        };
        if let Err(e) = self.workers.record(row).await {
            tracing::warn!(worker = %self.row.lock().expect("liveness lock").name, error = %e, "could not record liveness");
        }
    }

    /// Reports every period until `stop` turns true.
    pub fn spawn_heartbeat(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.period) => self.report(None).await,
                    _ = super::stopped(&mut stop) => return,
                }
            }
        })
    }
}
