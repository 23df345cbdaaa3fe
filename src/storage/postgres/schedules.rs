//! Schedules and queue controls on PostgreSQL.

use super::{jobs, PgConn, PgStore};
use crate::domain::schedule::{
    DueRun, Fired, Overlap, QueueControl, Schedule, ScheduleName, SchedulePage, ScheduleSpec,
};
use crate::domain::time::{to_ms, Ts};
use crate::domain::{Enqueued, Job, JobId, JobStatus, NewJob};
use crate::storage::schedules::{self as shared, RunSteps, SCHEDULE_COLS};
use crate::storage::{decode, QueueControlStore, Result, ScheduleStore, StoreError, Wake};
use postgres::Row;

fn get_col<'a, T: postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(super::map_err)
}

fn row(r: &Row) -> Result<Schedule> {
    crate::storage::row::schedule(r)
}

fn get(c: &mut PgConn, name: &str, lock: bool) -> Result<Option<Schedule>> {
    let sql = format!(
        "SELECT {SCHEDULE_COLS} FROM schedules WHERE name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&name])?.as_ref().map(row).transpose()
}

fn put(c: &mut PgConn, spec: &ScheduleSpec, now: Ts) -> Result<(Schedule, bool)> {
    let old = get(c, spec.name.as_str(), true)?;
    let next = spec.next_run(old.as_ref(), now).as_ref().map(to_ms);
    let job = serde_json::to_string(&spec.job).expect("a template serialises");
    let r = c.query_one(
        &format!(
            "INSERT INTO schedules (name, cron, timezone, job, enabled, overlap, next_run_at,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (name) DO UPDATE SET cron = excluded.cron,
                 timezone = excluded.timezone, job = excluded.job, enabled = excluded.enabled,
                 overlap = excluded.overlap, next_run_at = excluded.next_run_at,
                 updated_at = excluded.updated_at
             RETURNING {SCHEDULE_COLS}"
        ),
        &[
            &spec.name.as_str(),
            &spec.cron,
            &spec.timezone,
            &job,
            &spec.enabled,
            &spec.overlap.as_str(),
            &next,
            &to_ms(&now),
        ],
    )?;
    Ok((row(&r)?, old.is_none()))
}

/// The controls of every type, read by each claim (unlocked; limits are locked apart).
pub(super) fn controls(c: &mut PgConn) -> Result<Vec<(String, QueueControl)>> {
    c.query("SELECT type, paused, max_leased FROM queue_controls", &[])?
        .iter()
        .map(|r| {
            Ok((
                get_col(r, 0)?,
                QueueControl {
                    paused: get_col(r, 1)?,
                    max_leased: get_col(r, 2)?,
                },
            ))
        })
        .collect()
}

/// Locks the control rows of `types` (in name order, so two claims never wait on each
/// other in a cycle) and returns them as they stand under the lock, each with its leased
/// jobs counted after the lock was taken. Every claim that leases a limited type holds its
/// row until it commits, so those counts cannot be overrun by another writer or node.
pub(super) fn lock_limits(
    c: &mut PgConn,
    types: &[String],
) -> Result<Vec<(String, QueueControl, i64)>> {
    let locked = c.query(
        "SELECT type, paused, max_leased FROM queue_controls WHERE type = ANY($1::text[])
         ORDER BY type FOR UPDATE",
        &[&types],
    )?;
    let mut out = Vec::with_capacity(locked.len());
    for r in &locked {
        let t: String = get_col(r, 0)?;
        // A statement of its own: its snapshot is taken after the lock was granted, so
        // it sees the leases of the claim that held the lock before.
        let leased: i64 = get_col(
            &c.query_one(
                "SELECT COUNT(*) FROM jobs WHERE status = 'leased' AND type = $1",
                &[&t],
            )?,
            0,
        )?;
        let control = QueueControl {
            paused: get_col(r, 1)?,
            max_leased: get_col(r, 2)?,
        };
        out.push((t, control, leased));
    }
    Ok(out)
}

fn set_control(
    c: &mut PgConn,
    job_type: &str,
    paused: Option<bool>,
    max_leased: Option<Option<i64>>,
    now: Ts,
) -> Result<QueueControl> {
    let (set_max, max) = match max_leased {
        Some(m) => (true, m),
        None => (false, None),
    };
    let r = c.query_one(
        "INSERT INTO queue_controls (type, paused, max_leased, updated_at)
         VALUES ($1, COALESCE($2, false), $4, $5)
         ON CONFLICT (type) DO UPDATE SET paused = COALESCE($2, queue_controls.paused),
             max_leased = CASE WHEN $3 THEN $4 ELSE queue_controls.max_leased END,
             updated_at = $5
         RETURNING paused, max_leased",
        &[&job_type, &paused, &set_max, &max, &to_ms(&now)],
    )?;
    // Leasers on every node look again: a resumed type or a raised limit may lease now.
    c.notify(Wake::Jobs)?;
    Ok(QueueControl {
        paused: get_col(&r, 0)?,
        max_leased: get_col(&r, 1)?,
    })
}

impl RunSteps for PgConn {
    fn take_run(
        &mut self,
        name: &ScheduleName,
        run: &DueRun,
        now: Ts,
    ) -> Result<Option<(Overlap, Option<String>)>> {
        // Two nodes taking the same run: the second waits for the first's row lock, then
        // finds next_run_at moved and updates nothing.
        let r = self.query_opt(
            "UPDATE schedules SET next_run_at = $3, updated_at = $4
             WHERE name = $1 AND next_run_at = $2 AND enabled
             RETURNING overlap, last_job_id",
            &[
                &name.as_str(),
                &to_ms(&run.expected_next),
                &to_ms(&run.next_run_at),
                &to_ms(&now),
            ],
        )?;
        let Some(r) = r else { return Ok(None) };
        let o: String = get_col(&r, 0)?;
        let overlap = Overlap::parse(&o).ok_or_else(|| {
            StoreError::Backend(format!("schedule {name} holds an invalid overlap {o:?}").into())
        })?;
        Ok(Some((overlap, get_col(&r, 1)?)))
    }

    fn lock_schedule(&mut self, name: &ScheduleName) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM schedules WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )?
            .is_some())
    }

    fn job_status(&mut self, id: &str) -> Result<Option<JobStatus>> {
        match self.query_opt("SELECT status FROM jobs WHERE id = $1::text::uuid", &[&id])? {
            Some(r) => Ok(Some(decode::job_status(&get_col::<String>(&r, 0)?)?)),
            None => Ok(None),
        }
    }

    fn enqueue(&mut self, job: NewJob, now: Ts) -> Result<Enqueued> {
        Ok(jobs::enqueue(self, vec![job], now)?.remove(0))
    }

    fn count_run(&mut self, name: &ScheduleName, run_at: Ts, job: JobId, now: Ts) -> Result<()> {
        self.execute(
            "UPDATE schedules SET runs_total = runs_total + 1, last_run_at = $2,
                 last_job_id = $3, updated_at = $4 WHERE name = $1",
            &[
                &name.as_str(),
                &to_ms(&run_at),
                &job.to_string(),
                &to_ms(&now),
            ],
        )
        .map(|_| ())
    }

    fn count_skip(&mut self, name: &ScheduleName, now: Ts) -> Result<()> {
        self.execute(
            "UPDATE schedules SET skipped_total = skipped_total + 1, updated_at = $2
             WHERE name = $1",
            &[&name.as_str(), &to_ms(&now)],
        )
        .map(|_| ())
    }
}

