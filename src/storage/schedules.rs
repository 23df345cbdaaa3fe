//! What both backends share about schedules: reading a stored row back, and the steps of
//! taking a run (the SQL of each step lives in the backend's `schedules` module).

use super::{decode, Result, StoreError};
use crate::domain::schedule::{DueRun, Fired, JobTemplate, Overlap, Schedule, ScheduleName};
use crate::domain::time::{from_ms, Ts};
use crate::domain::{Enqueued, Job, JobId, JobStatus, NewJob};

/// A `schedules` row as the backends read it, before decoding.
pub struct ScheduleRow {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub job: String,
    pub enabled: bool,
    pub overlap: String,
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_job_id: Option<String>,
    pub runs_total: i64,
    pub skipped_total: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of a `schedules` row in `ScheduleRow`'s order.
pub const SCHEDULE_COLS: &str = "name, cron, timezone, job, enabled, overlap, next_run_at, \
    last_run_at, last_job_id, runs_total, skipped_total, created_at, updated_at";

impl ScheduleRow {
    /// Decodes; a corrupt value is an error naming it, never a default.
    pub fn decode(self) -> Result<Schedule> {
        let corrupt = |what: &str| {
            StoreError::Backend(
                format!(
                    "schedule {:?} holds an invalid {what}",
                    self.name.chars().take(64).collect::<String>()
                )
                .into(),
            )
        };
        let job: JobTemplate = serde_json::from_str(&self.job).map_err(|_| corrupt("job"))?;
        let overlap = Overlap::parse(&self.overlap).ok_or_else(|| corrupt("overlap"))?;
        let last_job_id = self
            .last_job_id
            .as_deref()
            .map(decode::job_id)
            .transpose()?;
        Ok(Schedule {
            name: ScheduleName::from_stored(self.name),
            cron: self.cron,
            timezone: self.timezone,
            job,
            enabled: self.enabled,
            overlap,
            next_run_at: self.next_run_at.map(from_ms),
            last_run_at: self.last_run_at.map(from_ms),
            last_job_id,
            runs_total: self.runs_total,
            skipped_total: self.skipped_total,
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
        })
    }
}

/// The statements of taking a run, on one backend's connection inside its transaction.
pub(crate) trait RunSteps {
    /// Moves `next_run_at` from `run.expected_next` to `run.next_run_at` on an enabled
    /// schedule (compare-and-set); returns its overlap rule and last job, or None when the
    /// schedule no longer expects that run.
    fn take_run(
        &mut self,
        name: &ScheduleName,
        run: &DueRun,
        now: Ts,
    ) -> Result<Option<(Overlap, Option<String>)>>;
    /// Locks the schedule for a manual run; false when there is none.
    fn lock_schedule(&mut self, name: &ScheduleName) -> Result<bool>;
    /// The status of a job, if it still exists.
    fn job_status(&mut self, id: &str) -> Result<Option<JobStatus>>;
    fn enqueue(&mut self, job: NewJob, now: Ts) -> Result<Enqueued>;
    /// Counts a run that enqueued `job` at `run_at`.
    fn count_run(&mut self, name: &ScheduleName, run_at: Ts, job: JobId, now: Ts) -> Result<()>;
    /// Counts a skipped run.
    fn count_skip(&mut self, name: &ScheduleName, now: Ts) -> Result<()>;
}

/// Takes a due run: see `ScheduleStore::fire_schedule`.
pub(crate) fn fire(
    c: &mut impl RunSteps,
    name: &ScheduleName,
    run: &DueRun,
    job: NewJob,
    now: Ts,
) -> Result<Fired> {
    let Some((overlap, last_job)) = c.take_run(name, run, now)? else {
        return Ok(Fired::Taken);
    };
    if overlap == Overlap::Skip {
        if let Some(last) = last_job {
            if matches!(
                c.job_status(&last)?,
                Some(JobStatus::Queued | JobStatus::Leased)
            ) {
                c.count_skip(name, now)?;
                return Ok(Fired::Skipped);
            }
        }
    }
    match c.enqueue(job, now)? {
        Enqueued::Created(j) => {
            c.count_run(name, run.run_at, j.id, now)?;
            Ok(Fired::Enqueued(Box::new(j)))
        }
        // The run's key was used before (the schedule was replaced and its calendar
        // reached the same run again): that run is already enqueued.
        Enqueued::Replayed(_) => Ok(Fired::Taken),
    }
}

/// Enqueues a schedule's job outside its calendar: see `ScheduleStore::trigger_schedule`.
pub(crate) fn trigger(
    c: &mut impl RunSteps,
    name: &ScheduleName,
    job: NewJob,
    now: Ts,
) -> Result<Job> {
    if !c.lock_schedule(name)? {
        return Err(StoreError::NotFound);
    }
    let j = c.enqueue(job, now)?.into_job();
    c.count_run(name, now, j.id, now)?;
    Ok(j)
}
