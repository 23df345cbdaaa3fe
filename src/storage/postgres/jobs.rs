//! Jobs on PostgreSQL: the same rules as the SQLite backend (the domain state machine in
//! `domain::job`), made safe for several writer transactions and several nodes at once.
//! Transitions lock the row (`FOR UPDATE`), apply the state machine and save it with its
//! events; leasing and lease reclaim take rows with `FOR UPDATE SKIP LOCKED`, so nodes
//! never wait on or double-lease each other's rows. Work that becomes ready now wakes the
//! leasers of every node (NOTIFY, delivered at commit).

use super::batch::{fly, only, quick_many, Flight, QuickReq};
use super::conn::{map_err, owned_params, OwnedQuery};
use super::{PgConn, PgStore};
use crate::domain::time::{from_ms, to_ms, Ts};
use crate::domain::{
    json_equal, Ack, AckOutcome, BulkAction, BulkFilter, BulkStep, Claim, Enqueued, Failure, Fence,
    HeartbeatEvent, Job, JobConflict, JobEvent, JobFilter, JobId, JobPage, JobStatus, NewEvent,
    NewJob, QueueStats, Reclaimed,
};
use crate::storage::counts::StatsByType;
use crate::storage::{bulk_step, decode, per_item, JobStore, Result, StoreError, Wake};
use postgres::Row;
use serde_json::Value;
use std::collections::BTreeMap;

/// The columns `row_to_job` reads, in its order.
macro_rules! cols {
    () => {
        "seq, id::text, type, status, priority, idempotency_key, code_version, model_version, \
         config_hash, budget_tag, cost_cap_eur, input, result, attempts, max_attempts, \
         available_at, lease_owner, lease_until, lease_token, last_error, created_at, updated_at"
    };
}

const SELECT_BY_ID: &str = concat!("SELECT ", cols!(), " FROM jobs WHERE id = $1::text::uuid");
const LOCK_BY_ID: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM jobs WHERE id = $1::text::uuid FOR UPDATE"
);
/// A job with the events its row carries (`OnRow`).
const SELECT_WITH_EVENTS: &str = concat!(
    "SELECT ",
    cols!(),
    ", finish_event, lease_event, leased_at, leased_until FROM jobs WHERE id = $1::text::uuid"
);
const SELECT_BY_KEY: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM jobs WHERE type = $1 AND idempotency_key = $2"
);

/// The `SET` items with which a lease's `leased` event rides on the job row (V20): its id
/// from the events' sequence, its time `$at` and the lease's end `$until` as given then
/// (the worker is `lease_owner`, the attempt `attempts`). `events` rebuilds the event from
/// them; a lease that ends other than in success stores it as a row (`save`).
macro_rules! lease_on_row {
    ($at:literal, $until:literal) => {
        concat!(
            "lease_event = nextval('job_events_id_seq'), leased_at = ",
            $at,
            ", leased_until = ",
            $until
        )
    };
}

/// `UPDATE jobs SET …` that leases the rows to worker `$worker` until `$until`, at `$now`:
/// one more attempt, a fresh random lease token (32 lowercase hex characters, like SQLite's
/// `lower(hex(randomblob(16)))`), and the `leased` event on the row (`lease_on_row`).
macro_rules! lease_set {
    ($worker:literal, $until:literal, $now:literal) => {
        concat!(
            "UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_owner = ",
            $worker,
            ", lease_until = ",
            $until,
            ", lease_token = replace(gen_random_uuid()::text, '-', ''), updated_at = ",
            $now,
            ", ",
            lease_on_row!($now, $until)
        )
    };
}

/// The job types with queued jobs, as `t0(type)` with a NULL last row: a loose scan of
/// `jobs_ready_by_type`, one seek per type (there is no index of ready jobs across types).
/// The statement must begin `WITH RECURSIVE`.
macro_rules! queued_types {
    () => {
        "t0 AS (
           (SELECT type FROM jobs WHERE status = 'queued' ORDER BY type LIMIT 1)
           UNION ALL
           SELECT (SELECT j.type FROM jobs j WHERE j.status = 'queued' AND j.type > t0.type
                    ORDER BY j.type LIMIT 1)
             FROM t0 WHERE t0.type IS NOT NULL)"
    };
}

/// Every type with queued jobs, as the CTEs `t0` and `t(type)`.
macro_rules! any_types {
    () => {
        concat!(
            queued_types!(),
            ", t AS (SELECT type FROM t0 WHERE type IS NOT NULL)"
        )
    };
}
/// The claim's types (`$6`, repeats dropped), as the CTE `t(type)`.
macro_rules! named_types {
    () => {
        "t AS (SELECT DISTINCT type FROM unnest($6::text[]) AS u(type))"
    };
}
/// The first `$lim` ready jobs (`$now` is now) of each type in `t`, not locked, as rows of
/// `$cols`: one seek per type into `jobs_ready_by_type`.
macro_rules! heads_of_types {
    ($cols:literal, $now:literal, $lim:literal) => {
        concat!(
            "SELECT x.* FROM t CROSS JOIN LATERAL (
               SELECT ",
            $cols,
            " FROM jobs
                WHERE status = 'queued' AND type = t.type AND available_at <= ",
            $now,
            "
                ORDER BY ",
            one_type_order!(),
            " LIMIT ",
            $lim,
            ") x"
        )
    };
}
/// The first `$lim` ready jobs (`$now` is now) of the type `$type`, in lease order, locked
/// (`SKIP LOCKED`: a row another claim holds is passed over), as rows of `$cols`, when
/// `$gate` holds: one seek into `jobs_ready_by_type`.
macro_rules! one_type_locked {
    ($cols:literal, $gate:expr, $type:literal, $now:literal, $lim:literal) => {
        concat!(
            "SELECT ",
            $cols,
            " FROM jobs
              WHERE ",
            $gate,
            " AND status = 'queued' AND type = ",
            $type,
            " AND available_at <= ",
            $now,
            "
              ORDER BY ",
            one_type_order!(),
            " LIMIT ",
            $lim,
            "
              FOR UPDATE SKIP LOCKED"
        )
    };
}

