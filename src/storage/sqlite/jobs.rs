//! Jobs on SQLite. Transitions load the row, apply the domain state machine and save it
//! with its events, all inside the writer's transaction; leasing is one set-based UPDATE.

use super::{map_err, SqliteStore, WriteConn};
use crate::domain::time::{from_ms, to_ms, Ts};
use crate::domain::{
    json_equal, Ack, BulkAction, BulkFilter, BulkStep, Claim, Enqueued, Failure, Fence,
    HeartbeatEvent, Job, JobConflict, JobEvent, JobFilter, JobId, JobPage, JobStatus, NewEvent,
    NewJob, QueueStats, Reclaimed,
};
use crate::storage::counts::StatsByType;
use crate::storage::decode;
use crate::storage::{bulk_step, per_item, JobStore, Result, StoreError};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;
use std::borrow::Borrow;

const COLS: &str = "seq, id, type, status, priority, idempotency_key, code_version, \
    model_version, config_hash, budget_tag, cost_cap_eur, input, result, attempts, \
    max_attempts, available_at, lease_owner, lease_until, lease_token, last_error, \
    created_at, updated_at";

fn json_col(s: Option<String>) -> Option<Value> {
    s.and_then(|t| serde_json::from_str(&t).ok())
}

fn to_json(v: &Value) -> String {
    v.to_string()
}

fn row_to_job(r: &Row<'_>) -> rusqlite::Result<(i64, Job)> {
    super::decoded(0, crate::storage::row::job(r))
}

/// A job by its id (the SQL text made once: `load` runs for every transition).
static SELECT_BY_ID: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {COLS} FROM jobs WHERE id = ?1"));

fn load(c: &Connection, id: JobId) -> Result<(i64, Job)> {
    c.prepare_cached(&SELECT_BY_ID)
        .and_then(|mut s| s.query_row([id.to_string()], row_to_job).optional())
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)
}

pub fn get(c: &Connection, id: JobId) -> Result<Job> {
    load(c, id).map(|(_, j)| j)
}

/// Writes every field a transition can change (the job was `was` before it), and counts
/// the move.
fn save(c: &WriteConn, seq: i64, was: JobStatus, j: &Job) -> Result<()> {
    c.prepare_cached(
        "UPDATE jobs SET status = ?2, result = ?3, attempts = ?4, max_attempts = ?5,
             available_at = ?6, lease_owner = ?7, lease_until = ?8, lease_token = ?9,
             last_error = ?10, updated_at = ?11
         WHERE seq = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            seq,
            j.status.as_str(),
            j.result.as_ref().map(to_json),
            j.attempts,
            j.max_attempts,
            to_ms(&j.available_at),
            j.lease_owner,
            j.lease_until.as_ref().map(to_ms),
            j.lease_token,
            j.last_error,
            to_ms(&j.updated_at),
        ])
    })
    .map_err(map_err)?;
    c.moved(j.job_type.as_str(), Some(was), Some(j.status));
    Ok(())
}

/// Records an event of the job whose key is `seq`.
fn add_event(c: &Connection, seq: i64, ts: Ts, ev: &NewEvent) -> Result<()> {
    add_events(c, ts, &[(seq, ev)])
}

/// How many events one multi-row `INSERT` of `add_events` takes.
const EVENT_CHUNK: usize = 32;
static EVENT_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| event_sql(1));
static EVENT_MANY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| event_sql(EVENT_CHUNK));

