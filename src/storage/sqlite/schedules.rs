//! Schedules and queue controls on SQLite.

use super::{jobs, map_err, SqliteStore, WriteConn};
use crate::domain::schedule::{
    DueRun, Fired, Overlap, QueueControl, Schedule, ScheduleName, SchedulePage, ScheduleSpec,
};
use crate::domain::time::{to_ms, Ts};
use crate::domain::{Enqueued, Job, JobId, JobStatus, NewJob};
use crate::storage::schedules::{self as shared, RunSteps, SCHEDULE_COLS};
use crate::storage::{decode, QueueControlStore, Result, ScheduleStore};
use rusqlite::{params, Connection, OptionalExtension, Row};

fn row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    super::decoded(0, crate::storage::row::schedule(r))
}

fn query(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Schedule>> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_map(args, row)?.collect())
        .map_err(map_err)
}

fn get(c: &Connection, name: &str) -> Result<Option<Schedule>> {
    Ok(query(
        c,
        &format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE name = ?1"),
        [name],
    )?
    .pop())
}

fn put(c: &WriteConn, spec: &ScheduleSpec, now: Ts) -> Result<(Schedule, bool)> {
    let old = get(c, spec.name.as_str())?;
    let next = spec.next_run(old.as_ref(), now);
    let job = serde_json::to_string(&spec.job).expect("a template serialises");
    c.prepare_cached(
        "INSERT INTO schedules (name, cron, timezone, job, enabled, overlap, next_run_at,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (name) DO UPDATE SET cron = excluded.cron,
             timezone = excluded.timezone, job = excluded.job, enabled = excluded.enabled,
             overlap = excluded.overlap, next_run_at = excluded.next_run_at,
             updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            spec.name.as_str(),
            spec.cron,
            spec.timezone,
            job,
            spec.enabled as i64,
            spec.overlap.as_str(),
            next.as_ref().map(to_ms),
            to_ms(&now),
        ])
    })
    .map_err(map_err)?;
    let saved = get(c, spec.name.as_str())?.ok_or(crate::storage::StoreError::NotFound)?;
    Ok((saved, old.is_none()))
}

/// The type controls, read inside the writer's transaction by every claim.
pub(super) fn controls(c: &Connection) -> Result<Vec<(String, QueueControl)>> {
    c.prepare_cached("SELECT type, paused, max_leased FROM queue_controls")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    QueueControl {
                        paused: r.get::<_, i64>(1)? != 0,
                        max_leased: r.get(2)?,
                    },
                ))
            })?
            .collect()
        })
        .map_err(map_err)
}

fn set_control(
    c: &WriteConn,
    job_type: &str,
    paused: Option<bool>,
    max_leased: Option<Option<i64>>,
    now: Ts,
) -> Result<QueueControl> {
    let (set_max, max) = match max_leased {
        Some(m) => (1, m),
        None => (0, None),
    };
    c.prepare_cached(
        "INSERT INTO queue_controls (type, paused, max_leased, updated_at)
         VALUES (?1, COALESCE(?2, 0), ?4, ?5)
         ON CONFLICT (type) DO UPDATE SET paused = COALESCE(?2, paused),
             max_leased = CASE WHEN ?3 = 1 THEN ?4 ELSE max_leased END, updated_at = ?5
         RETURNING paused, max_leased",
    )
    .and_then(|mut s| {
        s.query_row(
            params![job_type, paused.map(i64::from), set_max, max, to_ms(&now)],
            |r| {
                Ok(QueueControl {
                    paused: r.get::<_, i64>(0)? != 0,
                    max_leased: r.get(1)?,
                })
            },
        )
    })
    .map_err(map_err)
}

/// The steps of a run on the writer's connection (the writer serialises them).
struct Steps<'a>(&'a WriteConn);