/// Ready jobs across several types, in lease order, locked: the CTE `c(seq, type,
/// priority, available_at, created_at)` holds the first `$lim` ready jobs of the types in
/// `t(type)` (`$now` is now), `$gate` being true. Each type's ready jobs are read in order
/// from `jobs_ready_by_type`: when `t` holds one type, `$lim` of it are locked directly;
/// otherwise the first `$lim` of each type are read (not locked) and merged, which says how
/// many to take of each type, and then that many are locked from the head of each type's
/// queue (`SKIP LOCKED`: a row another claim holds is passed over, and the next of its
/// type taken). So no more rows are locked than are leased, and no index of all ready jobs
/// is needed: enqueueing writes one ready entry per job, not two.
macro_rules! ready_across_types {
    ($now:literal, $lim:literal, $gate:expr) => {
        concat!(
            "h AS (",
            heads_of_types!("type, priority, available_at, created_at, seq", $now, $lim),
            " WHERE (SELECT count(*) FROM t) > 1),
             k AS (SELECT type AS k_type, (",
            $lim,
            ")::bigint AS k_n FROM t WHERE (SELECT count(*) FROM t) = 1
                   UNION ALL
                   SELECT type, count(*) FROM (SELECT type FROM h ORDER BY ",
            lease_order!(),
            " LIMIT ",
            $lim,
            ") top GROUP BY type),
             c AS (SELECT y.* FROM k CROSS JOIN LATERAL (",
            one_type_locked!(
                "seq, type, priority, available_at, created_at",
                $gate,
                "k.k_type",
                $now,
                "k.k_n"
            ),
            ") y)"
        )
    };
}

/// A claim of ready jobs (`$ready` defines the CTE `c(seq, …)`, those to lease, locked)
/// that also says whether any queue control exists: its rows are the leased jobs, each
/// followed by a `controlled` column, or one row of NULLs and that column when nothing was
/// leased. Unless `$5` says the controls were already found not to apply, it leases
/// nothing when a control exists, so the usual case (no controls at all) is one round
/// trip, the `leased` events included (on the rows, `lease_on_row`). The lease token is
/// random per row: 32 lowercase hex characters, like SQLite's `lower(hex(randomblob(16)))`.
macro_rules! claim_sql {
    ($ready:expr, $rows:expr) => {
        concat!(
            "WITH RECURSIVE ctl AS (SELECT EXISTS (SELECT 1 FROM queue_controls) AS controlled),
             ",
            $ready,
            ",
             l AS (
               ",
            lease_set!("$1", "$2", "$3"),
            "
               WHERE ",
            $rows,
            "
               RETURNING ",
            cols!(),
            ")
             SELECT l.*, ctl.controlled FROM ctl LEFT JOIN l ON true"
        )
    };
}
/// The gate of a single claim: nothing is locked when a queue control exists, unless `$5`
/// says the controls were found not to apply.
macro_rules! claim_gate {
    () => {
        "($5::bool OR NOT (SELECT controlled FROM ctl))"
    };
}
/// How the claim statements find the rows they lease in the job table. The rows of one
/// type's queue: as a semi-join, which stays a few probes of the primary key even on a plan
/// made while the table was nearly empty. The rows merged from several types: as an array
/// of keys, which on a loaded table is cheaper than the semi-join (`drain-4` +3 %); planned
/// on a table that was nearly empty and never analyzed, both read the whole table, until
/// autovacuum's first ANALYZE drops the cached plan.
macro_rules! one_type_rows {
    () => {
        "seq IN (SELECT seq FROM c)"
    };
}
macro_rules! merged_rows {
    () => {
        "seq = ANY(ARRAY(SELECT seq FROM c))"
    };
}
/// The order in which ready jobs are leased.
macro_rules! lease_order {
    () => {
        "priority, available_at, created_at, seq"
    };
}
/// The same order for the jobs of one type, written so that `jobs_ready_by_type` gives it
/// without sorting: reading one type's ready jobs is one seek into that index.
macro_rules! one_type_order {
    () => {
        concat!("type, ", lease_order!())
    };
}
const CLAIM_ANY: &str = claim_sql!(
    concat!(
        any_types!(),
        ", ",
        ready_across_types!("$3", "$4", claim_gate!())
    ),
    merged_rows!()
);
const CLAIM_TYPES: &str = claim_sql!(
    concat!(
        named_types!(),
        ", ",
        ready_across_types!("$3", "$4", claim_gate!())
    ),
    merged_rows!()
);
const CLAIM_ONE_TYPE: &str = claim_sql!(
    concat!(
        "c AS (",
        one_type_locked!("seq", claim_gate!(), "ANY($6::text[])", "$3", "$4"),
        ")"
    ),
    one_type_rows!()
);

/// Many claims of one set of types in one statement, as `claim_sql` makes one (`$ready`
/// defines the CTE `c`, the ready jobs to lease, locked, at most `(SELECT count(*) FROM s)`
/// of them): the claims are `unnest`ed (worker, lease end, now, limit), each expanded into
/// `limit` slots in the order given, and the ready jobs, in lease order, fill the slots in
/// turn, so the first claim gets the first jobs. `$5` is the latest
/// claim's now: every claim was made before the statement runs, so a job due by then is
/// ready for all of them (with the earliest, a claim could miss a job that came due after
/// an earlier claim of its batch was made).
/// Rows: the leased jobs, each followed by its claim's position (from 1) and the
/// `controlled` column, or one row of NULLs and that column; when a queue control
/// exists, nothing is leased.
macro_rules! claim_many_sql {
    ($ready:expr, $rows:expr) => {
        concat!(
            "WITH RECURSIVE ctl AS (SELECT EXISTS (SELECT 1 FROM queue_controls) AS controlled),
             r AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                     WITH ORDINALITY AS r(r_worker, r_until, r_now, r_limit, r_i)),
             s AS (SELECT r.*, row_number() OVER (ORDER BY r_i, g) AS s_k
                     FROM r CROSS JOIN LATERAL generate_series(1, r_limit) AS g),
             ",
            $ready,
            ",
             p AS (SELECT seq AS p_seq, row_number() OVER (ORDER BY ",
            lease_order!(),
            ") AS p_k FROM c),
             l AS (
               ",
            lease_set!("s.r_worker", "s.r_until", "s.r_now"),
            "
               FROM p JOIN s ON s.s_k = p.p_k
               WHERE ",
            $rows,
            "
               RETURNING ",
            cols!(),
            ", s.r_i)
             SELECT l.*, ctl.controlled FROM ctl LEFT JOIN l ON true"
        )
    };
}
/// The gate of claims that share a statement: nothing is locked when a queue control
/// exists (each claim then runs alone, where the controls are applied).
macro_rules! many_gate {
    () => {
        "NOT (SELECT controlled FROM ctl)"
    };
}
const CLAIM_MANY_ANY: &str = claim_many_sql!(
    concat!(
        any_types!(),
        ", ",
        ready_across_types!("$5", "(SELECT count(*) FROM s)", many_gate!())
    ),
    concat!("jobs.", merged_rows!(), " AND jobs.seq = p.p_seq")
);
const CLAIM_MANY_TYPES: &str = claim_many_sql!(
    concat!(
        named_types!(),
        ", ",
        ready_across_types!("$5", "(SELECT count(*) FROM s)", many_gate!())
    ),
    concat!("jobs.", merged_rows!(), " AND jobs.seq = p.p_seq")
);
const CLAIM_MANY_ONE_TYPE: &str = claim_many_sql!(
    concat!(
        "c AS (",
        one_type_locked!(
            "seq, priority, available_at, created_at",
            many_gate!(),
            "ANY($6::text[])",
            "$5",
            "(SELECT count(*) FROM s)"
        ),
        ")"
    ),
    "jobs.seq = p.p_seq"
);

/// Claims of one job type each, every claim of a different type, in one statement: the
/// claims are `unnest`ed (worker, lease end, now, limit, type) and each leases the first
/// `limit` ready jobs of its type, as its own single-claim statement would (its own now,
/// one seek into `jobs_ready_by_type`). The types being different, no two claims can reach
/// for the same row. Rows as `claim_many_sql`'s: each leased job followed by its claim's
/// position (from 1) and `controlled`, or one row of NULLs and `controlled`; when a queue
/// control exists, nothing is leased.
const CLAIM_MANY_BY_TYPE: &str = concat!(
    "WITH ctl AS (SELECT EXISTS (SELECT 1 FROM queue_controls) AS controlled),
     r AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[])
             WITH ORDINALITY AS r(r_worker, r_until, r_now, r_limit, r_type, r_i)),
     c AS (SELECT r.r_i AS c_i, y.seq AS c_seq FROM r CROSS JOIN LATERAL (",
    one_type_locked!("seq", many_gate!(), "r.r_type", "r.r_now", "r.r_limit"),
    ") y),
     l AS (
       ",
    lease_set!("r.r_worker", "r.r_until", "r.r_now"),
    "
       FROM c JOIN r ON r.r_i = c.c_i
       WHERE jobs.seq = ANY(ARRAY(SELECT c_seq FROM c)) AND jobs.seq = c.c_seq
       RETURNING ",
    cols!(),
    ", r.r_i)
     SELECT l.*, ctl.controlled FROM ctl LEFT JOIN l ON true"
);

/// Leases the rows `$4` (locked by the caller), their `leased` events on the rows.
const LEASE_SEQS: &str = concat!(
    lease_set!("$1", "$2", "$3"),
    "
     WHERE seq = ANY($4::bigint[])
     RETURNING ",
    cols!()
);

/// The job list, newest first. With a status the statement names it (one of five fixed
/// words, `{status}` below), so a finished status walks `jobs_finished_by_status` whatever
/// plan the server caches: a generic plan cannot pick a partial index for a parameter.
const LIST: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM jobs
     WHERE $1::text IS NULL AND seq < $3::bigint AND ($2::text IS NULL OR type = $2::text)
     ORDER BY seq DESC LIMIT $4"
);
const LIST_BY_STATUS: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM jobs
     WHERE status IN ('succeeded', 'failed', 'canceled', '{status}') AND status = '{status}'
       AND $1::text IS NOT NULL AND seq < $3::bigint
       AND ($2::text IS NULL OR type = $2::text)
     ORDER BY status, seq DESC LIMIT $4"
);

const EXPIRED: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM jobs WHERE status = 'leased' AND lease_until < $1
     ORDER BY lease_until, seq LIMIT $2 FOR UPDATE SKIP LOCKED"
);

fn json_col(s: Option<String>) -> Option<Value> {
    s.and_then(|t| serde_json::from_str(&t).ok())
}

fn to_json(v: &Value) -> String {
    v.to_string()
}

fn row_to_job(r: &Row) -> Result<(i64, Job)> {
    crate::storage::row::job(r)
}

fn load(c: &mut PgConn, sql: &str, id: JobId) -> Result<(i64, Job)> {
    let row = c.query_one(sql, &[&id.to_string()])?;
    row_to_job(&row)
}

pub fn get(c: &mut PgConn, id: JobId) -> Result<Job> {
    load(c, SELECT_BY_ID, id).map(|(_, j)| j)
}

/// The statement of `save`. `$12` says the row carries the `succeeded` event of this
/// transition (see `record`).
macro_rules! save_sql {
    () => {
        "UPDATE jobs SET status = $2, result = $3, attempts = $4, max_attempts = $5,
             available_at = $6, lease_owner = $7, lease_until = $8, lease_token = $9,
             last_error = $10, updated_at = $11,
             finish_event = CASE WHEN $12 THEN nextval('job_events_id_seq') END"
    };
}
const SAVE: &str = concat!(save_sql!(), " WHERE seq = $1");
/// `SAVE` for a transition that ends a lease other than in success: the `leased` event the
/// row carries (`lease_on_row`) is stored as a row first, with its id, time and details (the
/// statement's snapshot is the row before the update: the lease's worker and attempt), and
/// the row no longer carries it. The lease's end is written as `time::format` writes it.
const SAVE_ENDING_LEASE: &str = concat!(
    "WITH e AS (
       INSERT INTO job_events (id, job_seq, ts, event, details)
       SELECT lease_event, seq, leased_at, 'leased', json_build_object(
           'worker_id', lease_owner, 'attempt', attempts, 'lease_until',
           to_char(TIMESTAMP '1970-01-01' + leased_until * INTERVAL '1 millisecond',
                   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))::text
       FROM jobs WHERE seq = $1 AND lease_event IS NOT NULL)
     ",
    save_sql!(),
    ", lease_event = NULL WHERE seq = $1"
);

/// Writes every field a transition can change (the job was `was` before it), and counts
/// the move. `finished_by` is the worker of a completion whose `succeeded` event the row
/// carries (`record`): it stays in `lease_owner`, and the event's id is taken from the
/// events' sequence. A lease that ends any other way stores the `leased` event the row
/// carried (`SAVE_ENDING_LEASE`).
fn save(
    c: &mut PgConn,
    seq: i64,
    was: JobStatus,
    j: &Job,
    finished_by: Option<&str>,
) -> Result<()> {
    let ends_lease =
        was == JobStatus::Leased && j.status != JobStatus::Leased && finished_by.is_none();
    c.execute(
        if ends_lease { SAVE_ENDING_LEASE } else { SAVE },
        &[
            &seq,
            &j.status.as_str(),
            &j.result.as_ref().map(to_json),
            &j.attempts,
            &j.max_attempts,
            &to_ms(&j.available_at),
            &finished_by.or(j.lease_owner.as_deref()),
            &j.lease_until.as_ref().map(to_ms),
            &j.lease_token,
            &j.last_error,
            &to_ms(&j.updated_at),
            &finished_by.is_some(),
        ],
    )?;
    c.moved(j.job_type.as_str(), Some(was), Some(j.status));
    Ok(())
}

/// The worker whose completion `events` records, when the job row can carry that event
/// instead of an event row: the job succeeded and the event is exactly the one `history`
/// rebuilds from the row (the worker, the job's attempts, at its `updated_at`).
fn carried_on_row<'a>(j: &Job, events: &'a [NewEvent], now: Ts) -> Option<(usize, &'a str)> {
    if j.status != JobStatus::Succeeded || j.updated_at != now {
        return None;
    }
    events.iter().enumerate().find_map(|(i, ev)| {
        let worker = ev.details.as_ref()?.get("worker_id")?.as_str()?;
        (*ev == NewEvent::succeeded(worker, j.attempts)).then_some((i, worker))
    })
}

/// Saves a transition with its events (at `now`). A completion's `succeeded` event goes on
/// the job row (`lease_owner` kept, `finish_event`), not into `job_events`: one event row
/// and its index entry fewer per job. `events` reads it back.
fn record(
    c: &mut PgConn,
    seq: i64,
    was: JobStatus,
    j: &Job,
    events: &[NewEvent],
    now: Ts,
) -> Result<()> {
    let carried = carried_on_row(j, events, now);
    save(c, seq, was, j, carried.map(|(_, w)| w))?;
    for (i, ev) in events.iter().enumerate() {
        if carried.is_none_or(|(at, _)| at != i) {
            add_event(c, seq, now, ev)?;
        }
    }
    Ok(())
}

/// Records an event of the job whose key is `seq`.
fn add_event(c: &mut PgConn, seq: i64, ts: Ts, ev: &NewEvent) -> Result<()> {
    c.execute(
        "INSERT INTO job_events (job_seq, ts, event, details) VALUES ($1, $2, $3, $4)",
        &[
            &seq,
            &to_ms(&ts),
            &ev.event,
            &ev.details.as_ref().map(to_json),
        ],
    )
    .map(|_| ())
}

/// Whether leasers should be woken: the job can be leased right now.
fn ready_now(j: &Job, now: Ts) -> bool {
    j.status == JobStatus::Queued && j.available_at <= now
}

/// Locks a job, applies a transition and saves it with its events; wakes the leasers of
/// every node when the job is ready to lease again.
fn transition(
    c: &mut PgConn,
    id: JobId,
    now: Ts,
    f: impl FnOnce(&mut Job) -> std::result::Result<Vec<NewEvent>, JobConflict>,
) -> Result<Job> {
    let (seq, mut job) = load(c, LOCK_BY_ID, id)?;
    let was = job.status;
    let events = f(&mut job).map_err(StoreError::Conflict)?;
    record(c, seq, was, &job, &events, now)?;
    if ready_now(&job, now) {
        c.notify(Wake::Jobs)?;
    }
    Ok(job)
}

/// A batch, all or nothing: one multi-row insert (`enqueue_many`);
/// the first refused item fails the whole batch.
pub fn enqueue_batch(c: &mut PgConn, new: Vec<NewJob>, now: Ts) -> Result<Vec<Enqueued>> {
    let reqs = new.into_iter().map(|job| EnqueueReq { job, now }).collect();
    enqueue_many(c, reqs)?.into_iter().collect()
}

pub fn enqueue(c: &mut PgConn, new: Vec<NewJob>, now: Ts) -> Result<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(new.len());
    let mut wake = false;
    for nj in new {
        let e = enqueue_one(c, nj, now)?;
        if let Enqueued::Created(j) = &e {
            wake |= ready_now(j, now);
        }
        out.push(e);
    }
    if wake {
        c.notify(Wake::Jobs)?;
    }
    Ok(out)
}

/// One job: inserted unless its (type, idempotency key) or its id is taken. The insert
/// never raises a unique violation (that would abort the writer's transaction); when it
/// inserts nothing, the existing row says which rule applied. The idempotency key is
/// looked at first, as in SQLite.
fn enqueue_one(c: &mut PgConn, nj: NewJob, now: Ts) -> Result<Enqueued> {
    let job = Job::queued(nj, now);
    let m = &job.meta;
    // No conflict target: both the id and the (type, key) index are arbiters. A
    // concurrent uncommitted insert of the same key or id is waited for, then seen.
    let inserted = c.query_opt(
        "INSERT INTO jobs (id, type, status, priority, idempotency_key, code_version,
             model_version, config_hash, budget_tag, cost_cap_eur, input, attempts,
             max_attempts, available_at, created_at, updated_at)
         VALUES ($1::text::uuid, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12,
                 $13, $13)
         ON CONFLICT DO NOTHING
         RETURNING seq",
        &[
            &job.id.to_string(),
            &job.job_type.as_str(),
            &job.priority,
            &m.idempotency_key,
            &m.code_version,
            &m.model_version,
            &m.config_hash,
            &m.budget_tag,
            &m.cost_cap_eur,
            &to_json(&job.input),
            &job.max_attempts,
            &to_ms(&job.available_at),
            &to_ms(&now),
        ],
    )?;
    if inserted.is_none() {
        return not_inserted(c, &job);
    }
    c.moved(job.job_type.as_str(), None, Some(JobStatus::Queued));
    Ok(Enqueued::Created(job))
}

/// Why a job was not inserted: a replay of its idempotency key (same input), a key
/// conflict (other input), or a taken job id. The key is looked at first, as in SQLite.
fn not_inserted(c: &mut PgConn, job: &Job) -> Result<Enqueued> {
    if let Some(key) = &job.meta.idempotency_key {
        let existing = c.query_opt(SELECT_BY_KEY, &[&job.job_type.as_str(), key])?;
        if let Some(row) = existing {
            let (_, existing) = row_to_job(&row)?;
            return if json_equal(&existing.input, &job.input) {
                Ok(Enqueued::Replayed(existing))
            } else {
                Err(StoreError::Conflict(JobConflict::IdempotencyConflict))
            };
        }
    }
    Err(StoreError::Conflict(JobConflict::DuplicateJobId))
}

/// One single-job enqueue waiting to be carried by a batch.
#[derive(Clone)]
pub struct EnqueueReq {
    pub job: NewJob,
    pub now: Ts,
}

/// Many single-job enqueues (from different callers) in one multi-row insert; each request
/// is answered as if it had been enqueued alone, in order.
pub fn enqueue_many(c: &mut PgConn, reqs: Vec<EnqueueReq>) -> Result<Vec<Result<Enqueued>>> {
    fly(c, EnqueueFlight::new(reqs))
}

/// Single-job enqueues as one flight's statement: one multi-row insert.
pub enum EnqueueFlight {
    Insert {
        jobs: Vec<(Job, Ts)>,
        stmt: Option<OwnedQuery>,
    },
    /// Two requests name one job id: a set of inserted ids could not tell them apart, so
    /// this (rare) batch goes one request at a time, after the flight.
    OneByOne(Vec<EnqueueReq>),
}

impl EnqueueFlight {
    pub fn new(reqs: Vec<EnqueueReq>) -> Self {
        let mut named = std::collections::HashSet::new();
        if reqs
            .iter()
            .any(|r| r.job.id.is_some_and(|id| !named.insert(id)))
        {
            return Self::OneByOne(reqs);
        }
        let jobs: Vec<(Job, Ts)> = reqs
            .into_iter()
            .map(|r| (Job::queued(r.job, r.now), r.now))
            .collect();
        macro_rules! col {
            ($f:expr) => {
                jobs.iter().map($f).collect::<Vec<_>>()
            };
        }
        let stmt = OwnedQuery {
            sql: "INSERT INTO jobs (id, type, status, priority, idempotency_key, code_version,
                     model_version, config_hash, budget_tag, cost_cap_eur, input, attempts,
                     max_attempts, available_at, created_at, updated_at)
                 SELECT id::uuid, type, 'queued', priority, key, cv, mv, ch, bt, cc, input, 0,
                     max_attempts, available_at, created_at, created_at
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[],
                     $12::bigint[], $13::bigint[]) WITH ORDINALITY
                     AS t(id, type, priority, key, cv, mv, ch, bt, cc, input, max_attempts,
                          available_at, created_at, n)
                 ORDER BY n
                 ON CONFLICT DO NOTHING
                 RETURNING id::text",
            params: owned_params![
                col!(|(j, _)| j.id.to_string()),
                col!(|(j, _)| j.job_type.as_str().to_string()),
                col!(|(j, _)| j.priority),
                col!(|(j, _)| j.meta.idempotency_key.clone()),
                col!(|(j, _)| j.meta.code_version.clone()),
                col!(|(j, _)| j.meta.model_version.clone()),
                col!(|(j, _)| j.meta.config_hash.clone()),
                col!(|(j, _)| j.meta.budget_tag.clone()),
                col!(|(j, _)| j.meta.cost_cap_eur.clone()),
                col!(|(j, _)| to_json(&j.input)),
                col!(|(j, _)| j.max_attempts),
                col!(|(j, _)| to_ms(&j.available_at)),
                col!(|(_, now)| to_ms(now)),
            ],
        };
        Self::Insert {
            jobs,
            stmt: Some(stmt),
        }
    }
}