/// A multi-row `INSERT` of `rows` events, four parameters each.
fn event_sql(rows: usize) -> String {
    format!(
        "INSERT INTO job_events (job_seq, ts, event, details) VALUES {}",
        (0..rows)
            .map(|k| format!("({})", marks(k * 4 + 1, 4)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Records events, each of the job whose key it names, all at `ts`, in order (their ids
/// ascend in that order): `EVENT_CHUNK` rows per statement, the rest one by one. A lease
/// or an `ack` of a hundred jobs runs four statements for their events, not a hundred.
fn add_events<E: Borrow<NewEvent>>(c: &Connection, ts: Ts, events: &[(i64, E)]) -> Result<()> {
    let ts = to_ms(&ts);
    let run = |st: &mut rusqlite::CachedStatement<'_>, rows: &[(i64, E)]| {
        rows.iter()
            .enumerate()
            .try_for_each(|(k, (seq, ev))| {
                let ev = ev.borrow();
                let at = k * 4;
                st.raw_bind_parameter(at + 1, seq)?;
                st.raw_bind_parameter(at + 2, ts)?;
                st.raw_bind_parameter(at + 3, ev.event)?;
                st.raw_bind_parameter(at + 4, ev.details.as_ref().map(to_json))
            })
            .and_then(|()| st.raw_execute())
            .map(|_| ())
            .map_err(map_err)
    };
    in_chunks(c, events, EVENT_CHUNK, (&EVENT_MANY, &EVENT_ONE), run)
}

/// Runs `rows` through a statement of `chunk` rows (the SQL `many`) as often as they fill
/// it, then the rest one at a time through its one-row form (`one`), in order: SQLite's cost
/// is as much per statement as per row, and two fixed texts keep the statement cache small.
fn in_chunks<T>(
    c: &Connection,
    rows: &[T],
    chunk: usize,
    (many, one): (&str, &str),
    mut run: impl FnMut(&mut rusqlite::CachedStatement<'_>, &[T]) -> Result<()>,
) -> Result<()> {
    let chunks = rows.chunks_exact(chunk);
    let tail = chunks.remainder();
    if rows.len() >= chunk {
        let mut st = c.prepare_cached(many).map_err(map_err)?;
        for part in chunks {
            run(&mut st, part)?;
        }
    }
    if !tail.is_empty() {
        let mut st = c.prepare_cached(one).map_err(map_err)?;
        for row in tail {
            run(&mut st, std::slice::from_ref(row))?;
        }
    }
    Ok(())
}

/// Loads a job, applies a transition and saves it with its events.
fn transition(
    c: &WriteConn,
    id: JobId,
    now: Ts,
    f: impl FnOnce(&mut Job) -> std::result::Result<Vec<NewEvent>, JobConflict>,
) -> Result<Job> {
    let mut events = Vec::new();
    let job = transition_into(c, id, f, &mut events)?;
    add_events(c, now, &events)?;
    Ok(job)
}

/// `transition`, leaving the events to write in `events` (the caller writes them before
/// its operation ends).
fn transition_into(
    c: &WriteConn,
    id: JobId,
    f: impl FnOnce(&mut Job) -> std::result::Result<Vec<NewEvent>, JobConflict>,
    events: &mut Vec<(i64, NewEvent)>,
) -> Result<Job> {
    let (seq, mut job) = load(c, id)?;
    let was = job.status;
    let new = f(&mut job).map_err(StoreError::Conflict)?;
    save(c, seq, was, &job)?;
    events.extend(new.into_iter().map(|ev| (seq, ev)));
    Ok(job)
}

/// A multi-row `INSERT` of `rows` jobs: `PARAMS_PER_JOB` parameters per row, the last of
/// them (now) filling both times.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|k| {
            let p: Vec<String> = (1..=PARAMS_PER_JOB)
                .map(|i| format!("?{}", k * PARAMS_PER_JOB + i))
                .collect();
            let (now, rest) = (&p[12], p[2..10].join(", "));
            format!(
                "({}, {}, 'queued', {rest}, 0, {}, {}, {now}, {now})",
                p[0], p[1], p[10], p[11]
            )
        })
        .collect();
    format!(
        "INSERT INTO jobs (id, type, status, priority, idempotency_key, code_version,
             model_version, config_hash, budget_tag, cost_cap_eur, input, attempts,
             max_attempts, available_at, created_at, updated_at)
         VALUES {}",
        values.join(", ")
    )
}

const PARAMS_PER_JOB: usize = 13;
/// Jobs per multi-row `INSERT`. A statement's start, cursors and halt cost about as much as
/// a row's own inserts; a batch pays them once per chunk. A tail shorter than a chunk goes
/// one row per statement, so two statement texts serve every batch.
const INSERT_CHUNK: usize = 32;
static INSERT_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(1));
static INSERT_MANY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| insert_sql(INSERT_CHUNK));