impl RunSteps for Steps<'_> {
    fn take_run(
        &mut self,
        name: &ScheduleName,
        run: &DueRun,
        now: Ts,
    ) -> Result<Option<(Overlap, Option<String>)>> {
        let taken: Option<(String, Option<String>)> = self
            .0
            .prepare_cached(
                "UPDATE schedules SET next_run_at = ?3, updated_at = ?4
                 WHERE name = ?1 AND next_run_at = ?2 AND enabled = 1
                 RETURNING overlap, last_job_id",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        name.as_str(),
                        to_ms(&run.expected_next),
                        to_ms(&run.next_run_at),
                        to_ms(&now)
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .map_err(map_err)?;
        taken
            .map(|(o, last)| {
                Overlap::parse(&o).map(|o| (o, last)).ok_or_else(|| {
                    crate::storage::StoreError::Backend(
                        format!("schedule {name} holds an invalid overlap {o:?}").into(),
                    )
                })
            })
            .transpose()
    }

    fn lock_schedule(&mut self, name: &ScheduleName) -> Result<bool> {
        self.0
            .prepare_cached("SELECT 1 FROM schedules WHERE name = ?1")
            .and_then(|mut s| s.exists([name.as_str()]))
            .map_err(map_err)
    }

    fn job_status(&mut self, id: &str) -> Result<Option<JobStatus>> {
        let s: Option<String> = self
            .0
            .prepare_cached("SELECT status FROM jobs WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(map_err)?;
        s.as_deref().map(decode::job_status).transpose()
    }

    fn enqueue(&mut self, job: NewJob, now: Ts) -> Result<Enqueued> {
        Ok(jobs::enqueue(self.0, vec![job], now)?.remove(0))
    }

    fn count_run(&mut self, name: &ScheduleName, run_at: Ts, job: JobId, now: Ts) -> Result<()> {
        self.0
            .prepare_cached(
                "UPDATE schedules SET runs_total = runs_total + 1, last_run_at = ?2,
                     last_job_id = ?3, updated_at = ?4 WHERE name = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    name.as_str(),
                    to_ms(&run_at),
                    job.to_string(),
                    to_ms(&now)
                ])
            })
            .map(|_| ())
            .map_err(map_err)
    }

    fn count_skip(&mut self, name: &ScheduleName, now: Ts) -> Result<()> {
        self.0
            .prepare_cached(
                "UPDATE schedules SET skipped_total = skipped_total + 1, updated_at = ?2
                 WHERE name = ?1",
            )
            .and_then(|mut s| s.execute(params![name.as_str(), to_ms(&now)]))
            .map(|_| ())
            .map_err(map_err)
    }
}

impl ScheduleStore for SqliteStore {
    fn put_schedule(&self, spec: &ScheduleSpec, now: Ts) -> Result<(Schedule, bool)> {
        let spec = spec.clone();
        self.write(move |c| put(c, &spec, now))
    }

    fn get_schedule(&self, name: &ScheduleName) -> Result<Schedule> {
        self.read(|c| get(c, name.as_str()))?
            .ok_or(crate::storage::StoreError::NotFound)
    }

    fn list_schedules(&self, after: Option<&str>, limit: usize) -> Result<SchedulePage> {
        let items = self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules WHERE name > ?1 ORDER BY name
                     LIMIT ?2"
                ),
                params![after.unwrap_or(""), (limit + 1) as i64],
            )
        })?;
        Ok(crate::storage::schedule_page(items, limit))
    }

    fn delete_schedule(&self, name: &ScheduleName) -> Result<()> {
        let name = name.clone();
        self.write(move |c| {
            match c
                .prepare_cached("DELETE FROM schedules WHERE name = ?1")
                .and_then(|mut s| s.execute([name.as_str()]))
                .map_err(map_err)?
            {
                0 => Err(crate::storage::StoreError::NotFound),
                _ => Ok(()),
            }
        })
    }

    fn due_schedules(&self, now: Ts, limit: usize) -> Result<Vec<Schedule>> {
        self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules
                     WHERE enabled = 1 AND next_run_at <= ?1 ORDER BY next_run_at LIMIT ?2"
                ),
                params![to_ms(&now), limit as i64],
            )
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
        self.write(move |c| shared::fire(&mut Steps(c), &name, &run, job, now))
    }

    fn trigger_schedule(&self, name: &ScheduleName, job: NewJob, now: Ts) -> Result<Job> {
        let name = name.clone();
        self.write(move |c| shared::trigger(&mut Steps(c), &name, job, now))
    }
}

impl QueueControlStore for SqliteStore {
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