impl Flight for EnqueueFlight {
    type Out = Enqueued;

    fn statements(&mut self) -> Vec<OwnedQuery> {
        match self {
            Self::Insert { stmt, .. } => stmt.take().into_iter().collect(),
            Self::OneByOne(_) => Vec::new(),
        }
    }

    fn land(self, c: &mut PgConn, rows: Vec<Vec<Row>>) -> Result<Vec<Result<Enqueued>>> {
        let jobs = match self {
            Self::Insert { jobs, .. } => jobs,
            Self::OneByOne(reqs) => {
                let mut out = Vec::with_capacity(reqs.len());
                for r in reqs {
                    out.push(match enqueue(c, vec![r.job], r.now) {
                        Ok(mut v) => Ok(v.remove(0)),
                        Err(e @ StoreError::Conflict(_)) => Err(e),
                        Err(e) => return Err(e),
                    });
                }
                return Ok(out);
            }
        };
        let inserted: std::collections::HashSet<String> =
            only(rows)?.iter().map(|r| r.get::<_, String>(0)).collect();
        let mut wake = false;
        let mut out = Vec::with_capacity(jobs.len());
        for (j, now) in jobs {
            if inserted.contains(&j.id.to_string()) {
                c.moved(j.job_type.as_str(), None, Some(JobStatus::Queued));
                wake |= ready_now(&j, now);
                out.push(Ok(Enqueued::Created(j)));
            } else {
                out.push(match not_inserted(c, &j) {
                    Ok(e) => Ok(e),
                    Err(e @ StoreError::Conflict(_)) => Err(e),
                    Err(e) => return Err(e),
                });
            }
        }
        if wake {
            c.notify(Wake::Jobs)?;
        }
        Ok(out)
    }
}

pub fn claim(c: &mut PgConn, claim: &Claim, now: Ts) -> Result<Vec<Job>> {
    if let Some(rows) = claim_ready(c, claim, now, false)? {
        return Ok(leased(c, rows));
    }
    // Some queue control exists.
    let controls = super::schedules::controls(c)?;
    let Some(crate::storage::ClaimControls { paused, limited }) =
        crate::storage::claim_controls(claim, controls)
    else {
        let rows = claim_ready(c, claim, now, true)?.unwrap_or_default();
        return Ok(leased(c, rows));
    };
    let names: Vec<String> = limited.into_iter().map(|(t, _)| t).collect();
    let counted = super::schedules::lock_limits(c, &names)?;
    let rows = crate::storage::controlled_claim(
        c,
        claim,
        crate::storage::Budget::new(paused, counted),
        |c, need, excluded| candidates(c, claim, need, excluded, now),
        |c, seqs| lease_rows(c, claim, seqs, now),
    )?;
    Ok(leased(c, rows))
}

/// A claim from one caller, for [`ClaimFlight`].
#[derive(Clone)]
pub struct ClaimReq {
    pub claim: Claim,
    pub now: Ts,
}

/// Leased rows (the insertion sequence, the job), in no particular order.
type LeasedRows = Vec<(i64, Job)>;

/// Many claims (from different callers) as one flight's statements, one per set of job
/// types; each request is answered as [`claim`] would answer it alone, the earlier
/// requests of a set first served. A claim alone in its set takes the single-claim
/// statement (the shared one costs about twice as much for one), except that the claims
/// alone in their sets that name one type each (workers that each serve a queue of their
/// own) share `CLAIM_MANY_BY_TYPE`: one statement, not one each. When a queue control
/// exists, each claim runs alone, after the flight (`claim` applies the control).
pub struct ClaimFlight {
    reqs: Vec<ClaimReq>,
    /// The requests of each set of types, by index, in arrival order.
    groups: Vec<Vec<usize>>,
    stmts: Vec<OwnedQuery>,
}

impl ClaimFlight {
    pub fn new(reqs: Vec<ClaimReq>) -> Self {
        let mut by_types: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (i, r) in reqs.iter().enumerate() {
            let mut types: Vec<String> = r
                .claim
                .types
                .iter()
                .map(|t| t.as_str().to_string())
                .collect();
            types.sort_unstable();
            types.dedup();
            by_types.entry(types).or_default().push(i);
        }
        let mut groups = Vec::with_capacity(by_types.len());
        let mut stmts = Vec::with_capacity(by_types.len());
        // The claims alone in their sets that name one type each (every one a different
        // type): one statement for them all.
        let mut by_type = Vec::new();
        for (types, members) in by_types {
            match (members.as_slice(), types.len()) {
                ([i], 1) => by_type.push(*i),
                ([i], _) => {
                    stmts.push(claim_statement(&reqs[*i].claim, reqs[*i].now, false));
                    groups.push(members);
                }
                _ => {
                    stmts.push(claim_group_statement(types, &reqs, &members));
                    groups.push(members);
                }
            }
        }
        match by_type.as_slice() {
            [] => {}
            [i] => {
                stmts.push(claim_statement(&reqs[*i].claim, reqs[*i].now, false));
                groups.push(by_type);
            }
            _ => {
                stmts.push(claims_by_type_statement(&reqs, &by_type));
                groups.push(by_type);
            }
        }
        Self {
            reqs,
            groups,
            stmts,
        }
    }
}

impl Flight for ClaimFlight {
    type Out = Vec<Job>;

    fn statements(&mut self) -> Vec<OwnedQuery> {
        std::mem::take(&mut self.stmts)
    }

    fn land(self, c: &mut PgConn, rows: Vec<Vec<Row>>) -> Result<Vec<Result<Vec<Job>>>> {
        let mut out: Vec<Result<Vec<Job>>> = Vec::with_capacity(self.reqs.len());
        out.resize_with(self.reqs.len(), || Ok(Vec::new()));
        for (members, rows) in self.groups.iter().zip(rows) {
            let Some(rows) = leased_rows(&rows, false)? else {
                // Some queue control exists: each claim runs alone, where it applies.
                for &i in members {
                    out[i] = Ok(claim(c, &self.reqs[i].claim, self.reqs[i].now)?);
                }
                continue;
            };
            if let [i] = members.as_slice() {
                let rows = rows.into_iter().map(row_to_job).collect::<Result<_>>()?;
                out[*i] = Ok(leased(c, rows));
                continue;
            }
            let mut by_claim: BTreeMap<usize, LeasedRows> = BTreeMap::new();
            for r in rows {
                // The claim's position among `members`, from 1 (`WITH ORDINALITY`).
                let k: i64 = r.try_get(22).map_err(map_err)?;
                let i = usize::try_from(k - 1)
                    .ok()
                    .and_then(|k| members.get(k).copied())
                    .ok_or_else(|| {
                        StoreError::Backend(format!("a claim position {k} out of range").into())
                    })?;
                by_claim.entry(i).or_default().push(row_to_job(r)?);
            }
            for (i, rows) in by_claim {
                out[i] = Ok(leased(c, rows));
            }
        }
        Ok(out)
    }
}