/// Enqueues in order. Jobs without an idempotency key are inserted a chunk at a time; a
/// job with one first inserts those before it (keeping their order), then looks its key up.
pub fn enqueue(c: &WriteConn, new: Vec<NewJob>, now: Ts) -> Result<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(new.len());
    let mut pending = Vec::with_capacity(new.len());
    for nj in new {
        if nj.meta.idempotency_key.is_none() {
            pending.push(Job::queued(nj, now));
            continue;
        }
        insert_jobs(c, &mut pending, &mut out)?;
        match replayed(c, &nj)? {
            Some(done) => out.push(done),
            None => insert_jobs(c, &mut vec![Job::queued(nj, now)], &mut out)?,
        }
    }
    insert_jobs(c, &mut pending, &mut out)?;
    Ok(out)
}

/// The answer for a job whose idempotency key is already taken: the job it names, or a
/// conflict when the inputs differ. None when the key is free.
fn replayed(c: &WriteConn, nj: &NewJob) -> Result<Option<Enqueued>> {
    let Some(key) = &nj.meta.idempotency_key else {
        return Ok(None);
    };
    let existing = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM jobs WHERE type = ?1 AND idempotency_key = ?2"
        ))
        .and_then(|mut s| {
            s.query_row(params![nj.job_type.as_str(), key], row_to_job)
                .optional()
        })
        .map_err(map_err)?;
    match existing {
        None => Ok(None),
        Some((_, job)) if json_equal(&job.input, &nj.input) => Ok(Some(Enqueued::Replayed(job))),
        Some(_) => Err(StoreError::Conflict(JobConflict::IdempotencyConflict)),
    }
}

/// Inserts `jobs` (emptying it) and answers each as created, in order.
fn insert_jobs(c: &WriteConn, jobs: &mut Vec<Job>, out: &mut Vec<Enqueued>) -> Result<()> {
    in_chunks(
        c,
        jobs,
        INSERT_CHUNK,
        (&INSERT_MANY, &INSERT_ONE),
        insert_rows,
    )?;
    for job in jobs.drain(..) {
        c.moved(job.job_type.as_str(), None, Some(JobStatus::Queued));
        out.push(Enqueued::Created(job));
    }
    Ok(())
}

/// Binds `jobs` to the rows of `st` (a statement of exactly that many rows) and runs it.
fn insert_rows(st: &mut rusqlite::CachedStatement<'_>, jobs: &[Job]) -> Result<()> {
    let bound = jobs.iter().enumerate().try_for_each(|(k, job)| {
        let at = k * PARAMS_PER_JOB;
        let m = &job.meta;
        st.raw_bind_parameter(at + 1, job.id.to_string())?;
        st.raw_bind_parameter(at + 2, job.job_type.as_str())?;
        st.raw_bind_parameter(at + 3, job.priority)?;
        st.raw_bind_parameter(at + 4, &m.idempotency_key)?;
        st.raw_bind_parameter(at + 5, &m.code_version)?;
        st.raw_bind_parameter(at + 6, &m.model_version)?;
        st.raw_bind_parameter(at + 7, &m.config_hash)?;
        st.raw_bind_parameter(at + 8, &m.budget_tag)?;
        st.raw_bind_parameter(at + 9, &m.cost_cap_eur)?;
        st.raw_bind_parameter(at + 10, to_json(&job.input))?;
        st.raw_bind_parameter(at + 11, job.max_attempts)?;
        st.raw_bind_parameter(at + 12, to_ms(&job.available_at))?;
        st.raw_bind_parameter(at + 13, to_ms(&job.created_at))
    });
    match bound.and_then(|()| st.raw_execute()) {
        Ok(_) => Ok(()),
        // A taken id (a caller may choose its job's id) is the only constraint an insert
        // can break: a taken idempotency key was looked up first.
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict(JobConflict::DuplicateJobId))
        }
        Err(e) => Err(map_err(e)),
    }
}

/// What a lease sets; `?1` the worker, `?2` the lease's end, `?3` now.
const LEASE_SET: &str = "UPDATE jobs SET status = 'leased', attempts = attempts + 1,
     lease_owner = ?1, lease_until = ?2, lease_token = lower(hex(randomblob(16))),
     updated_at = ?3";

