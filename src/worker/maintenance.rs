//! `jobs.maintenance`: reclaims expired leases within a few seconds, prunes finished jobs
//! (and their events) past the retention in bounded batches, and drops expired sessions.

use super::WorkerInfo;
use crate::service::auth::AuthService;
use crate::service::jobs::JobService;
use std::time::Duration;
use tokio::sync::watch;

pub const INFO: WorkerInfo = WorkerInfo {
    name: "jobs.maintenance",
    description: "reclaims expired job leases and prunes finished jobs past --job-retention (always on inside serve)",
};

/// How often retention runs (lease reclaim runs every `interval`).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct Maintenance {
    pub jobs: JobService,
    pub auth: AuthService,
    pub retention: Option<Duration>,
}

impl Maintenance {
    /// One pass of lease reclaim; retention too when `prune` is set.
    pub async fn tick(&self, prune: bool) -> crate::service::Result<()> {
        self.jobs.reclaim_expired().await?;
        if prune {
            if let Some(r) = self.retention.filter(|r| !r.is_zero()) {
                let r = chrono::Duration::from_std(r).unwrap_or(chrono::Duration::MAX);
                let n = self.jobs.prune(r).await?;
                if n > 0 {
                    tracing::info!(pruned = n, "finished jobs past retention pruned");
                }
            }
            self.auth.prune().await?;
        }
        Ok(())
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            let prune = last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
            if prune {
                last_prune = Some(tokio::time::Instant::now());
            }
            if let Err(e) = self.tick(prune).await {
                tracing::warn!(worker = INFO.name, error = %e, "maintenance tick failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