/// The claims `members` as the first parameters of the shared claim statements, the
/// columns they `unnest` (`$1` workers, `$2` lease ends, `$3` nows, `$4` limits), and the
/// latest of their nows.
fn claim_columns(
    reqs: &[ClaimReq],
    members: &[usize],
) -> (Vec<Box<dyn postgres::types::ToSql + Sync + Send>>, i64) {
    let n = members.len();
    let (mut workers, mut untils, mut nows, mut limits) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for &i in members {
        let t = LeaseTerms::of(&reqs[i].claim, reqs[i].now);
        workers.push(t.worker.to_string());
        untils.push(t.until_ms);
        nows.push(t.now_ms);
        limits.push(t.limit);
    }
    let latest = nows.iter().copied().max().unwrap_or_default();
    (owned_params![workers, untils, nows, limits], latest)
}

/// The statement of `claim_many_sql` for the requests `members` (all of the job types
/// `types`; none = any type).
fn claim_group_statement(types: Vec<String>, reqs: &[ClaimReq], members: &[usize]) -> OwnedQuery {
    let (mut params, latest) = claim_columns(reqs, members);
    let sql = by_types(
        types.len(),
        [CLAIM_MANY_ANY, CLAIM_MANY_ONE_TYPE, CLAIM_MANY_TYPES],
    );
    params.extend(owned_params![latest]);
    if !types.is_empty() {
        params.extend(owned_params![types]);
    }
    OwnedQuery { sql, params }
}

/// `CLAIM_MANY_BY_TYPE` for the requests `members`, each of one job type, all different.
fn claims_by_type_statement(reqs: &[ClaimReq], members: &[usize]) -> OwnedQuery {
    let (mut params, _) = claim_columns(reqs, members);
    let types: Vec<String> = members
        .iter()
        .map(|&i| reqs[i].claim.types[0].as_str().to_string())
        .collect();
    params.extend(owned_params![types]);
    OwnedQuery {
        sql: CLAIM_MANY_BY_TYPE,
        params,
    }
}

/// The next `need` ready jobs of the claim's types outside `excluded`, in lease order,
/// locked (`SKIP LOCKED`: rows another claim holds are passed over).
fn candidates(
    c: &mut PgConn,
    claim: &Claim,
    need: usize,
    excluded: &[String],
    now: Ts,
) -> Result<Vec<(i64, String)>> {
    let types: Vec<String> = claim.types.iter().map(|t| t.as_str().to_string()).collect();
    let rows = c.query(
        CANDIDATES,
        &[&to_ms(&now), &types, &excluded, &(need as i64)],
    )?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(map_err)?,
                r.try_get(1).map_err(map_err)?,
            ))
        })
        .collect()
}

/// `candidates`' statement: `$1` now, `$2` the claim's types (none: any), `$3` the types
/// left out, `$4` how many.
const CANDIDATES: &str = concat!(
    "WITH RECURSIVE ",
    queued_types!(),
    ",
     t AS (SELECT type FROM t0 WHERE type IS NOT NULL
             AND (cardinality($2::text[]) = 0 OR type = ANY($2::text[]))
             AND NOT (type = ANY($3::text[]))),
     ",
    ready_across_types!("$1", "$4", "true"),
    "
     SELECT seq, type FROM c ORDER BY ",
    lease_order!()
);

/// Leases the (locked) rows `seqs`.
fn lease_rows(c: &mut PgConn, claim: &Claim, seqs: &[i64], now: Ts) -> Result<LeasedRows> {
    let t = LeaseTerms::of(claim, now);
    let rows = c.query(LEASE_SEQS, &[&t.worker, &t.until_ms, &t.now_ms, &seqs])?;
    rows.iter().map(row_to_job).collect()
}

/// A claim with no queue control in the way, in one statement: the leased jobs, or None
/// (nothing leased) when some control exists and `checked` does not say that none applies
/// to this claim.
fn claim_ready(
    c: &mut PgConn,
    claim: &Claim,
    now: Ts,
    checked: bool,
) -> Result<Option<LeasedRows>> {
    let rows = only(c.query_all(&[claim_statement(claim, now, checked)])?)?;
    leased_rows(&rows, checked)?
        .map(|rows| rows.into_iter().map(row_to_job).collect())
        .transpose()
}

/// The statement of `claim_sql` for one claim (see `claim_ready`).
fn claim_statement(claim: &Claim, now: Ts, checked: bool) -> OwnedQuery {
    let t = LeaseTerms::of(claim, now);
    let types: Vec<String> = claim.types.iter().map(|t| t.as_str().to_string()).collect();
    let sql = by_types(types.len(), [CLAIM_ANY, CLAIM_ONE_TYPE, CLAIM_TYPES]);
    let mut params = owned_params![t.worker.to_string(), t.until_ms, t.now_ms, t.limit, checked];
    if !types.is_empty() {
        params.extend(owned_params![types]);
    }
    OwnedQuery { sql, params }
}

/// A claim's terms as its statements take them.
struct LeaseTerms<'a> {
    worker: &'a str,
    /// The lease's end, in ms.
    until_ms: i64,
    now_ms: i64,
    limit: i64,
}

impl<'a> LeaseTerms<'a> {
    fn of(claim: &'a Claim, now: Ts) -> Self {
        let lease_until = now + claim.lease;
        Self {
            worker: claim.worker_id.as_str(),
            until_ms: to_ms(&lease_until),
            now_ms: to_ms(&now),
            limit: i64::try_from(claim.limit).unwrap_or(i64::MAX),
        }
    }
}

/// The claim statement for a claim of `types` job types: `[any type, one type, several]`.
fn by_types(types: usize, sql: [&'static str; 3]) -> &'static str {
    sql[types.min(2)]
}

/// The leased rows of a claim statement's answer, without the row of NULLs that says
/// nothing was leased; None when the answer says a queue control exists and `checked`
/// does not say that none applies.
fn leased_rows(rows: &[Row], checked: bool) -> Result<Option<Vec<&Row>>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let controlled: bool = r.try_get(r.len() - 1).map_err(map_err)?;
        if controlled && !checked {
            return Ok(None);
        }
        if r.try_get::<_, Option<i64>>(0).map_err(map_err)?.is_some() {
            out.push(r);
        }
    }
    Ok(Some(out))
}

/// Counts freshly leased jobs (their rows carry their `leased` events) and orders them.
fn leased(c: &mut PgConn, mut jobs: LeasedRows) -> Vec<Job> {
    for (_, j) in &jobs {
        c.moved(
            j.job_type.as_str(),
            Some(JobStatus::Queued),
            Some(JobStatus::Leased),
        );
    }
    // RETURNING has no order: the claim order, ties by insertion.
    jobs.sort_by(|(sa, a), (sb, b)| {
        (a.priority, a.available_at, a.created_at, sa).cmp(&(
            b.priority,
            b.available_at,
            b.created_at,
            sb,
        ))
    });
    jobs.into_iter().map(|(_, j)| j).collect()
}

pub fn heartbeat(c: &mut PgConn, id: JobId, fence: &Fence, until: Ts, now: Ts) -> Result<Job> {
    let (seq, mut job) = load(c, LOCK_BY_ID, id)?;
    let was = job.status;
    let ev = job
        .heartbeat(fence, until, now)
        .map_err(StoreError::Conflict)?;
    save(c, seq, was, &job, None)?;
    // Coalesce: a run of heartbeats is one event row whose count and time move. The job
    // row is locked, so its last event cannot change under us. A stored event older than
    // the `leased` event the row carries (`lease_on_row`) is not the last: then the last is
    // that lease, and the heartbeat is appended.
    let last = c.query_opt(
        "SELECT id, event, details FROM job_events
          WHERE job_seq = $1
            AND id > (SELECT coalesce(lease_event, 0) FROM jobs WHERE seq = $1)
          ORDER BY id DESC LIMIT 1",
        &[&seq],
    )?;
    let last: Option<(i64, String, Option<String>)> = match last {
        Some(r) => Some((
            r.try_get(0).map_err(map_err)?,
            r.try_get(1).map_err(map_err)?,
            r.try_get(2).map_err(map_err)?,
        )),
        None => None,
    };
    let last = last.map(|(ev_id, kind, details)| (ev_id, kind, json_col(details)));
    match HeartbeatEvent::coalesce(ev, last) {
        HeartbeatEvent::Update { id: ev_id, details } => {
            c.execute(
                "UPDATE job_events SET ts = $2, details = $3 WHERE job_seq = $4 AND id = $1",
                &[&ev_id, &to_ms(&now), &to_json(&details), &seq],
            )?;
        }
        HeartbeatEvent::Append(ev) => add_event(c, seq, now, &ev)?,
    }
    Ok(job)
}

pub fn complete(
    c: &mut PgConn,
    id: JobId,
    fence: &Fence,
    result: Option<Value>,
    now: Ts,
) -> Result<Job> {
    transition(c, id, now, |j| j.complete(fence, result, now))
}

/// One completion waiting to be carried by a batch.
#[derive(Clone)]
pub struct CompleteReq {
    pub id: JobId,
    pub fence: Fence,
    pub result: Option<Value>,
    pub now: Ts,
}

/// The fast path: every completion whose lease holds, in one `UPDATE … FROM unnest(…)`
/// (the conditions are those of `Fence::check` for a live lease). Each row carries its
/// `succeeded` event, as `record` does: the worker stays in `lease_owner` and the event's
/// id is taken from the events' sequence.
///
/// The rows are found by id: `id = ANY(…)` gives the planner one probe of `jobs_id_key` per
/// job, the cheapest path whatever the table's size or statistics. The status is compared
/// with a column of the materialized input, not with a constant: `status = 'leased'` let
/// the planner read every leased job through the partial `jobs_lease_until` instead and
/// hash-join them with the input, and without fresh statistics it did (all jobs in flight
/// read per statement); the join alone, planned while the table was small, became a
/// sequential scan of the whole table that the cached plan kept.
const COMPLETE_MANY: &str = "WITH i AS MATERIALIZED (
      SELECT t.*, 'leased'::text AS leased
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
        AS t(id, worker, token, result, now)
      ORDER BY id),
    u AS (
      UPDATE jobs j SET status = 'succeeded', result = i.result,
          lease_until = NULL, updated_at = i.now, finish_event = nextval('job_events_id_seq')
      FROM i
      WHERE j.id = ANY($1::text[]::uuid[]) AND j.id = i.id::uuid
        AND j.status = i.leased AND j.lease_owner = i.worker
        AND (i.token IS NULL OR j.lease_token = i.token) AND j.lease_until >= i.now
      RETURNING j.seq, j.id::text, j.type, j.status, j.priority, j.idempotency_key, j.code_version,
          j.model_version, j.config_hash, j.budget_tag, j.cost_cap_eur, j.input, j.result,
          j.attempts, j.max_attempts, j.available_at, j.lease_owner, j.lease_until,
          j.lease_token, j.last_error, j.created_at, j.updated_at)
    SELECT * FROM u";

/// Completes a batch: the fast path for every request whose lease holds, then the usual
/// locked transition for the rest (a lost lease, a repeat, an unknown id), which gives the
/// same answers as one call at a time. One result per request, in order.
pub fn complete_many(c: &mut PgConn, reqs: Vec<CompleteReq>) -> Result<Vec<Result<Job>>> {
    fly(c, CompleteFlight::new(reqs))
}

/// Completions as one flight's statement (`COMPLETE_MANY`), the rest after it.
pub struct CompleteFlight {
    reqs: Vec<CompleteReq>,
    /// The request that takes the fast path for each job: the first for it.
    first: std::collections::HashMap<JobId, usize>,
    stmt: Option<OwnedQuery>,
}

