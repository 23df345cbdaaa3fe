//! Broadcasts on PostgreSQL: guarded status changes, claims with `FOR UPDATE SKIP LOCKED`
//! (two nodes never claim one broadcast) and set-based, chunked, resumable delivery (one
//! `INSERT … SELECT` per chunk; its receipts, inbox counts, counters and cursor commit in
//! one transaction). Behaves as the SQLite version does.

use super::{PgConn, PgStore};
use crate::domain::notify::{
    Audience, Broadcast, BroadcastAction, BroadcastDraft, BroadcastFilter, BroadcastPage,
    BroadcastStatus, ChunkOutcome, Condition,
};
use crate::domain::time::{to_ms, Ts};
use crate::domain::JobConflict;
use crate::storage::delivery::{parse_stored_audience, ClaimSteps, Delivery};
use crate::storage::like_pattern;
use crate::storage::{BroadcastStore, Result, StoreError, Wake};
use postgres::types::ToSql;
use postgres::Row;
use serde_json::Value;
use uuid::Uuid;

const COLS: &str = "id, title, body, audience, status, created_by, created_at, updated_at, \
    scheduled_at, started_at, finished_at, total, sent, failed, skipped, last_error";

/// Query parameters built alongside a dynamic WHERE clause (`$n` is the n-th pushed).
#[derive(Default)]
struct Args(Vec<Box<dyn ToSql + Sync>>);