/// `?{first}, ?{first+1}, …` for `n` values.
fn marks(first: usize, n: usize) -> String {
    (0..n)
        .map(|i| format!("?{}", i + first))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn claim(c: &WriteConn, claim: &Claim, now: Ts) -> Result<Vec<Job>> {
    let controls = super::schedules::controls(c)?;
    let Some(crate::storage::ClaimControls { paused, limited }) =
        crate::storage::claim_controls(claim, controls)
    else {
        return claim_ready(c, claim, now);
    };
    // The writer holds the database's write lock: the leased counts read here stay true
    // until this transaction commits, so a limit cannot be overrun by another leaser.
    let mut counted = Vec::with_capacity(limited.len());
    for (t, max) in limited {
        let leased: i64 = c
            .prepare_cached("SELECT COUNT(*) FROM jobs WHERE status = 'leased' AND type = ?1")
            .and_then(|mut s| s.query_row([&t], |r| r.get(0)))
            .map_err(map_err)?;
        let control = crate::domain::schedule::QueueControl {
            paused: false,
            max_leased: Some(max),
        };
        counted.push((t, control, leased));
    }
    let jobs = crate::storage::controlled_claim(
        &mut { c },
        claim,
        crate::storage::Budget::new(paused, counted),
        |c, need, excluded| candidates(c, claim, need, excluded, now),
        |c, seqs| lease_rows(c, claim, seqs, now),
    )?;
    leased(c, claim, jobs, now)
}

/// The next `need` ready jobs of the claim's types, outside `excluded`, in lease order.
fn candidates(
    c: &WriteConn,
    claim: &Claim,
    need: usize,
    excluded: &[String],
    now: Ts,
) -> Result<Vec<(i64, String)>> {
    let mut types = claim_types(c, claim)?;
    types.retain(|t| !excluded.contains(t));
    let heads = heads(c, &types, need, now)?;
    Ok(heads.into_iter().map(|h| (h.seq, h.job_type)).collect())
}

/// The types a claim may lease: those it names (each once), or every type with a queued
/// job.
fn claim_types(c: &Connection, claim: &Claim) -> Result<Vec<String>> {
    if claim.types.is_empty() {
        return queued_types(c);
    }
    let mut types: Vec<String> = claim.types.iter().map(|t| t.as_str().to_string()).collect();
    types.sort_unstable();
    types.dedup();
    Ok(types)
}

/// Every type with a queued job, in order: one seek of the ready index per type.
fn queued_types(c: &Connection) -> Result<Vec<String>> {
    let mut next = c
        .prepare_cached(
            "SELECT type FROM jobs WHERE status = 'queued' AND type > ?1 ORDER BY type LIMIT 1",
        )
        .map_err(map_err)?;
    let mut types: Vec<String> = Vec::new();
    loop {
        let after = types.last().map_or("", String::as_str);
        match next
            .query_row([after], |r| r.get(0))
            .optional()
            .map_err(map_err)?
        {
            Some(t) => types.push(t),
            None => return Ok(types),
        }
    }
}

/// A ready job at the head of its type's queue.
struct Head {
    seq: i64,
    id: String,
    job_type: String,
}

/// The first `need` ready jobs of `types` in lease order (priority, then available_at,
/// then created_at, then insertion): the first `need` of each type, read in order from the
/// per-type ready index, merged. There is no index across types: enqueueing writes one
/// ready entry per job, not two.
fn heads(c: &Connection, types: &[String], need: usize, now: Ts) -> Result<Vec<Head>> {
    let mut st = c
        .prepare_cached(
            "SELECT priority, available_at, created_at, seq, id FROM jobs
             WHERE status = 'queued' AND type = ?1 AND available_at <= ?2
             ORDER BY priority, available_at, created_at LIMIT ?3",
        )
        .map_err(map_err)?;
    let mut all: Vec<((i64, i64, i64, i64), Head)> = Vec::new();
    for t in types {
        let rows = st
            .query_map(params![t, to_ms(&now), need as i64], |r| {
                let key = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                let head = Head {
                    seq: key.3,
                    id: r.get(4)?,
                    job_type: t.clone(),
                };
                Ok((key, head))
            })
            .map_err(map_err)?;
        for row in rows {
            all.push(row.map_err(map_err)?);
        }
    }
    all.sort_unstable_by_key(|(key, _)| *key);
    all.truncate(need);
    Ok(all.into_iter().map(|(_, h)| h).collect())
}

/// Leases the rows `seqs` (ready jobs the caller chose).
fn lease_rows(c: &WriteConn, claim: &Claim, seqs: &[i64], now: Ts) -> Result<Vec<(i64, Job)>> {
    let sql = format!(
        "{LEASE_SET} WHERE seq IN ({}) RETURNING {COLS}",
        marks(4, seqs.len())
    );
    let mut args: Vec<rusqlite::types::Value> = vec![
        claim.worker_id.to_string().into(),
        to_ms(&(now + claim.lease)).into(),
        to_ms(&now).into(),
    ];
    args.extend(seqs.iter().map(|s| (*s).into()));
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_map(params_from_iter(args), row_to_job)?.collect())
        .map_err(map_err)
}

