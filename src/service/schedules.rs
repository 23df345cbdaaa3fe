//! Schedules (recurring jobs): create, replace, list, delete, trigger, and the tick of the
//! maintenance loop that enqueues each due run once across every process and node.

use super::jobs::JobService;
use super::{Error, Result};
use crate::clock::SharedClock;
use crate::domain::schedule::{run_key, Fired, Schedule, ScheduleName, SchedulePage, ScheduleSpec};
use crate::domain::Job;
use crate::storage::Db;
use tracing::instrument;

const NOT_FOUND: &str = "schedule_not_found";

/// Schedules one tick looks at, at most (the rest wait for the next tick).
const DUE_PER_TICK: usize = 500;

#[derive(Clone)]
pub struct ScheduleService {
    db: Db,
    clock: SharedClock,
    jobs: JobService,
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub enqueued: usize,
    pub skipped: usize,
}

impl ScheduleService {
    pub fn new(db: Db, clock: SharedClock, jobs: JobService) -> Self {
        Self { db, clock, jobs }
    }

    /// Creates or replaces; returns the schedule and whether it is new.
    #[instrument(skip_all, fields(schedule = %spec.name))]
    pub async fn put(&self, spec: ScheduleSpec) -> Result<(Schedule, bool)> {
        let now = self.clock.now();
        Ok(self.db.write(move |s| s.put_schedule(&spec, now)).await?)
    }

    pub async fn get(&self, name: ScheduleName) -> Result<Schedule> {
        self.db
            .call(move |s| s.get_schedule(&name))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    pub async fn list(&self, after: Option<String>, limit: usize) -> Result<SchedulePage> {
        Ok(self
            .db
            .call(move |s| s.list_schedules(after.as_deref(), limit))
            .await?)
    }

    pub async fn delete(&self, name: ScheduleName) -> Result<()> {
        self.db
            .write(move |s| s.delete_schedule(&name))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    /// Enqueues the schedule's job now, outside its calendar.
    #[instrument(skip_all, fields(schedule = %name))]
    pub async fn trigger(&self, name: ScheduleName) -> Result<Job> {
        let schedule = self.get(name.clone()).await?;
        let job = schedule
            .job
            .new_job(None)
            .map_err(|e| Error::invalid(vec![e]))?;
        let now = self.clock.now();
        let j = self
            .db
            .write(move |s| s.trigger_schedule(&name, job, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        self.jobs.announce_one(&j);
        Ok(j)
    }

    /// Enqueues every run due now: at most one per schedule (the latest, after downtime),
    /// each exactly once however many processes tick at the same time.
    pub async fn tick(&self) -> Result<Tick> {
        let now = self.clock.now();
        let due = self
            .db
            .call(move |s| s.due_schedules(now, DUE_PER_TICK))
            .await?;
        let mut out = Tick::default();
        for schedule in due {
            let Some(run) = schedule.due_run(now) else {
                // A stored calendar that no longer reads (a newer build's syntax) is left
                // alone rather than failing every tick.
                tracing::warn!(schedule = %schedule.name, "schedule due but its calendar cannot be read");
                continue;
            };
            let key = run_key(&schedule.name, &run.run_at);
            let job = match schedule.job.new_job(Some(key)) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(schedule = %schedule.name, error = %e.message, "schedule's job cannot be enqueued");
                    continue;
                }
            };
            let name = schedule.name.clone();
            match self
                .db
                .write(move |s| s.fire_schedule(&name, &run, job, now))
                .await?
            {
                Fired::Enqueued(j) => {
                    out.enqueued += 1;
                    tracing::info!(schedule = %schedule.name, job.id = %j.id, run_at = %crate::domain::time::format(&run.run_at), "scheduled run enqueued");
                    self.jobs.announce_one(&j);
                }
                Fired::Skipped => {
                    out.skipped += 1;
                    tracing::info!(schedule = %schedule.name, "scheduled run skipped: the previous run's job is unfinished");
                }
                Fired::Taken => {}
            }
        }
        Ok(out)
    }
}