impl CompleteFlight {
    pub fn new(reqs: Vec<CompleteReq>) -> Self {
        let mut first = std::collections::HashMap::new();
        let (mut ids, mut workers, mut tokens, mut results, mut nows) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (i, r) in reqs.iter().enumerate() {
            // Repeats take the slow path.
            if let std::collections::hash_map::Entry::Vacant(e) = first.entry(r.id) {
                e.insert(i);
                ids.push(r.id.to_string());
                workers.push(r.fence.worker_id.to_string());
                tokens.push(r.fence.lease_token.as_ref().map(|t| t.as_str().to_string()));
                results.push(r.result.as_ref().map(to_json));
                nows.push(to_ms(&r.now));
            }
        }
        let stmt = OwnedQuery {
            sql: COMPLETE_MANY,
            params: owned_params![ids, workers, tokens, results, nows],
        };
        Self {
            reqs,
            first,
            stmt: Some(stmt),
        }
    }
}

impl Flight for CompleteFlight {
    type Out = Job;

    fn statements(&mut self) -> Vec<OwnedQuery> {
        self.stmt.take().into_iter().collect()
    }

    fn land(self, c: &mut PgConn, rows: Vec<Vec<Row>>) -> Result<Vec<Result<Job>>> {
        let mut out: Vec<Option<Result<Job>>> = self.reqs.iter().map(|_| None).collect();
        for row in &only(rows)? {
            let (_, job) = row_to_job(row)?;
            c.moved(
                job.job_type.as_str(),
                Some(JobStatus::Leased),
                Some(JobStatus::Succeeded),
            );
            let i = self.first[&job.id];
            out[i] = Some(Ok(job));
        }
        for (i, r) in self.reqs.into_iter().enumerate() {
            if out[i].is_none() {
                out[i] = Some(match complete(c, r.id, &r.fence, r.result, r.now) {
                    Err(e @ (StoreError::NotFound | StoreError::Conflict(_))) => Err(e),
                    Err(e) => return Err(e),
                    Ok(j) => Ok(j),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every request answered"))
            .collect())
    }
}

/// Finishes a batch of leased jobs, each item judged as its own complete/fail call: the
/// completions through `complete_many` (one set-based statement for live leases), the
/// failures through the locked transition.
pub fn ack(c: &mut PgConn, acks: &[Ack], now: Ts) -> Result<Vec<Result<Job>>> {
    let mut out: Vec<Option<Result<Job>>> = acks.iter().map(|_| None).collect();
    let (mut at, mut reqs) = (vec![], vec![]);
    for (i, a) in acks.iter().enumerate() {
        if let AckOutcome::Complete(result) = &a.outcome {
            at.push(i);
            reqs.push(CompleteReq {
                id: a.id,
                fence: a.fence.clone(),
                result: result.clone(),
                now,
            });
        }
    }
    if !reqs.is_empty() {
        for (i, r) in at.into_iter().zip(complete_many(c, reqs)?) {
            out[i] = Some(r);
        }
    }
    for (i, a) in acks.iter().enumerate() {
        if out[i].is_none() {
            out[i] = Some(per_item(transition(c, a.id, now, |j| j.ack(a, now)))?);
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every item answered"))
        .collect())
}

const BULK_SELECT: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM jobs
     WHERE seq > $1 AND status = ANY($2::text[]) AND ($3::text IS NULL OR type = $3::text)
       AND ($4::text[] IS NULL OR id = ANY($4::text[]::uuid[]))
     ORDER BY seq LIMIT $5 FOR UPDATE"
);

/// One bounded pass of a bulk retry or cancel, in insertion order.
pub fn bulk(
    c: &mut PgConn,
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
    let ids: Option<Vec<String>> = filter
        .ids
        .as_ref()
        .map(|ids| ids.iter().map(|i| i.to_string()).collect());
    let rows = c.query(
        BULK_SELECT,
        &[
            &after,
            &states,
            &filter.job_type.as_ref().map(|t| t.as_str()),
            &ids,
            &i64::try_from(limit).unwrap_or(i64::MAX),
        ],
    )?;
    let rows = rows.iter().map(row_to_job).collect::<Result<Vec<_>>>()?;
    let mut wake = false;
    let step = bulk_step(rows, limit, action, now, |seq, was, job, events| {
        record(c, seq, was, job, events, now)?;
        wake |= ready_now(job, now);
        Ok(())
    })?;
    if wake {
        c.notify(Wake::Jobs)?;
    }
    Ok(step)
}

pub fn fail(c: &mut PgConn, id: JobId, fence: &Fence, failure: &Failure, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.fail(fence, failure, now))
}

pub fn cancel(c: &mut PgConn, id: JobId, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.cancel(now))
}

pub fn retry(c: &mut PgConn, id: JobId, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.retry(now))
}

pub fn release(c: &mut PgConn, id: JobId, fence: &Fence, now: Ts) -> Result<Job> {
    transition(c, id, now, |j| j.release(fence, now))
}

pub fn list(c: &mut PgConn, f: &JobFilter) -> Result<JobPage> {
    let limit = f.limit.max(1);
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
    let by_status;
    let rows = c.query(
        match f.status {
            Some(s) => {
                by_status = LIST_BY_STATUS.replace("{status}", s.as_str());
                &by_status
            }
            None => LIST,
        },
        &[
            &f.status.map(|s| s.as_str()),
            &f.job_type.as_ref().map(|t| t.as_str()),
            &f.before_seq.unwrap_or(i64::MAX),
            &fetch,
        ],
    )?;
    let mut items = rows.iter().map(row_to_job).collect::<Result<Vec<_>>>()?;
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

pub fn events(c: &mut PgConn, id: JobId) -> Result<Vec<JobEvent>> {
    let row = c.query_one(SELECT_WITH_EVENTS, &[&id.to_string()])?;
    let (seq, job) = row_to_job(&row)?;
    let on_row = OnRow::read(&row)?;
    let rows = c.query(
        "SELECT id, ts, event, details FROM job_events WHERE job_seq = $1 ORDER BY id",
        &[&seq],
    )?;
    let stored = rows
        .iter()
        .map(|r| {
            Ok(JobEvent {
                id: r.try_get(0).map_err(map_err)?,
                ts: from_ms(r.try_get(1).map_err(map_err)?),
                event: r.try_get(2).map_err(map_err)?,
                details: json_col(r.try_get(3).map_err(map_err)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(JobEvent::history(&job, on_row.add_to(&job, stored)))
}

/// The events a job row carries instead of event rows: the `leased` event of its current
/// lease, or of the lease it succeeded in (`lease_on_row`, V20), and the `succeeded` event
/// of its completion (`record`, V19). The worker of both is the stored `lease_owner` (the
/// decoder shows a finished job without one).
struct OnRow {
    owner: Option<String>,
    finish_event: Option<i64>,
    /// The lease's event id, start and end as given then.
    lease: Option<(i64, i64, i64)>,
}

impl OnRow {
    /// Reads the columns `SELECT_WITH_EVENTS` adds after `cols!()`.
    fn read(row: &Row) -> Result<Self> {
        let col = |i: usize| -> Result<Option<i64>> { row.try_get(i).map_err(map_err) };
        let lease = match (col(23)?, col(24)?, col(25)?) {
            (Some(id), Some(at), Some(until)) => Some((id, at, until)),
            _ => None,
        };
        Ok(Self {
            // The raw column: `row_to_job` drops it from a finished job.
            owner: row.try_get(16).map_err(map_err)?,
            finish_event: col(22)?,
            lease,
        })
    }

    /// `stored` (in id order) with the events the row carries, in id order. A `succeeded`
    /// event already stored (jobs completed before V19, or copied from SQLite) is not
    /// doubled, nor is a `leased` event stored under its id: the row and the events are read
    /// one after the other, and a lease that ended in between stored its event.
    fn add_to(self, job: &Job, mut stored: Vec<JobEvent>) -> Vec<JobEvent> {
        let Some(worker) = self.owner else {
            return stored;
        };
        let before = stored.len();
        if let Some((id, at, until)) = self.lease {
            if matches!(job.status, JobStatus::Leased | JobStatus::Succeeded)
                && !stored.iter().any(|e| e.id == id)
            {
                stored.push(JobEvent {
                    id,
                    ts: from_ms(at),
                    event: "leased".into(),
                    details: NewEvent::leased(
                        &worker,
                        job.attempts,
                        &crate::domain::time::format(&from_ms(until)),
                    )
                    .details,
                });
            }
        }
        if let (JobStatus::Succeeded, Some(id)) = (job.status, self.finish_event) {
            if !stored.iter().any(|e| e.event == "succeeded") {
                stored.push(JobEvent {
                    id,
                    ts: job.updated_at,
                    event: "succeeded".into(),
                    details: NewEvent::succeeded(&worker, job.attempts).details,
                });
            }
        }
        if stored.len() > before {
            stored.sort_by_key(|e| e.id);
        }
        stored
    }
}

pub fn queue_stats(c: &mut PgConn, now: Ts) -> Result<Vec<QueueStats>> {
    let mut stats = StatsByType::default();
    let now_ms = to_ms(&now);
    // The folded counts plus the deltas the writers appended since the last fold.
    for r in c.query(
        "SELECT type, status, SUM(n)::bigint FROM (
             SELECT type, status, n FROM job_counts
             UNION ALL SELECT type, status, n FROM job_count_deltas) c
         GROUP BY type, status HAVING SUM(n) <> 0",
        &[],
    )? {
        let t: String = r.try_get(0).map_err(map_err)?;
        let status: String = r.try_get(1).map_err(map_err)?;
        stats.count(&t, &status, r.try_get(2).map_err(map_err)?);
    }
    for r in c.query(
        "SELECT type, MIN(available_at) FROM jobs
         WHERE status = 'queued' AND available_at <= $1 GROUP BY type",
        &[&now_ms],
    )? {
        let t: String = r.try_get(0).map_err(map_err)?;
        stats.oldest_ready(&t, r.try_get(1).map_err(map_err)?, now_ms);
    }
    for r in c.query(
        "SELECT type, leases_expired_total FROM job_type_counters",
        &[],
    )? {
        let t: String = r.try_get(0).map_err(map_err)?;
        stats.leases_expired(&t, r.try_get(1).map_err(map_err)?);
    }
    Ok(stats.finish())
}

/// Folds the deltas the writers appended into `job_counts`, in one statement (rows another
/// node is folding at the same moment are waited for, then skipped as deleted).
pub fn fold_counts(c: &mut PgConn) -> Result<()> {
    c.execute(
        "WITH d AS (DELETE FROM job_count_deltas RETURNING type, status, n)
         INSERT INTO job_counts (type, status, n)
         SELECT type, status, SUM(n) FROM d GROUP BY type, status ORDER BY type, status
         ON CONFLICT (type, status) DO UPDATE SET n = job_counts.n + EXCLUDED.n",
        &[],
    )
    .map(|_| ())
}

/// The first `$2` ready jobs (`$1` now) in lease order: the head of each type's queue,
/// merged.
const READY_IDS: &str = concat!(
    "WITH RECURSIVE ",
    any_types!(),
    ",
     h AS (",
    heads_of_types!(
        "id, type, priority, available_at, created_at, seq",
        "$1",
        "$2"
    ),
    ")
     SELECT id::text, type FROM h ORDER BY ",
    lease_order!(),
    " LIMIT $2"
);

pub fn ready_ids(c: &mut PgConn, now: Ts, limit: usize) -> Result<Vec<(JobId, String)>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(READY_IDS, &[&to_ms(&now), &limit])?
        .iter()
        .map(|r| {
            let id: String = r.try_get(0).map_err(map_err)?;
            Ok((decode::job_id(&id)?, r.try_get(1).map_err(map_err)?))
        })
        .collect()
}

pub fn reclaim_expired(c: &mut PgConn, now: Ts, limit: usize) -> Result<Vec<Reclaimed>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Rows another node is reclaiming (or a worker is completing) right now are skipped.
    let expired = c
        .query(EXPIRED, &[&to_ms(&now), &limit])?
        .iter()
        .map(row_to_job)
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(expired.len());
    // Counter rows are bumped once per type, in type order, so two reclaims cannot
    // deadlock on them.
    let mut per_type: BTreeMap<String, i64> = BTreeMap::new();
    let mut wake = false;
    for (seq, mut job) in expired {
        let was = job.status;
        let events = job.expire(now);
        record(c, seq, was, &job, &events, now)?;
        *per_type
            .entry(job.job_type.as_str().to_string())
            .or_default() += 1;
        wake |= ready_now(&job, now);
        out.push(Reclaimed {
            id: job.id,
            job_type: job.job_type,
            status: job.status,
        });
    }
    for (t, n) in &per_type {
        c.execute(
            "INSERT INTO job_type_counters (type, leases_expired_total) VALUES ($1, $2)
             ON CONFLICT (type) DO UPDATE
             SET leases_expired_total = job_type_counters.leases_expired_total
                 + EXCLUDED.leases_expired_total",
            &[t, n],
        )?;
    }
    if wake {
        c.notify(Wake::Jobs)?;
    }
    Ok(out)
}

/// The key of the last job created before `before`, or `None` when there is none: a binary
/// search of the primary key, one probe per halving (about 30 for a billion keys), taking
/// creation times to rise with the key. Where clocks of several nodes disagree they rise only
/// roughly; the answer is then a job near the boundary, and pruning up to it may leave a job
/// that finished in time for a later round.
fn created_before(c: &mut PgConn, before: Ts) -> Result<Option<i64>> {
    const FIRST_FROM: &str = "SELECT seq, created_at FROM jobs WHERE seq >= $1 AND seq <= $2
                               ORDER BY seq LIMIT 1";
    let before = to_ms(&before);
    let keys = c.query_one("SELECT min(seq), max(seq) FROM jobs", &[])?;
    let (Some(min), Some(max)) = (
        keys.try_get::<_, Option<i64>>(0).map_err(map_err)?,
        keys.try_get::<_, Option<i64>>(1).map_err(map_err)?,
    ) else {
        return Ok(None);
    };
    let mut first_from = |lo: i64, hi: i64| -> Result<Option<(i64, i64)>> {
        c.query_opt(FIRST_FROM, &[&lo, &hi])?
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(map_err)?,
                    r.try_get(1).map_err(map_err)?,
                ))
            })
            .transpose()
    };
    // The invariant: `lo` is a job created before the cut-off, and the answer is at most `hi`.
    let Some((mut lo, first_at)) = first_from(min, max)? else {
        return Ok(None);
    };
    if first_at >= before {
        return Ok(None);
    }
    let mut hi = max;
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        match first_from(mid, hi)? {
            Some((seq, at)) if at < before => lo = seq,
            _ => hi = mid - 1,
        }
    }
    Ok(Some(lo))
}