/// Leases the first `?4` ready jobs of type `?5` (`LEASE_SET`'s parameters first).
static CLAIM_ONE_TYPE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{LEASE_SET}
         WHERE seq IN (SELECT seq FROM jobs
                       WHERE status = 'queued' AND type = ?5 AND available_at <= ?3
                       ORDER BY priority, available_at, created_at LIMIT ?4)
         RETURNING {COLS}"
    )
});

/// A claim no queue control applies to. Of one type (the common case): one statement that
/// reads the type's ready index in order. Of several: their queue heads merged, then leased.
fn claim_ready(c: &WriteConn, claim: &Claim, now: Ts) -> Result<Vec<Job>> {
    let types = claim_types(c, claim)?;
    let jobs = match types.as_slice() {
        [] => Vec::new(),
        [job_type] => {
            let args = params![
                claim.worker_id.to_string(),
                to_ms(&(now + claim.lease)),
                to_ms(&now),
                claim.limit as i64,
                job_type,
            ];
            c.prepare_cached(&CLAIM_ONE_TYPE)
                .and_then(|mut s| s.query_map(args, row_to_job)?.collect())
                .map_err(map_err)?
        }
        _ => {
            let seqs: Vec<i64> = heads(c, &types, claim.limit, now)?
                .into_iter()
                .map(|h| h.seq)
                .collect();
            if seqs.is_empty() {
                Vec::new()
            } else {
                lease_rows(c, claim, &seqs, now)?
            }
        }
    };
    leased(c, claim, jobs, now)
}

/// Orders freshly leased jobs (with their keys), counts them and writes their `leased`
/// events.
fn leased(c: &WriteConn, claim: &Claim, mut jobs: Vec<(i64, Job)>, now: Ts) -> Result<Vec<Job>> {
    jobs.sort_by(|(_, a), (_, b)| {
        (a.priority, a.available_at, a.created_at).cmp(&(b.priority, b.available_at, b.created_at))
    });
    let until = crate::domain::time::format(&(now + claim.lease));
    let mut events = Vec::with_capacity(jobs.len());
    for (seq, j) in &jobs {
        c.moved(
            j.job_type.as_str(),
            Some(JobStatus::Queued),
            Some(JobStatus::Leased),
        );
        events.push((
            *seq,
            NewEvent::leased(claim.worker_id.as_str(), j.attempts, &until),
        ));
    }
    add_events(c, now, &events)?;
    Ok(jobs.into_iter().map(|(_, j)| j).collect())
}

pub fn heartbeat(c: &WriteConn, id: JobId, fence: &Fence, until: Ts, now: Ts) -> Result<Job> {
    let (seq, mut job) = load(c, id)?;
    let was = job.status;
    let ev = job
        .heartbeat(fence, until, now)
        .map_err(StoreError::Conflict)?;
    save(c, seq, was, &job)?;
    // Coalesce: a run of heartbeats is one event row whose count and time move.
    let last: Option<(i64, String, Option<String>)> = c
        .prepare_cached(
            "SELECT id, event, details FROM job_events WHERE job_seq = ?1 ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(map_err)?;
    let last = last.map(|(ev_id, kind, details)| (ev_id, kind, json_col(details)));
    match HeartbeatEvent::coalesce(ev, last) {
        HeartbeatEvent::Update { id: ev_id, details } => {
            c.prepare_cached("UPDATE job_events SET ts = ?2, details = ?3 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![ev_id, to_ms(&now), to_json(&details)]))
                .map_err(map_err)?;
        }
        HeartbeatEvent::Append(ev) => add_event(c, seq, now, &ev)?,
    }
    Ok(job)
}

pub fn complete(
    c: &WriteConn,
    id: JobId,
    fence: &Fence,
    result: Option<Value>,
    now: Ts,
) -> Result<Job> {
    transition(c, id, now, |j| j.complete(fence, result, now))
}

pub fn fail(c: &WriteConn, id: JobId, fence: &Fence, failure: &Failure, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.fail(fence, failure, now))
}

pub fn cancel(c: &WriteConn, id: JobId, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.cancel(now))
}