impl Args {
    /// Adds a parameter and returns its number.
    fn push<T: ToSql + Sync + 'static>(&mut self, v: T) -> usize {
        self.0.push(Box::new(v));
        self.0.len()
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn row_to_broadcast(r: &Row) -> Result<Broadcast> {
    crate::storage::row::broadcast(r)
}

fn load(c: &mut PgConn, id: &str) -> Result<Broadcast> {
    let sql = format!("SELECT {COLS} FROM broadcasts WHERE id = $1 AND deleted_at IS NULL");
    row_to_broadcast(&c.query_one(&sql, &[&id])?)
}

pub fn get(c: &mut PgConn, id: uuid::Uuid) -> Result<Broadcast> {
    load(c, &id.to_string())
}

fn write_recipients(c: &mut PgConn, id: &str, audience: &Audience) -> Result<()> {
    c.execute(
        "DELETE FROM broadcast_recipients WHERE broadcast_id = $1",
        &[&id],
    )?;
    if let Audience::ExplicitUsers(ids) = audience {
        let ids: Vec<String> = ids.iter().map(|u| u.as_str().to_string()).collect();
        c.execute(
            "INSERT INTO broadcast_recipients (broadcast_id, pos, user_id)
             SELECT $1, t.pos, t.user_id FROM unnest($2::text[]) WITH ORDINALITY AS t(user_id, pos)",
            &[&id, &ids],
        )?;
    }
    Ok(())
}

/// Wakes a broadcast worker on every node (at commit) when a broadcast is due now.
fn wake_if_due(c: &mut PgConn, b: &Broadcast, now: Ts) -> Result<()> {
    if b.status == BroadcastStatus::Scheduled && b.scheduled_at.is_some_and(|at| at <= now) {
        c.notify(Wake::Broadcasts)?;
    }
    Ok(())
}

pub fn create(c: &mut PgConn, b: &Broadcast) -> Result<()> {
    let id = b.id.to_string();
    c.execute(
        "INSERT INTO broadcasts (id, title, body, audience, status, created_by, created_at,
             updated_at, scheduled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        &[
            &id,
            &b.title,
            &b.body,
            &b.audience.to_json().to_string(),
            &b.status.as_str(),
            &b.created_by,
            &to_ms(&b.created_at),
            &b.scheduled_at.as_ref().map(to_ms),
        ],
    )?;
    write_recipients(c, &id, &b.audience)?;
    wake_if_due(c, b, b.created_at)
}

/// Runs a guarded status change: `sql` updates the row only from the allowed statuses
/// and returns its id. No row means unknown (404) or not allowed now (409).
fn guarded_update(c: &mut PgConn, id: &str, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<()> {
    match c.query_opt(sql, args)? {
        Some(_) => Ok(()),
        None => {
            load(c, id)?;
            Err(StoreError::Conflict(JobConflict::InvalidStatus))
        }
    }
}

fn guarded(c: &mut PgConn, id: &str, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Broadcast> {
    guarded_update(c, id, sql, args)?;
    load(c, id)
}

pub fn replace(c: &mut PgConn, id: uuid::Uuid, d: &BroadcastDraft, now: Ts) -> Result<Broadcast> {
    let id = id.to_string();
    let status = if d.scheduled_at.is_some() {
        "scheduled"
    } else {
        "draft"
    };
    let b = guarded(
        c,
        &id,
        &format!(
            "UPDATE broadcasts SET title = $2, body = $3, audience = $4, scheduled_at = $5,
             status = $6, updated_at = $7
         WHERE id = $1 AND deleted_at IS NULL AND status IN ({}) RETURNING id",
            BroadcastAction::Replace.sql_statuses()
        ),
        &[
            &id,
            &d.title,
            &d.body,
            &d.audience.to_json().to_string(),
            &d.scheduled_at.as_ref().map(to_ms),
            &status,
            &to_ms(&now),
        ],
    )?;
    write_recipients(c, &id, &d.audience)?;
    wake_if_due(c, &b, now)?;
    Ok(b)
}

pub fn schedule(c: &mut PgConn, id: uuid::Uuid, at: Ts, now: Ts) -> Result<Broadcast> {
    let id = id.to_string();
    let b = guarded(
        c,
        &id,
        &format!(
            "UPDATE broadcasts SET status = 'scheduled', scheduled_at = $2, updated_at = $3
         WHERE id = $1 AND deleted_at IS NULL AND status IN ({}) RETURNING id",
            BroadcastAction::Schedule.sql_statuses()
        ),
        &[&id, &to_ms(&at), &to_ms(&now)],
    )?;
    wake_if_due(c, &b, now)?;
    Ok(b)
}

pub fn cancel(c: &mut PgConn, id: uuid::Uuid, now: Ts) -> Result<Broadcast> {
    let id = id.to_string();
    guarded(
        c,
        &id,
        &format!(
            "UPDATE broadcasts SET status = 'cancelled', finished_at = $2, updated_at = $2,
             lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND deleted_at IS NULL AND status IN ({})
         RETURNING id",
            BroadcastAction::Cancel.sql_statuses()
        ),
        &[&id, &to_ms(&now)],
    )
}

pub fn delete(c: &mut PgConn, id: uuid::Uuid, now: Ts) -> Result<()> {
    let id = id.to_string();
    guarded_update(
        c,
        &id,
        &format!(
            "UPDATE broadcasts SET deleted_at = $2, updated_at = $2
         WHERE id = $1 AND deleted_at IS NULL AND status IN ({}) RETURNING id",
            BroadcastAction::Delete.sql_statuses()
        ),
        &[&id, &to_ms(&now)],
    )?;
    c.execute(
        "DELETE FROM broadcast_recipients WHERE broadcast_id = $1",
        &[&id],
    )?;
    Ok(())
}

/// `q` matches title, body or author, case-insensitively (as SQLite's LIKE does).
const Q_FILTER: &str = "deleted_at IS NULL AND ($1::text IS NULL OR title ILIKE $1 ESCAPE '\\' \
    OR body ILIKE $1 ESCAPE '\\' OR created_by ILIKE $1 ESCAPE '\\')";
/// No statuses means every status.
const STATUS_FILTER: &str = "(cardinality($2::text[]) = 0 OR status = ANY($2::text[]))";

pub fn list(c: &mut PgConn, f: &BroadcastFilter) -> Result<BroadcastPage> {
    let pattern: Option<String> = f.q.as_deref().map(like_pattern);
    let counts: Vec<(String, i64)> = c
        .query(
            &format!("SELECT status, COUNT(*) FROM broadcasts WHERE {Q_FILTER} GROUP BY status"),
            &[&pattern],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let status_counts = BroadcastStatus::ALL
        .iter()
        .map(|st| {
            (
                *st,
                counts
                    .iter()
                    .find(|(s, _)| s == st.as_str())
                    .map_or(0, |(_, n)| *n),
            )
        })
        .collect();
    let statuses: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_string()).collect();
    let row = c.query_one(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM(total), 0)::BIGINT FROM broadcasts
             WHERE {Q_FILTER} AND {STATUS_FILTER}"
        ),
        &[&pattern, &statuses],
    )?;
    let (total, recipients): (i64, i64) = (row.get(0), row.get(1));
    let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
    let items = c
        .query(
            &format!(
                "SELECT {COLS} FROM broadcasts WHERE {Q_FILTER} AND {STATUS_FILTER}
                 ORDER BY seq DESC LIMIT $3 OFFSET $4"
            ),
            &[&pattern, &statuses, &limit, &offset],
        )?
        .iter()
        .map(row_to_broadcast)
        .collect::<Result<_>>()?;
    Ok(BroadcastPage {
        items,
        total,
        status_counts,
        recipients,
    })
}

/// SQL for "this user is in the segment" (as SQLite's `json_type`/`json_extract` test
/// it: same JSON type and equal value), its parameters appended to `args`.
/// The segment's conditions with a fixed number of parameters however many values a list
/// holds: the attribute's name and, per JSON type, the values as one array matched with
/// `= ANY(…)` (a chain of `OR`s grows with every value). A value matches an attribute of
/// the same JSON type and the same value (numbers compare as numbers).
fn segment_sql(conds: &[Condition], args: &mut Args) -> String {
    let mut all = Vec::new();
    for c in conds {
        let p = args.push(c.attribute.clone());
        let attr = format!("(attributes::jsonb -> ${p}::text)");
        let (mut texts, mut numbers, mut bools) = (Vec::new(), Vec::new(), Vec::new());
        for v in &c.any_of {
            match v {
                Value::Bool(b) => bools.push(if *b { "true" } else { "false" }.to_string()),
                Value::Number(n) => numbers.push(n.to_string()),
                other => texts.push(other.as_str().unwrap_or_default().to_string()),
            }
        }
        let mut any = Vec::new();
        if !texts.is_empty() {
            let q = args.push(texts);
            any.push(format!(
                "(jsonb_typeof({attr}) = 'string' AND (attributes::jsonb ->> ${p}::text) = ANY(${q}::text[]))"
            ));
        }
        if !numbers.is_empty() {
            // CASE, not AND: a cast of a non-number would fail, and AND does not fix the
            // order of evaluation.
            let q = args.push(numbers);
            any.push(format!(
                "CASE WHEN jsonb_typeof({attr}) = 'number' \
                 THEN {attr}::numeric = ANY((${q}::text[])::numeric[]) ELSE false END"
            ));
        }
        if !bools.is_empty() {
            let q = args.push(bools);
            any.push(format!(
                "(jsonb_typeof({attr}) = 'boolean' AND ({attr})::text = ANY(${q}::text[]))"
            ));
        }
        all.push(format!("({})", any.join(" OR ")));
    }
    all.join(" AND ")
}

/// The audience condition on `users` (active, not deleted, in the segment if any).
fn audience_where(audience: &Audience, args: &mut Args) -> String {
    let base = "is_active = 1 AND deleted_at IS NULL".to_string();
    match audience {
        Audience::Segment(conds) => format!("{base} AND {}", segment_sql(conds, args)),
        _ => base,
    }
}

/// The delivery state of a broadcast `owner` holds the claim of, its row locked until
/// the transaction ends (so a takeover or a cancel waits, and sees the chunk's result).
fn load_delivery(c: &mut PgConn, id: &str, owner: &str) -> Result<Option<Delivery>> {
    let row = c.query_opt(
        "SELECT seq, audience, snapshot_max, cursor FROM broadcasts
         WHERE id = $1 AND status = 'sending' AND lease_owner = $2 AND deleted_at IS NULL
         FOR UPDATE",
        &[&id, &owner],
    )?;
    row.map(|r| {
        Ok(Delivery {
            seq: r.get(0),
            id: id.to_string(),
            audience: parse_stored_audience(&r.get::<_, String>(1))?,
            snapshot_max: r.get(2),
            cursor: r.get(3),
        })
    })
    .transpose()
}

/// Fixes the audience bound and the total the first time a broadcast is claimed.
fn snapshot(c: &mut PgConn, d: &Delivery) -> Result<()> {
    let (max, total): (i64, i64) = match &d.audience {
        Audience::ExplicitUsers(_) => {
            let r = c.query_one(
                "SELECT COALESCE(MAX(pos), 0)::BIGINT, COUNT(*) FROM broadcast_recipients
                 WHERE broadcast_id = $1",
                &[&d.id],
            )?;
            (r.get(0), r.get(1))
        }
        audience => {
            let max: i64 = c
                .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM users", &[])?
                .get(0);
            let mut args = Args::default();
            args.push(max);
            let cond = audience_where(audience, &mut args);
            let total: i64 = c
                .query_one(
                    &format!("SELECT COUNT(*) FROM users WHERE seq <= $1 AND {cond}"),
                    &args.refs(),
                )?
                .get(0);
            (max, total)
        }
    };
    c.execute(
        "UPDATE broadcasts SET snapshot_max = $2, total = $3, cursor = 0 WHERE seq = $1",
        &[&d.seq, &max, &total],
    )?;
    Ok(())
}

/// Claims due broadcasts (scheduled and due, or sending with an expired claim) for `owner`.
/// Rows another transaction holds are skipped, so two nodes never claim one broadcast.
pub fn claim_due(
    c: &mut PgConn,
    owner: &str,
    limit: usize,
    lease_until: Ts,
    now: Ts,
) -> Result<Vec<Broadcast>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut claimed: Vec<(i64, String)> = c
        .query(
            "UPDATE broadcasts SET status = 'sending', lease_owner = $1, lease_until = $2,
                 started_at = COALESCE(started_at, $3), updated_at = $3
             WHERE seq IN (
                 SELECT seq FROM broadcasts WHERE deleted_at IS NULL AND
                     ((status = 'scheduled' AND scheduled_at <= $3)
                      OR (status = 'sending' AND lease_until < $3))
                 ORDER BY scheduled_at NULLS FIRST, seq LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING seq, id",
            &[&owner, &to_ms(&lease_until), &to_ms(&now), &limit],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // In the order SQLite returns them (the order they were created).
    claimed.sort_unstable();
    crate::storage::delivery::prepare_claimed(
        c,
        claimed.into_iter().map(|(_, id)| id).collect(),
        ClaimSteps {
            exec: |c: &mut PgConn, sql: &str| c.batch(sql),
            prepare: |c: &mut PgConn, id: &str| {
                if let Some(d) = load_delivery(c, id, owner)? {
                    if d.snapshot_max.is_none() {
                        snapshot(c, &d)?;
                    }
                }
                load(c, id)
            },
            fail: |c: &mut PgConn, id: &str, why: &str| mark_failed(c, id, owner, why, now),
        },
    )
}

/// Adds the receipts of one chunk to their users' inbox counts: the `ins` CTE (the
/// chunk's `INSERT … RETURNING user_id`), counted per user in user order, so concurrent
/// deliveries lock the count rows in one order and cannot deadlock.
const COUNT_INSERTED: &str = "cnt AS (
        INSERT INTO inbox_counts (user_id, total, unread)
        SELECT user_id, COUNT(*), COUNT(*) FROM ins GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET total = inbox_counts.total + EXCLUDED.total,
            unread = inbox_counts.unread + EXCLUDED.unread)";

/// Tells every node's real-time feed which item sequence numbers this chunk added (at
/// commit; nothing when it added none).
fn notify_items(c: &mut PgConn, lo: Option<i64>, hi: Option<i64>) -> Result<()> {
    match (lo, hi) {
        (Some(lo), Some(hi)) => c.notify_inbox(lo, hi),
        _ => Ok(()),
    }
}

/// Delivers the next chunk of up to `chunk` recipients, renewing the claim; finishes the
/// broadcast when the audience is exhausted.
pub fn deliver_chunk(
    c: &mut PgConn,
    id: uuid::Uuid,
    owner: &str,
    chunk: usize,
    lease_until: Ts,
    now: Ts,
) -> Result<ChunkOutcome> {
    let id = id.to_string();
    let Some(d) = load_delivery(c, &id, owner)? else {
        return Ok(ChunkOutcome::Stopped);
    };
    let max = d.snapshot_max.unwrap_or(0);
    let now_ms = to_ms(&now);
    let chunk = i64::try_from(chunk).unwrap_or(i64::MAX);
    let (boundary, inserted, processed) = match &d.audience {
        Audience::ExplicitUsers(_) => {
            // Positions in the recipient list: every one in the chunk is processed, sent
            // if it is an active user without the item yet, skipped otherwise.
            let boundary = d.cursor.saturating_add(chunk).min(max);
            let r = c.query_one(
                &format!(
                    "WITH ins AS (
                             INSERT INTO inbox_items (user_id, broadcast_id, created_at)
                             SELECT r.user_id, $1::text, $2::bigint FROM broadcast_recipients r
                             JOIN users u ON u.id = r.user_id AND u.is_active = 1
                                 AND u.deleted_at IS NULL
                             WHERE r.broadcast_id = $1 AND r.pos > $3 AND r.pos <= $4
                             ORDER BY r.pos
                             ON CONFLICT (user_id, broadcast_id) WHERE broadcast_id IS NOT NULL
                             DO NOTHING
                             RETURNING user_id, id),
                         {COUNT_INSERTED}
                         SELECT COUNT(*), MIN(id), MAX(id) FROM ins"
                ),
                &[&d.id, &now_ms, &d.cursor, &boundary],
            )?;
            notify_items(c, r.get(1), r.get(2))?;
            (boundary, r.get(0), boundary - d.cursor)
        }
        audience => {
            // The next `chunk` audience members after the cursor; the cursor moves past
            // all of them (and to the bound when fewer are left). As on SQLite (whose
            // OFFSET chunk - 1 is 0 then), a chunk of 0 takes one member.
            let scan = chunk.max(1);
            let mut args = Args::default();
            args.push(d.id.clone());
            args.push(now_ms);
            args.push(d.cursor);
            args.push(max);
            args.push(scan);
            let cond = audience_where(audience, &mut args);
            let r = c.query_one(
                &format!(
                    "WITH scan AS (
                         SELECT seq, id FROM users WHERE seq > $3 AND seq <= $4 AND {cond}
                         ORDER BY seq LIMIT $5),
                     ins AS (
                         INSERT INTO inbox_items (user_id, broadcast_id, created_at)
                         SELECT id, $1::text, $2::bigint FROM scan ORDER BY seq
                         ON CONFLICT (user_id, broadcast_id) WHERE broadcast_id IS NOT NULL
                         DO NOTHING
                         RETURNING user_id, id),
                     {COUNT_INSERTED}
                     SELECT (SELECT COUNT(*) FROM scan), (SELECT MAX(seq) FROM scan),
                         (SELECT COUNT(*) FROM ins), (SELECT MIN(id) FROM ins),
                         (SELECT MAX(id) FROM ins)"
                ),
                &args.refs(),
            )?;
            notify_items(c, r.get(3), r.get(4))?;
            let (scanned, last, inserted): (i64, Option<i64>, i64) = (r.get(0), r.get(1), r.get(2));
            let boundary = match last {
                Some(last) if scanned == scan => last,
                _ => max,
            };
            (boundary, inserted, inserted)
        }
    };
    let skipped = processed - inserted;
    let done = boundary >= max;
    c.execute(
        "UPDATE broadcasts SET sent = sent + $2, skipped = skipped + $3, cursor = $4,
             lease_until = $5, updated_at = $6
         WHERE seq = $1",
        &[
            &d.seq,
            &inserted,
            &skipped,
            &boundary,
            &to_ms(&lease_until),
            &now_ms,
        ],
    )?;
    if !done {
        return Ok(ChunkOutcome::Progress(load(c, &id)?));
    }
    // Whoever left the audience while it was being sent counts as skipped, so that
    // sent + failed + skipped == total; one who joined it counts in total.
    c.execute(
        "UPDATE broadcasts SET
             skipped = skipped + GREATEST(total - sent - failed - skipped, 0),
             total = GREATEST(total, sent + failed + skipped),
             status = CASE WHEN sent = 0 AND failed > 0 THEN 'failed' ELSE 'sent' END,
             finished_at = $2, updated_at = $2, lease_owner = NULL, lease_until = NULL
         WHERE seq = $1",
        &[&d.seq, &now_ms],
    )?;
    Ok(ChunkOutcome::Finished(load(c, &id)?))
}

