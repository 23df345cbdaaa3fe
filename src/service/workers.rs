//! Worker processes and whether they are alive.

use super::Result;
use crate::clock::SharedClock;
use crate::domain::WorkerProcess;
use crate::storage::Db;

/// Processes silent for longer than this are no longer listed.
const FORGET_AFTER: chrono::Duration = chrono::Duration::hours(24);

#[derive(Clone)]
pub struct WorkerService {
    db: Db,
    clock: SharedClock,
}

impl WorkerService {
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self { db, clock }
    }

    /// Records a worker process's liveness row (its heartbeat).
    pub async fn record(&self, row: WorkerProcess) -> Result<()> {
        Ok(self
            .db
            .write(move |s| s.record_worker_process(&row))
            .await?)
    }

    /// Processes seen in the last day, each with whether it is alive now.
    pub async fn processes(&self) -> Result<Vec<(WorkerProcess, bool)>> {
        let now = self.clock.now();
        let since = now - FORGET_AFTER;
        let list = self
            .db
            .call(move |s| s.list_worker_processes(since))
            .await?;
        Ok(list
            .into_iter()
            .map(|p| {
                let alive = p.alive(now);
                (p, alive)
            })
            .collect())
    }
}