pub fn retry(c: &WriteConn, id: JobId, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.retry(now))
}

pub fn release(c: &WriteConn, id: JobId, fence: &Fence, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.release(fence, now))
}

/// Finishes a batch of leased jobs, each item judged as its own complete/fail call. A
/// refused item writes nothing (the state machine refuses before anything is saved).
pub fn ack(c: &WriteConn, acks: Vec<Ack>, now: Ts) -> Result<Vec<Result<Job>>> {
    let mut events = Vec::with_capacity(acks.len());
    let out = acks
        .iter()
        .map(|a| per_item(transition_into(c, a.id, |j| j.ack(a, now), &mut events)))
        .collect::<Result<Vec<_>>>()?;
    add_events(c, now, &events)?;
    Ok(out)
}

/// One bounded pass of a bulk retry or cancel, in insertion order.
pub fn bulk(
    c: &WriteConn,
    action: BulkAction,
    filter: &BulkFilter,
    after: i64,
    limit: usize,
    now: Ts,
) -> Result<BulkStep> {
    if filter.selects_nothing(action) {
        return Ok(BulkStep::done());
    }
    let states = action.selected_states(filter.status);
    let ids = filter
        .ids
        .as_ref()
        .map(|ids| Value::from(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string());
    let rows: Vec<(i64, Job)> = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM jobs
             WHERE seq > ?1 AND status IN (SELECT value FROM json_each(?2))
               AND (?3 IS NULL OR type = ?3)
               AND (?4 IS NULL OR id IN (SELECT value FROM json_each(?4)))
             ORDER BY seq LIMIT ?5"
        ))
        .and_then(|mut s| {
            s.query_map(
                params![
                    after,
                    Value::from(states).to_string(),
                    filter.job_type.as_ref().map(|t| t.as_str()),
                    ids,
                    limit as i64
                ],
                row_to_job,
            )?
            .collect()
        })
        .map_err(map_err)?;
    bulk_step(rows, limit, action, now, |seq, was, job, events| {
        save(c, seq, was, job)?;
        events.iter().try_for_each(|ev| add_event(c, seq, now, ev))
    })
}

pub fn list(c: &Connection, f: &JobFilter) -> Result<JobPage> {
    let limit = f.limit.max(1);
    // A finished status is walked in `jobs_finished_by_status`, newest first. The status is
    // written into the statement (one of five fixed words): plans are fixed per statement,
    // and a partial index is chosen only for a condition known when it is prepared.
    let (index, status_filter) = match f.status {
        // One equality of the index's condition (`status = 'a' OR status = 'b' OR …`) is
        // what lets SQLite use the partial index.
        Some(s) if s.is_finished() => (
            "INDEXED BY jobs_finished_by_status",
            format!("status = '{}' AND ?1 IS NOT NULL", s.as_str()),
        ),
        Some(s) => ("", format!("status = '{}' AND ?1 IS NOT NULL", s.as_str())),
        None => ("", "?1 IS NULL".to_string()),
    };
    let mut items: Vec<(i64, Job)> = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM jobs {index}
             WHERE {status_filter} AND seq < ?3 AND (?2 IS NULL OR type = ?2)
             ORDER BY seq DESC LIMIT ?4"
        ))
        .and_then(|mut s| {
            s.query_map(
                params![
                    f.status.map(|s| s.as_str()),
                    f.job_type.as_ref().map(|t| t.as_str()),
                    f.before_seq.unwrap_or(i64::MAX),
                    (limit + 1) as i64
                ],
                row_to_job,
            )?
            .collect()
        })
        .map_err(map_err)?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_seq = if more {
        items.last().map(|(s, _)| *s)
    } else {
        None
    };
    Ok(JobPage {
        items: items.into_iter().map(|(_, j)| j).collect(),
        next_seq,
    })
}