/// `prune_finished`'s statement: `$1` the cut-off, `$2` the limit, `$3` the last key. The
/// statuses are also spelled out as a list: `status = s.status` alone does not prove the
/// partial index's condition.
const PRUNE_FINISHED: &str = "WITH gone AS (
      DELETE FROM jobs WHERE seq IN (
          SELECT f.seq FROM unnest(ARRAY['succeeded', 'failed', 'canceled']) AS s(status)
          CROSS JOIN LATERAL (
              SELECT seq FROM jobs
               WHERE status = s.status AND status IN ('succeeded', 'failed', 'canceled')
                 AND seq <= $3 AND updated_at < $1
               ORDER BY status, seq LIMIT $2 FOR UPDATE SKIP LOCKED) f
          ORDER BY f.seq LIMIT $2)
      RETURNING seq, type, status),
  events AS (DELETE FROM job_events WHERE job_seq IN (SELECT seq FROM gone))
  SELECT type, status FROM gone";

/// Deletes at most `limit` jobs that finished before `before` among those up to the key
/// `upto`, with their events: each finished status's jobs in key order, read from
/// `jobs_finished_by_status`. Locking rechecks status and time on the current row, so a job
/// an admin is retrying right now is skipped, never deleted. Its events go in the same
/// statement (there is no foreign key to cascade: migrations V11 and V13).
fn prune_finished(c: &mut PgConn, before: Ts, upto: i64, limit: usize) -> Result<usize> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Planned for these values each time (one round trip more, for a statement that runs
    // once a minute): a plan cached while the table was small would read the whole table.
    let gone = c.query_planned(PRUNE_FINISHED, &[&to_ms(&before), &limit, &upto])?;
    for row in &gone {
        let t: String = row.try_get(0).map_err(map_err)?;
        let status: String = row.try_get(1).map_err(map_err)?;
        c.moved(&t, Some(decode::job_status(&status)?), None);
    }
    Ok(gone.len())
}

impl JobStore for PgStore {
    fn enqueue_jobs(&self, new: Vec<NewJob>, now: Ts) -> Result<Vec<Enqueued>> {
        if new.len() == 1 {
            // Single-job enqueues from many callers share one multi-row insert.
            let job = new.into_iter().next().expect("one job");
            let req = EnqueueReq { job, now };
            let ans = self
                .quick
                .call(&self.writer, QuickReq::Enqueue(req), quick_many)?;
            return Ok(vec![ans.enqueued()?]);
        }
        self.write(move |c| enqueue_batch(c, new.clone(), now))
    }

    fn get_job(&self, id: JobId) -> Result<Job> {
        self.read(|c| get(c, id))
    }

