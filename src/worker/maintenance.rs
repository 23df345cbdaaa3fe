//! `jobs.maintenance`: reclaims expired leases within a few seconds, prunes finished jobs
//! (and their events) past the retention in bounded batches, enqueues the due runs of
//! schedules, and drops expired sessions.
//! Always on inside `serve`; runnable alone with `wp-lite run --name jobs.maintenance`.

use super::{BoxFuture, Built, Periodic, PeriodicSpec, Worker, WorkerConfigError, WorkerEnv};
use crate::clock::SharedClock;
use crate::service::jobs::JobService;
use crate::service::schedules::ScheduleService;
use crate::storage::Db;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NAME: &str = "jobs.maintenance";
pub const DESCRIPTION: &str =
    "reclaims expired job leases, enqueues due schedule runs and prunes finished jobs past --job-retention (always on inside serve)";

/// How often retention runs (lease reclaim runs every tick).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct Maintenance {
    jobs: JobService,
    schedules: ScheduleService,
    db: Db,
    clock: SharedClock,
    interval: Duration,
    at_start: bool,
    retention: Option<Duration>,
    inbox_retention_days: Option<u32>,
    inbox_max_per_user: Option<usize>,
    last_prune: Mutex<Option<Instant>>,
}

pub fn build(env: &WorkerEnv) -> Result<Built, WorkerConfigError> {
    Ok(Built::Periodic(Arc::new(Maintenance {
        jobs: env.jobs.clone(),
        schedules: ScheduleService::new(env.db.clone(), env.clock.clone(), env.jobs.clone()),
        db: env.db.clone(),
        clock: env.clock.clone(),
        interval: env.options.maintenance_interval,
        at_start: env.options.maintenance_at_start,
        retention: env.options.job_retention,
        inbox_retention_days: env.options.inbox_retention_days,
        inbox_max_per_user: env.options.inbox_max_per_user,
        last_prune: Mutex::new(None),
    })))
}

impl Maintenance {
    fn prune_due(&self) -> bool {
        let mut last = self.last_prune.lock().expect("maintenance lock");
        if last.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            *last = Some(Instant::now());
            true
        } else {
            false
        }
    }

    async fn run_tick(&self) -> anyhow::Result<()> {
        self.jobs.reclaim_expired().await?;
        self.schedules.tick().await?;
        self.jobs.fold_counts().await?;
        if self.prune_due() {
            if let Some(r) = self.retention.filter(|r| !r.is_zero()) {
                let r = chrono::Duration::from_std(r).unwrap_or(chrono::Duration::MAX);
                let n = self.jobs.prune(r).await?;
                if n > 0 {
                    tracing::info!(
                        worker = NAME,
                        pruned = n,
                        "finished jobs past retention pruned"
                    );
                }
            }
            crate::service::auth::prune_sessions(&self.db, self.clock.now()).await?;
            if self.inbox_retention_days.is_some() || self.inbox_max_per_user.is_some() {
                let inbox =
                    crate::service::inbox::InboxService::new(self.db.clone(), self.clock.clone());
                let n = inbox
                    .prune(self.inbox_retention_days, self.inbox_max_per_user)
                    .await?;
                if n > 0 {
                    tracing::info!(
                        worker = NAME,
                        pruned = n,
                        "inbox items past retention pruned"
                    );
                }
            }
        }
        Ok(())
    }
}

impl Worker for Maintenance {
    fn name(&self) -> &str {
        NAME
    }
    fn description(&self) -> &str {
        DESCRIPTION
    }
}

impl Periodic for Maintenance {
    fn spec(&self) -> PeriodicSpec {
        PeriodicSpec {
            interval: self.interval,
            jitter: Duration::ZERO,
            immediate: self.at_start,
        }
    }
    fn tick(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(self.run_tick())
    }
}