impl ScheduleStore for PgStore {
    fn put_schedule(&self, spec: &ScheduleSpec, now: Ts) -> Result<(Schedule, bool)> {
        let spec = spec.clone();
        self.write(move |c| put(c, &spec, now))
    }

    fn get_schedule(&self, name: &ScheduleName) -> Result<Schedule> {
        self.read(|c| get(c, name.as_str(), false))?
            .ok_or(StoreError::NotFound)
    }

    fn list_schedules(&self, after: Option<&str>, limit: usize) -> Result<SchedulePage> {
        let items = self.read(|c| {
            c.query(
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules WHERE name > $1 ORDER BY name
                     LIMIT $2"
                ),
                &[&after.unwrap_or(""), &((limit + 1) as i64)],
            )?
            .iter()
            .map(row)
            .collect()
        })?;
        Ok(crate::storage::schedule_page(items, limit))
    }

    fn delete_schedule(&self, name: &ScheduleName) -> Result<()> {
        let name = name.clone();
        self.write(move |c| {
            match c.execute("DELETE FROM schedules WHERE name = $1", &[&name.as_str()])? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
    }

    fn due_schedules(&self, now: Ts, limit: usize) -> Result<Vec<Schedule>> {
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules
                     WHERE enabled AND next_run_at <= $1 ORDER BY next_run_at LIMIT $2"
                ),
                &[&to_ms(&now), &(limit as i64)],
            )?
            .iter()
            .map(row)
            .collect()
        })
    }

    fn fire_schedule(
        &self,
        name: &ScheduleName,
        run: &DueRun,
        job: NewJob,
        now: Ts,
    ) -> Result<Fired> {
        let (name, run) = (name.clone(), *run);
        self.write(move |c| shared::fire(c, &name, &run, job.clone(), now))
    }

    fn trigger_schedule(&self, name: &ScheduleName, job: NewJob, now: Ts) -> Result<Job> {
        let name = name.clone();
        self.write(move |c| shared::trigger(c, &name, job.clone(), now))
    }
}

impl QueueControlStore for PgStore {
    fn set_queue_control(
        &self,
        job_type: &str,
        paused: Option<bool>,
        max_leased: Option<Option<i64>>,
        now: Ts,
    ) -> Result<QueueControl> {
        let t = job_type.to_string();
        self.write(move |c| set_control(c, &t, paused, max_leased, now))
    }

    fn queue_controls(&self) -> Result<Vec<(String, QueueControl)>> {
        self.read(controls)
    }
}