    fn claim_jobs(&self, claim: &Claim, now: Ts) -> Result<Vec<Job>> {
        // Claims from many callers share one statement (`ClaimFlight`).
        let req = ClaimReq {
            claim: claim.clone(),
            now,
        };
        self.quick
            .call(&self.writer, QuickReq::Claim(req), quick_many)?
            .claimed()
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
        // Completions from many callers share one set-based update (`CompleteFlight`).
        let req = CompleteReq {
            id,
            fence: fence.clone(),
            result,
            now,
        };
        self.quick
            .call(&self.writer, QuickReq::Complete(req), quick_many)?
            .completed()
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
        self.write(move |c| ack(c, &acks, now))
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

    /// The binary search for the last job created before the cut-off reads on a pooled
    /// connection, so the writer is held only for the delete.
    fn prune_finished_jobs(&self, before: Ts, limit: usize) -> Result<usize> {
        let Some(upto) = self.read(|c| created_before(c, before))? else {
            return Ok(0);
        };
        self.write(move |c| prune_finished(c, before, upto, limit))
    }

    fn fold_job_counts(&self) -> Result<()> {
        self.write(fold_counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobMeta, JobType, WorkerId};
    use crate::storage::{OpenOptions, QueueControlStore, Store};

    fn job(job_type: &str, priority: i64) -> NewJob {
        NewJob {
            id: None,
            job_type: JobType::parse("type", job_type).unwrap(),
            priority,
            max_attempts: 3,
            available_at: None,
            meta: JobMeta::default(),
            input: serde_json::json!({}),
        }
    }

    fn req(worker: &str, types: &[&str], limit: usize, now: Ts) -> ClaimReq {
        ClaimReq {
            claim: Claim {
                worker_id: WorkerId::local(worker),
                types: types
                    .iter()
                    .map(|t| JobType::parse("type", t).unwrap())
                    .collect(),
                limit,
                lease: chrono::Duration::seconds(30),
            },
            now,
        }
    }

    /// Enqueues `new` alone; the id of the job it created.
    fn created(store: &PgStore, new: NewJob, now: Ts) -> JobId {
        match &store.enqueue_jobs(vec![new], now).unwrap()[0] {
            Enqueued::Created(j) => j.id,
            other => panic!("{other:?}"),
        }
    }

    /// Runs a flight of claims on a writer: each claim's leased jobs.
    fn fly_claims(store: &PgStore, flight: ClaimFlight) -> Vec<Vec<Job>> {
        store
            .writer
            .call(move |c| fly(c, flight))
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    /// Opens a store in a fresh schema of `WP_LITE_TEST_POSTGRES_URL` (None: skipped), with
    /// what drops the schema afterwards.
    fn store(tag: &str) -> Option<(PgStore, impl FnOnce())> {
        let Ok(base) = std::env::var("WP_LITE_TEST_POSTGRES_URL") else {
            eprintln!("postgres jobs tests: SKIPPED (WP_LITE_TEST_POSTGRES_URL is not set)");
            return None;
        };
        let schema = format!("wpt_{tag}_{}", std::process::id());
        let sep = if base.contains('?') { '&' } else { '?' };
        let store = PgStore::open(
            &format!("{base}{sep}schema={schema}"),
            &OpenOptions { migrate: true },
        )
        .expect("open");
        let drop_schema = move || {
            let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
            admin
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .unwrap();
        };
        Some((store, drop_schema))
    }

    /// The plan PostgreSQL keeps for a claim statement (a generic plan, as a statement
    /// run often gets), as text.
    fn generic_plan(store: &PgStore, sql: &'static str, param_types: &str, args: &str) -> String {
        plan(store, "force_generic_plan", sql, param_types, args)
    }

    /// Runs statements on a writer's connection, in a transaction that commits.
    fn exec(store: &PgStore, sql: String) {
        store.writer.call(move |c| c.batch(&sql)).unwrap()
    }

    /// The plan made for these very values, as `query_planned` has it made every time.
    fn custom_plan(store: &PgStore, sql: &'static str, param_types: &str, args: &str) -> String {
        plan(store, "force_custom_plan", sql, param_types, args)
    }

    fn plan(
        store: &PgStore,
        mode: &'static str,
        sql: &'static str,
        param_types: &str,
        args: &str,
    ) -> String {
        let prepare = format!("PREPARE plan_probe ({param_types}) AS {sql}");
        let explain = format!("EXPLAIN EXECUTE plan_probe ({args})");
        store
            .writer
            .call(move |c| {
                c.batch(&format!("SET LOCAL plan_cache_mode = {mode}"))?;
                c.batch(&prepare)?;
                let rows = c.query_planned(&explain, &[]);
                c.batch("DEALLOCATE plan_probe")?;
                Ok(rows?
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n"))
            })
            .unwrap()
    }

    /// The statements on the hot path read the rows they need through the index made for
    /// them, on the generic plan PostgreSQL caches: a claim seeks each type's queue in
    /// `jobs_ready_by_type`, never reading the queued jobs of every type (a backlog of
    /// others) nor the whole table, and a batch of completions probes `jobs_id_key`, never
    /// reading every leased job or the table.
    #[test]
    fn hot_statements_seek_their_indexes() {
        let Some((store, drop_schema)) = store("claim_plan") else {
            return;
        };
        // Reads and writes plan with wp-lite's random page cost (see `conn`).
        let page_cost = |c: &mut PgConn| -> Result<String> {
            Ok(c.query_one("SHOW random_page_cost", &[])?.get(0))
        };
        assert_eq!(store.read(page_cost).unwrap(), "1.1");
        assert_eq!(store.writer.call(page_cost).unwrap(), "1.1");
        const CLAIM: &str = "text, bigint, bigint, bigint, bool";
        const CLAIM_ARGS: &str = "'w', 2, 1, 1, false";
        const MANY: &str = "text[], bigint[], bigint[], bigint[], bigint";
        const MANY_ARGS: &str = "ARRAY['w1', 'w2'], ARRAY[2, 2], ARRAY[1, 1], ARRAY[1, 1], 1";
        let claims: [(&str, String, String); 7] = [
            (CLAIM_ANY, CLAIM.into(), CLAIM_ARGS.into()),
            (
                CLAIM_ONE_TYPE,
                format!("{CLAIM}, text[]"),
                format!("{CLAIM_ARGS}, ARRAY['t1']"),
            ),
            (
                CLAIM_TYPES,
                format!("{CLAIM}, text[]"),
                format!("{CLAIM_ARGS}, ARRAY['t1', 't2']"),
            ),
            (CLAIM_MANY_ANY, MANY.into(), MANY_ARGS.into()),
            (
                CLAIM_MANY_ONE_TYPE,
                format!("{MANY}, text[]"),
                format!("{MANY_ARGS}, ARRAY['t1']"),
            ),
            (
                CLAIM_MANY_TYPES,
                format!("{MANY}, text[]"),
                format!("{MANY_ARGS}, ARRAY['t1', 't2']"),
            ),
            (
                CLAIM_MANY_BY_TYPE,
                "text[], bigint[], bigint[], bigint[], text[]".into(),
                "ARRAY['w1', 'w2'], ARRAY[2, 2], ARRAY[1, 1], ARRAY[1, 1], ARRAY['t1', 't2']"
                    .into(),
            ),
        ];
        let complete_plan = || {
            generic_plan(
                &store,
                COMPLETE_MANY,
                "text[], text[], text[], text[], bigint[]",
                "ARRAY[gen_random_uuid()::text], ARRAY['w'], ARRAY['t'], ARRAY['{}'], ARRAY[1]",
            )
        };
        // Planned while the table is nearly empty, claims of one type still read their queue
        // and probe the rows they lease, and completions look their jobs up by id (a plan
        // that read every leased job instead was cheap then, and stayed cached while
        // thousands of jobs came to be in flight). Claims across types read the table then
        // (see `merged_rows`), so they are checked on the loaded table only.
        let run = |sql: String| exec(&store, sql);
        let insert = |rows: &str| {
            run(format!(
                "INSERT INTO jobs (id, type, status, priority, input, max_attempts,
                                   available_at, created_at, updated_at, lease_until) {rows}"
            ))
        };
        insert(
            "SELECT md5('early' || g)::uuid, 't', 'leased', 5, '{}', 3, 1000, 1000, 1000, 9000
               FROM generate_series(1, 4) g",
        );
        let check = |when: &str, merged: bool| {
            let mut reads_queues: Vec<(&str, String)> = claims
                .iter()
                .filter(|(sql, ..)| {
                    merged
                        || [CLAIM_ONE_TYPE, CLAIM_MANY_ONE_TYPE, CLAIM_MANY_BY_TYPE].contains(sql)
                })
                .map(|(sql, types, args)| (*sql, generic_plan(&store, sql, types, args)))
                .collect();
            if merged {
                reads_queues.push((
                    CANDIDATES,
                    generic_plan(
                        &store,
                        CANDIDATES,
                        "bigint, text[], text[], bigint",
                        "1, ARRAY[]::text[], ARRAY['t3'], 5",
                    ),
                ));
                reads_queues.push((
                    READY_IDS,
                    generic_plan(&store, READY_IDS, "bigint, bigint", "1, 5"),
                ));
            }
            for (sql, plan) in &reads_queues {
                assert!(plan.contains("jobs_ready_by_type"), "{when}: {sql}\n{plan}");
                assert!(!plan.contains("Seq Scan on jobs"), "{when}: {sql}\n{plan}");
            }
            if merged {
                // Pruning is planned for its values each time (`query_planned`): the size of
                // the table is read then, statistics or not.
                let prune = custom_plan(
                    &store,
                    PRUNE_FINISHED,
                    "bigint, bigint, bigint",
                    "5000, 10, 9000",
                );
                // The walk is bounded by the key: finished jobs by status and key, or (with
                // statistics saying most old jobs are finished) the primary key up to it.
                assert!(
                    prune.contains("jobs_finished_by_status")
                        || prune.contains("Index Cond: (seq <= "),
                    "{when}: {prune}"
                );
                assert!(!prune.contains("Seq Scan on jobs"), "{when}: {prune}");
            }
            let complete = complete_plan();
            assert!(complete.contains("jobs_id_key"), "{when}: {complete}");
            assert!(!complete.contains("jobs_lease_until"), "{when}: {complete}");
            assert!(!complete.contains("Seq Scan on jobs"), "{when}: {complete}");
        };
        check("4 jobs, never analyzed", false);
        // A backlog of other types and many leased jobs, first without statistics (as on a
        // server without autovacuum), then with them. (An empty table never analyzed is
        // taken for ten pages, where reading them all is the cheapest plan; autovacuum's
        // first ANALYZE drops the cached plans made then.)
        insert(
            "SELECT md5(g::text)::uuid, 't' || (g % 4),
                    CASE WHEN g % 10 = 0 THEN 'queued'
                         WHEN g % 10 = 1 THEN 'leased' ELSE 'succeeded' END,
                    5, '{}', 3, 1000, 1000 + g, 1000 + g,
                    CASE WHEN g % 10 = 1 THEN 9000 END
               FROM generate_series(1, 20000) g",
        );
        check("20 000 jobs, never analyzed", true);
        run("ANALYZE jobs".into());
        check("20 000 jobs, analyzed", true);
        store.close();
        drop_schema();
    }

    /// Pruning deletes what finished before the cut-off, of every finished status, and
    /// nothing else: not a job created before it that finished after it, not a job that is
    /// still queued or leased.
    #[test]
    fn pruning_walks_finished_jobs_up_to_the_last_created_before_the_cut_off() {
        let Some((store, drop_schema)) = store("prune_walk") else {
            return;
        };
        let run = |sql: String| exec(&store, sql);
        // Created at 1 000 + g; odd jobs finished at 1 000 + g + 10, even ones at 50 000
        // (long-running); every tenth still leased, every 25th still queued.
        run(
            "INSERT INTO jobs (id, type, status, priority, input, max_attempts, available_at,
                               created_at, updated_at, lease_until)
             SELECT md5(g::text)::uuid, 't',
                    CASE WHEN g % 25 = 0 THEN 'queued' WHEN g % 10 = 0 THEN 'leased'
                         WHEN g % 3 = 0 THEN 'failed' WHEN g % 3 = 1 THEN 'canceled'
                         ELSE 'succeeded' END,
                    5, '{}', 3, 1000, 1000 + g,
                    CASE WHEN g % 2 = 1 THEN 1010 + g ELSE 50000 END,
                    CASE WHEN g % 10 = 0 AND g % 25 <> 0 THEN 90000 END
               FROM generate_series(1, 3000) g"
                .into(),
        );
        let count = |sql: &str| -> i64 {
            let sql = sql.to_string();
            store
                .read(move |c| Ok(c.query_one(&sql, &[])?.get::<_, i64>(0)))
                .unwrap()
        };
        let due = "SELECT count(*) FROM jobs
                    WHERE status IN ('succeeded', 'failed', 'canceled') AND updated_at < 3000";
        let expected = count(due);
        assert!(expected > 900, "{expected}");
        let cut = from_ms(3000);
        assert_eq!(
            store.read(|c| created_before(c, cut)).unwrap(),
            Some(count("SELECT max(seq) FROM jobs WHERE created_at < 3000"))
        );
        assert_eq!(
            store.read(|c| created_before(c, from_ms(1000))).unwrap(),
            None
        );
        let mut pruned = 0;
        loop {
            let n = store.prune_finished_jobs(cut, 100).unwrap();
            assert!(n <= 100);
            pruned += n;
            if n < 100 {
                break;
            }
        }
        assert_eq!(pruned as i64, expected);
        assert_eq!(count(due), 0);
        assert_eq!(count("SELECT count(*) FROM jobs"), 3000 - expected);
        assert_eq!(
            count("SELECT count(*) FROM jobs WHERE status IN ('queued', 'leased')"),
            // Every 25th queued (120), every other tenth leased (300 - 60).
            360
        );
        store.close();
        drop_schema();
    }

    /// A lease's `leased` event and a completion's `succeeded` event are carried on the job
    /// row, by either path of a completion (the set-based batch, the locked transition), and
    /// read back in the history with ids from the events' sequence; a finished job shows no
    /// lease owner; a lease that ends in failure stores its event as a row, exactly as it
    /// read before, and a heartbeat after a carried lease is appended, then coalesced; a job
    /// whose `succeeded` event was stored as a row (before V19, or copied) shows it once.
    #[test]
    fn a_lease_s_and_a_completion_s_events_are_carried_on_the_job_row() {
        let Some((store, drop_schema)) = store("finish_on_row") else {
            return;
        };
        let t0 = from_ms(1_000_000);
        let ids: Vec<JobId> = (0..3).map(|_| created(&store, job("t", 0), t0)).collect();
        let claim = Claim {
            worker_id: WorkerId::local("w"),
            types: vec![],
            limit: 3,
            lease: chrono::Duration::seconds(30),
        };
        let leased = store.claim_jobs(&claim, t0).unwrap();
        assert_eq!(leased.len(), 3);
        let fence = |id: JobId| {
            let j = leased.iter().find(|j| j.id == id).unwrap();
            j.fence(&WorkerId::local("w"))
        };
        let stored = |id: JobId| -> i64 {
            let id = id.to_string();
            store
                .read(move |c| {
                    Ok(c.query_one(
                        "SELECT count(*) FROM job_events e JOIN jobs j ON j.seq = e.job_seq
                          WHERE j.id = $1::text::uuid",
                        &[&id],
                    )?
                    .get::<_, i64>(0))
                })
                .unwrap()
        };
        // The lease, read from the row while it lasts.
        let as_leased = store.job_events(ids[2]).unwrap();
        assert_eq!(
            as_leased[1..],
            [JobEvent {
                id: as_leased[1].id,
                ts: t0,
                event: "leased".into(),
                details: NewEvent::leased("w", 1, "1970-01-01T00:17:10.000Z").details,
            }]
        );
        assert!(as_leased[1].id > 0);
        assert_eq!(stored(ids[2]), 0, "the lease's event is not a row");
        // Heartbeats after it: one event appended, then coalesced.
        for n in 1..=2 {
            let t = from_ms(1_000_000 + n * 100);
            store
                .heartbeat_job(ids[2], &fence(ids[2]), from_ms(1_040_000), t)
                .unwrap();
        }
        let beats = store.job_events(ids[2]).unwrap();
        let names: Vec<&str> = beats.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["queued", "leased", "heartbeat"]);
        assert_eq!(beats[2].details.as_ref().unwrap()["count"], 2);
        let t1 = from_ms(1_001_000);
        // The set-based path, then the locked transition.
        let batch = store
            .complete_job(ids[0], &fence(ids[0]), None, t1)
            .unwrap();
        assert_eq!(batch.lease_owner, None);
        let (id, f) = (ids[1], fence(ids[1]));
        let single = store
            .write(move |c| complete(c, id, &f, Some(serde_json::json!({})), t1))
            .unwrap();
        assert_eq!(single.lease_owner, None);
        // Later events take later ids from the same sequence.
        let later = store
            .fail_job(
                ids[2],
                &fence(ids[2]),
                &Failure {
                    error: "boom".into(),
                    retryable: false,
                    details: None,
                    jitter: 0.0,
                },
                t1,
            )
            .unwrap();
        assert_eq!(later.status, JobStatus::Failed);
        // The failure stored the lease's event as a row: the history reads as it did.
        let failed = store.job_events(ids[2]).unwrap();
        assert_eq!(failed[..3], beats[..]);
        assert_eq!(failed[3].event, "failed");
        assert_eq!(stored(ids[2]), 3, "leased, heartbeat, failed");
        let mut finish_ids = vec![];
        for id in &ids[..2] {
            let h = store.job_events(*id).unwrap();
            let names: Vec<&str> = h.iter().map(|e| e.event.as_str()).collect();
            assert_eq!(names, ["queued", "leased", "succeeded"]);
            assert!(h[1].id < h[2].id, "{h:?}");
            assert_eq!(h[2].ts, t1);
            assert_eq!(
                h[2].details,
                NewEvent::succeeded("w", 1).details,
                "the event a stored row had"
            );
            assert_eq!(h[1].ts, t0);
            assert_eq!(
                h[1].details,
                NewEvent::leased("w", 1, "1970-01-01T00:17:10.000Z").details
            );
            assert_eq!(stored(*id), 0, "neither event is a row");
            assert_eq!(store.get_job(*id).unwrap().lease_owner, None);
            finish_ids.push(h[2].id);
        }
        assert!(finish_ids.iter().all(|f| *f < failed.last().unwrap().id));
        // A stored `succeeded` row (an older completion) is read as it is, not doubled.
        let (seq, legacy) = {
            let id = ids[0].to_string();
            store
                .read(move |c| {
                    let r = c.query_one(
                        "SELECT seq, finish_event FROM jobs WHERE id = $1::text::uuid",
                        &[&id],
                    )?;
                    Ok((r.get::<_, i64>(0), r.get::<_, i64>(1)))
                })
                .unwrap()
        };
        exec(
            &store,
            format!(
                "INSERT INTO job_events (id, job_seq, ts, event, details)
                 VALUES ({legacy}, {seq}, 1001000, 'succeeded',
                         '{{\"worker_id\":\"w\",\"attempt\":1}}');
                 UPDATE jobs SET finish_event = NULL WHERE seq = {seq}"
            ),
        );
        assert_eq!(store.job_events(ids[0]).unwrap(), {
            let mut h = store.job_events(ids[1]).unwrap();
            h[1].id = store.job_events(ids[0]).unwrap()[1].id;
            h[2].id = legacy;
            h
        });
        store.close();
        drop_schema();
    }

    /// A `leased` event the row still carried when it was read, and that the end of its
    /// lease stored before the events were read, shows once.
    #[test]
    fn a_lease_stored_between_the_two_reads_shows_once() {
        let mut job = Job::queued(job("t", 0), from_ms(1_000));
        job.status = JobStatus::Leased;
        job.attempts = 1;
        let leased = JobEvent {
            id: 7,
            ts: from_ms(2_000),
            event: "leased".into(),
            details: NewEvent::leased("w", 1, "1970-01-01T00:00:32.000Z").details,
        };
        let on_row = || OnRow {
            owner: Some("w".into()),
            finish_event: None,
            lease: Some((7, 2_000, 32_000)),
        };
        assert_eq!(on_row().add_to(&job, vec![]), std::slice::from_ref(&leased));
        let failed = JobEvent {
            id: 8,
            ts: from_ms(3_000),
            event: "failed".into(),
            details: None,
        };
        let stored = vec![leased, failed];
        assert_eq!(on_row().add_to(&job, stored.clone()), stored);
    }

    /// Claims sharing one statement are served in order, each up to its own limit and
    /// types, as one-at-a-time claims in that order would be; with a queue control in
    /// force each runs alone and the control holds.
    #[test]
    fn coalesced_claims_are_served_in_order_within_their_limits() {
        let Some((store, drop_schema)) = store("claim_flight") else {
            return;
        };
        let now = chrono::Utc::now();
        // Five of type a (priorities 1..=5: lease order), two of type b.
        let a: Vec<JobId> = (1..=5).map(|p| created(&store, job("a", p), now)).collect();
        store
            .enqueue_jobs(vec![job("b", 1), job("b", 2)], now)
            .unwrap();
        let reqs = vec![
            req("w1", &["a"], 2, now),
            req("w2", &["b"], 5, now),
            req("w3", &["a"], 1, now),
            req("w4", &["a"], 3, now),
            req("w5", &["b"], 1, now),
        ];
        let out = fly_claims(&store, ClaimFlight::new(reqs));
        let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(ids(&out[0]), a[0..2]);
        assert_eq!(ids(&out[2]), a[2..3]);
        assert_eq!(ids(&out[3]), a[3..5]);
        assert_eq!(out[1].len(), 2, "w2 takes both b jobs");
        assert!(out[4].is_empty(), "w5 comes after w2");
        for (jobs, worker) in out.iter().zip(["w1", "w2", "w3", "w4", "w5"]) {
            for j in jobs {
                assert_eq!(j.status, JobStatus::Leased);
                assert_eq!(j.lease_owner.as_deref(), Some(worker));
                assert_eq!(j.attempts, 1);
                let events = store.job_events(j.id).unwrap();
                let leased = events.iter().filter(|e| e.event == "leased").count();
                assert_eq!(leased, 1, "{events:?}");
            }
        }
        // A job that came due between two claims of one batch is leased: the statement
        // runs after both were made.
        let later = now + chrono::Duration::seconds(10);
        let mut due = job("c", 1);
        due.available_at = Some(now + chrono::Duration::seconds(5));
        store.enqueue_jobs(vec![due], now).unwrap();
        let reqs = vec![req("w9", &["c"], 1, now), req("w10", &["c"], 1, later)];
        let counts: Vec<usize> = fly_claims(&store, ClaimFlight::new(reqs))
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(counts, [1, 0], "the first claim of the batch gets it");
        // A paused type: the claims run one at a time and lease nothing of it.
        store
            .enqueue_jobs(vec![job("a", 1), job("a", 1), job("b", 1)], now)
            .unwrap();
        store.set_queue_control("a", Some(true), None, now).unwrap();
        let reqs = vec![
            req("w6", &["a"], 5, now),
            req("w7", &["a"], 5, now),
            req("w8", &[], 5, now),
        ];
        let counts: Vec<usize> = fly_claims(&store, ClaimFlight::new(reqs))
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(counts, [0, 0, 1]);
        store.close();
        drop_schema();
    }

    /// Claims of one type each, all different, share one statement (`CLAIM_MANY_BY_TYPE`):
    /// each gets what it would alone — its own type's jobs in lease order, up to its limit,
    /// due by its own now — beside a claim of several types in the same flight; with a
    /// queue control in force each runs alone.
    #[test]
    fn claims_of_different_single_types_share_a_statement_and_answer_as_alone() {
        let Some((store, drop_schema)) = store("claim_by_type") else {
            return;
        };
        let now = chrono::Utc::now();
        let later = now + chrono::Duration::seconds(10);
        // x: priorities 3, 1, 2 (lease order 1, 2, 3); y: one due now, one due at now + 5.
        let x: Vec<JobId> = [3, 1, 2].map(|p| created(&store, job("x", p), now)).into();
        let y_now = created(&store, job("y", 1), now);
        let mut due = job("y", 1);
        due.available_at = Some(now + chrono::Duration::seconds(5));
        let y_later = created(&store, due, now);
        let v = created(&store, job("v", 1), now);
        let z = created(&store, job("z", 1), now);
        let reqs = vec![
            req("wx", &["x"], 2, now),
            req("wy", &["y"], 5, later),
            req("ww", &["w"], 1, now),
            req("wvz", &["v", "z"], 5, now),
        ];
        let flight = ClaimFlight::new(reqs);
        assert!(
            flight.stmts.iter().any(|q| q.sql == CLAIM_MANY_BY_TYPE),
            "the three claims of one type each share a statement"
        );
        assert_eq!(flight.stmts.len(), 2);
        let out = fly_claims(&store, flight);
        let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&out[0]),
            [x[1], x[2]],
            "x in lease order, up to its limit"
        );
        assert_eq!(
            ids(&out[1]),
            [y_now, y_later],
            "y due by its own claim's now"
        );
        assert!(out[2].is_empty(), "no job of type w");
        let mut vz = ids(&out[3]);
        vz.sort();
        let mut want = vec![v, z];
        want.sort();
        assert_eq!(vz, want);
        for (jobs, worker) in out.iter().zip(["wx", "wy", "ww", "wvz"]) {
            for j in jobs {
                assert_eq!(j.status, JobStatus::Leased);
                assert_eq!(j.lease_owner.as_deref(), Some(worker));
                assert_eq!(
                    j.lease_until,
                    Some(j.updated_at + chrono::Duration::seconds(30))
                );
                let events = store.job_events(j.id).unwrap();
                assert_eq!(
                    events.iter().filter(|e| e.event == "leased").count(),
                    1,
                    "{events:?}"
                );
            }
        }
        // A paused type: the claims run one at a time; the paused one leases nothing.
        store
            .enqueue_jobs(vec![job("x", 1), job("y", 1)], now)
            .unwrap();
        store.set_queue_control("x", Some(true), None, now).unwrap();
        let reqs = vec![req("wx", &["x"], 5, now), req("wy", &["y"], 5, now)];
        let counts: Vec<usize> = fly_claims(&store, ClaimFlight::new(reqs))
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(counts, [0, 1]);
        store.close();
        drop_schema();
    }

    /// One flight carrying every kind of quick write answers each request as its own call
    /// would: enqueues (one of them a replayed key), completions (a live lease, a repeat, a
    /// lost lease, an unknown job) and claims, in request order; a claim leases a job
    /// enqueued earlier in the same flight.
    #[test]
    fn one_flight_answers_each_kind_of_write_as_its_own_call_would() {
        use super::super::batch::{quick_many, QuickAns, QuickReq};
        let Some((store, drop_schema)) = store("quick_many") else {
            return;
        };
        let now = chrono::Utc::now();
        let mut keyed = job("k", 1);
        keyed.meta.idempotency_key = Some("key-1".into());
        let first = created(&store, keyed.clone(), now);
        store.enqueue_jobs(vec![job("live", 1)], now).unwrap();
        let live = store
            .claim_jobs(&req("w1", &["live"], 1, now).claim, now)
            .unwrap();
        let live = live[0].clone();
        let fence = live.fence(&WorkerId::local("w1"));
        let stale = Fence {
            worker_id: WorkerId::local("w1"),
            lease_token: crate::domain::worker_input::lease_token(Some("0".repeat(32))).unwrap(),
        };
        let done = |id, fence: &Fence| {
            QuickReq::Complete(CompleteReq {
                id,
                fence: fence.clone(),
                result: Some(serde_json::json!({"ok": true})),
                now,
            })
        };
        let reqs = vec![
            QuickReq::Enqueue(EnqueueReq {
                job: job("fresh", 1),
                now,
            }),
            done(live.id, &stale),
            done(live.id, &fence),
            QuickReq::Claim(req("w2", &["fresh"], 1, now)),
            QuickReq::Enqueue(EnqueueReq { job: keyed, now }),
            done(live.id, &fence),
            done(JobId::default(), &fence),
            QuickReq::Claim(req("w3", &["fresh"], 1, now)),
        ];
        let out = store.writer.call(move |c| quick_many(c, reqs)).unwrap();
        let mut out = out.into_iter();
        let mut next = || out.next().expect("one answer per request");
        let fresh = match next().unwrap() {
            QuickAns::Enqueued(Enqueued::Created(j)) => j,
            _ => panic!("the first enqueue creates its job"),
        };
        assert!(
            matches!(next(), Err(StoreError::Conflict(_))),
            "a completion with another lease's token is refused"
        );
        let completed = next().unwrap().completed().unwrap();
        assert_eq!(completed.id, live.id);
        assert_eq!(completed.status, JobStatus::Succeeded);
        let claimed = next().unwrap().claimed().unwrap();
        assert_eq!(
            claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
            [fresh.id],
            "a claim leases the job enqueued earlier in its flight"
        );
        match next().unwrap().enqueued().unwrap() {
            Enqueued::Replayed(j) => assert_eq!(j.id, first),
            other => panic!("the same key and input replay: {other:?}"),
        }
        // The repeat gets what a second call gets on its own.
        let repeat = next();
        let alone = store.complete_job(live.id, &fence, None, now);
        assert_eq!(
            format!("{repeat:?}"),
            format!("{:?}", alone.map(QuickAns::Completed))
        );
        assert!(matches!(next(), Err(StoreError::NotFound)));
        assert!(next().unwrap().claimed().unwrap().is_empty());
        let events = store.job_events(live.id).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "succeeded").count(),
            1,
            "{kinds:?}"
        );
        store.close();
        drop_schema();
    }
}