pub fn events(c: &Connection, id: JobId) -> Result<Vec<JobEvent>> {
    let (seq, job) = load(c, id)?;
    let stored: Vec<JobEvent> = c
        .prepare_cached(
            "SELECT id, ts, event, details FROM job_events WHERE job_seq = ?1 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map([seq], |r| {
                Ok(JobEvent {
                    id: r.get(0)?,
                    ts: from_ms(r.get(1)?),
                    event: r.get(2)?,
                    details: json_col(r.get(3)?),
                })
            })?
            .collect()
        })
        .map_err(map_err)?;
    Ok(JobEvent::history(&job, stored))
}

pub fn queue_stats(c: &Connection, now: Ts) -> Result<Vec<QueueStats>> {
    let mut stats = StatsByType::default();
    let counts: Vec<(String, String, i64)> = c
        .prepare_cached("SELECT type, status, n FROM job_counts WHERE n <> 0")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(map_err)?;
    for (t, status, n) in counts {
        stats.count(&t, &status, n);
    }
    let oldest: Vec<(String, i64)> = c
        .prepare_cached(
            "SELECT type, MIN(available_at) FROM jobs
             WHERE status = 'queued' AND available_at <= ?1 GROUP BY type",
        )
        .and_then(|mut s| {
            s.query_map([to_ms(&now)], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(map_err)?;
    for (t, at) in oldest {
        stats.oldest_ready(&t, at, to_ms(&now));
    }
    let expired: Vec<(String, i64)> = c
        .prepare_cached("SELECT type, leases_expired_total FROM job_type_counters")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(map_err)?;
    for (t, n) in expired {
        stats.leases_expired(&t, n);
    }
    Ok(stats.finish())
}

pub fn ready_ids(c: &Connection, now: Ts, limit: usize) -> Result<Vec<(JobId, String)>> {
    heads(c, &queued_types(c)?, limit, now)?
        .into_iter()
        .map(|h| Ok((decode::job_id(&h.id)?, h.job_type)))
        .collect()
}

pub fn reclaim_expired(c: &WriteConn, now: Ts, limit: usize) -> Result<Vec<Reclaimed>> {
    let expired: Vec<(i64, Job)> = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM jobs WHERE status = 'leased' AND lease_until < ?1
             ORDER BY lease_until LIMIT ?2"
        ))
        .and_then(|mut s| {
            s.query_map(params![to_ms(&now), limit as i64], row_to_job)?
                .collect()
        })
        .map_err(map_err)?;
    let mut out = Vec::with_capacity(expired.len());
    for (seq, mut job) in expired {
        let was = job.status;
        let events = job.expire(now);
        save(c, seq, was, &job)?;
        for ev in &events {
            add_event(c, seq, now, ev)?;
        }
        c.prepare_cached(
            "INSERT INTO job_type_counters (type, leases_expired_total) VALUES (?1, 1)
             ON CONFLICT (type) DO UPDATE SET leases_expired_total = leases_expired_total + 1",
        )
        .and_then(|mut s| s.execute([job.job_type.as_str()]))
        .map_err(map_err)?;
        out.push(Reclaimed {
            id: job.id,
            job_type: job.job_type,
            status: job.status,
        });
    }
    Ok(out)
}

pub fn prune_finished(c: &WriteConn, before: Ts, limit: usize) -> Result<usize> {
    let gone: Vec<(i64, String, String)> = c
        .prepare_cached(
            "DELETE FROM jobs WHERE seq IN (
                 SELECT seq FROM jobs INDEXED BY jobs_finished
                 WHERE (status = 'succeeded' OR status = 'failed' OR status = 'canceled')
                   AND updated_at < ?1 LIMIT ?2)
             RETURNING seq, type, status",
        )
        .and_then(|mut s| {
            s.query_map(params![to_ms(&before), limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect()
        })
        .map_err(map_err)?;
    // Their events go in the same transaction (no foreign key cascades: migration V12).
    let mut events = c
        .prepare_cached("DELETE FROM job_events WHERE job_seq = ?1")
        .map_err(map_err)?;
    for (seq, t, status) in &gone {
        events.execute([seq]).map_err(map_err)?;
        c.moved(t, Some(decode::job_status(status)?), None);
    }
    Ok(gone.len())
}

/// Adds a transaction's net job-count changes to `job_counts` (at its commit).
pub(super) fn add_counts(c: &Connection, sums: &[(String, JobStatus, i64)]) -> Result<()> {
    for (t, status, n) in sums {
        c.prepare_cached(
            "INSERT INTO job_counts (type, status, n) VALUES (?1, ?2, ?3)
             ON CONFLICT (type, status) DO UPDATE SET n = n + excluded.n",
        )
        .and_then(|mut s| s.execute(params![t, status.as_str(), n]))
        .map_err(map_err)?;
    }
    Ok(())
}

impl JobStore for SqliteStore {
    fn enqueue_jobs(&self, new: Vec<NewJob>, now: Ts) -> Result<Vec<Enqueued>> {
        if new.len() == 1 {
            // One job: the insert is the only write (an idempotency replay or a refusal
            // writes nothing).
            return self.write_single(move |c| enqueue(c, new, now));
        }
        self.write(move |c| enqueue(c, new, now))
    }

    fn get_job(&self, id: JobId) -> Result<Job> {
        self.read(|c| get(c, id))
    }

    fn claim_jobs(&self, claim: &Claim, now: Ts) -> Result<Vec<Job>> {
        let claim = claim.clone();
        self.write(move |c| self::claim(c, &claim, now))
    }

    fn heartbeat_job(&self, id: JobId, fence: &Fence, lease_until: Ts, now: Ts) -> Result<Job> {
        let fence = fence.clone();
        self.write(move |c| heartbeat(c, id, &fence, lease_until, now))
    }

    fn complete_job(
        &self,
        id: JobId,
        fence: &Fence,
        result: Option<Value>,
        now: Ts,
    ) -> Result<Job> {
        let fence = fence.clone();
        self.write(move |c| complete(c, id, &fence, result, now))
    }

    fn fail_job(&self, id: JobId, fence: &Fence, failure: &Failure, now: Ts) -> Result<Job> {
        let (fence, failure) = (fence.clone(), failure.clone());
        self.write(move |c| fail(c, id, &fence, &failure, now))
    }

    fn cancel_job(&self, id: JobId, now: Ts) -> Result<Job> {
        self.write(move |c| cancel(c, id, now))
    }

    fn retry_job(&self, id: JobId, now: Ts) -> Result<Job> {
        self.write(move |c| retry(c, id, now))
    }

    fn release_job(&self, id: JobId, fence: &Fence, now: Ts) -> Result<Job> {
        let fence = fence.clone();
        self.write(move |c| release(c, id, &fence, now))
    }

    fn ack_jobs(&self, acks: Vec<Ack>, now: Ts) -> Result<Vec<Result<Job>>> {
        self.write(move |c| ack(c, acks, now))
    }

    fn bulk_jobs(
        &self,
        action: BulkAction,
        filter: &BulkFilter,
        after: i64,
        limit: usize,
        now: Ts,
    ) -> Result<BulkStep> {
        let filter = filter.clone();
        self.write(move |c| bulk(c, action, &filter, after, limit, now))
    }

    fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage> {
        self.read(|c| list(c, filter))
    }

    fn job_events(&self, id: JobId) -> Result<Vec<JobEvent>> {
        self.read(|c| events(c, id))
    }

    fn queue_stats(&self, now: Ts) -> Result<Vec<QueueStats>> {
        self.read(|c| queue_stats(c, now))
    }

    fn ready_job_ids(&self, now: Ts, limit: usize) -> Result<Vec<(JobId, String)>> {
        self.read(|c| ready_ids(c, now, limit))
    }

    fn reclaim_expired_leases(&self, now: Ts, limit: usize) -> Result<Vec<Reclaimed>> {
        self.write(move |c| reclaim_expired(c, now, limit))
    }

    fn prune_finished_jobs(&self, before: Ts, limit: usize) -> Result<usize> {
        self.write(move |c| prune_finished(c, before, limit))
    }
}
