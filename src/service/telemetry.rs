//! Telemetry snapshots: this process's deltas flushed first, then everything read back
//! from the store, so the numbers include every process.

use super::Result;
use crate::clock::SharedClock;
use crate::storage::Db;
use crate::telemetry::summary::Snapshot;
use crate::telemetry::Telemetry;
use std::sync::Arc;

/// Schedules that get their own metric series, at most (in name order).
const MAX_SCHEDULE_SERIES: usize = 1000;

#[derive(Clone)]
pub struct TelemetryService {
    db: Db,
    clock: SharedClock,
    telemetry: Arc<Telemetry>,
    workers: super::workers::WorkerService,
}

impl TelemetryService {
    pub fn new(db: Db, clock: SharedClock, telemetry: Arc<Telemetry>) -> Self {
        let workers = super::workers::WorkerService::new(db.clone(), clock.clone());
        Self {
            db,
            clock,
            telemetry,
            workers,
        }
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub async fn snapshot(&self) -> Result<Snapshot> {
        if let Err(e) = self.telemetry.flush(&self.db).await {
            tracing::warn!(error = %e, "could not flush this process's metrics before a snapshot");
        }
        let now = self.clock.now();
        let (totals, queues, broadcasts, schedules) = self
            .db
            .call(move |s| {
                Ok((
                    s.metric_totals()?,
                    super::jobs::queues_with_controls(s, now)?,
                    s.broadcast_stats()?,
                    s.list_schedules(None, MAX_SCHEDULE_SERIES)?.items,
                ))
            })
            .await?;
        let processes = self.workers.processes().await?;
        Ok(Snapshot {
            totals,
            queues,
            processes,
            broadcasts,
            schedules,
        })
    }

    pub async fn prometheus(&self) -> Result<String> {
        let snap = self.snapshot().await?;
        Ok(crate::telemetry::prometheus_text::render(
            &snap,
            self.telemetry.gather_local(),
        ))
    }
}