/// Ends a broadcast that could not be delivered: whatever was not delivered is failed.
pub fn fail(
    c: &mut PgConn,
    id: uuid::Uuid,
    owner: &str,
    error: &str,
    now: Ts,
) -> Result<Option<Broadcast>> {
    let id = id.to_string();
    if !mark_failed(c, &id, owner, error, now)? {
        return Ok(None);
    }
    load(c, &id).map(Some)
}

/// Marks a claimed broadcast failed with the reason; false if the claim no longer holds.
fn mark_failed(c: &mut PgConn, id: &str, owner: &str, error: &str, now: Ts) -> Result<bool> {
    let n = c.execute(
        "UPDATE broadcasts SET status = 'failed', last_error = $3,
             failed = GREATEST(total - sent - skipped, 0), finished_at = $4, updated_at = $4,
             lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND status = 'sending' AND lease_owner = $2",
        &[&id, &owner, &error, &to_ms(&now)],
    )?;
    Ok(n == 1)
}

impl BroadcastStore for PgStore {
    fn create_broadcast(&self, b: &Broadcast) -> Result<()> {
        let b = b.clone();
        self.write(move |c| create(c, &b))
    }

    fn get_broadcast(&self, id: Uuid) -> Result<Broadcast> {
        self.read(|c| get(c, id))
    }

    fn list_broadcasts(&self, filter: &BroadcastFilter) -> Result<BroadcastPage> {
        self.read(|c| list(c, filter))
    }

    fn replace_broadcast(&self, id: Uuid, draft: &BroadcastDraft, now: Ts) -> Result<Broadcast> {
        let d = draft.clone();
        self.write(move |c| replace(c, id, &d, now))
    }

    fn schedule_broadcast(&self, id: Uuid, at: Ts, now: Ts) -> Result<Broadcast> {
        self.write(move |c| schedule(c, id, at, now))
    }

    fn cancel_broadcast(&self, id: Uuid, now: Ts) -> Result<Broadcast> {
        self.write(move |c| cancel(c, id, now))
    }

    fn delete_broadcast(&self, id: Uuid, now: Ts) -> Result<()> {
        self.write(move |c| delete(c, id, now))
    }

    fn claim_due_broadcasts(
        &self,
        owner: &str,
        limit: usize,
        lease_until: Ts,
        now: Ts,
    ) -> Result<Vec<Broadcast>> {
        let owner = owner.to_string();
        self.write(move |c| claim_due(c, &owner, limit, lease_until, now))
    }

    fn deliver_broadcast_chunk(
        &self,
        id: Uuid,
        owner: &str,
        chunk: usize,
        lease_until: Ts,
        now: Ts,
    ) -> Result<ChunkOutcome> {
        let owner = owner.to_string();
        self.write(move |c| deliver_chunk(c, id, &owner, chunk, lease_until, now))
    }

    fn fail_broadcast(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        now: Ts,
    ) -> Result<Option<Broadcast>> {
        let (owner, error) = (owner.to_string(), error.to_string());
        self.write(move |c| fail(c, id, &owner, &error, now))
    }
}
