//! Broadcasts on SQLite: guarded status changes, atomic claims and set-based, chunked,
//! resumable delivery (`INSERT … SELECT` from the audience; each chunk's receipts,
//! counters and cursor commit in one transaction).

use super::{map_err, SqliteStore};
use crate::domain::notify::{
    Audience, Broadcast, BroadcastAction, BroadcastDraft, BroadcastFilter, BroadcastPage,
    BroadcastStatus, ChunkOutcome, Condition,
};
use crate::domain::time::{to_ms, Ts};
use crate::domain::JobConflict;
use crate::storage::delivery::{parse_stored_audience, ClaimSteps, Delivery};
use crate::storage::like_pattern;
use crate::storage::{BroadcastStore, Result, StoreError};
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;
use uuid::Uuid;

const COLS: &str = "id, title, body, audience, status, created_by, created_at, updated_at, \
    scheduled_at, started_at, finished_at, total, sent, failed, skipped, last_error";

fn row_to_broadcast(r: &Row<'_>) -> rusqlite::Result<Broadcast> {
    super::decoded(0, crate::storage::row::broadcast(r))
}

fn load(c: &Connection, id: &str) -> Result<Broadcast> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM broadcasts WHERE id = ?1 AND deleted_at IS NULL"
    ))
    .and_then(|mut s| s.query_row([id], row_to_broadcast).optional())
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)
}

pub fn get(c: &Connection, id: uuid::Uuid) -> Result<Broadcast> {
    load(c, &id.to_string())
}

fn write_recipients(c: &Connection, id: &str, audience: &Audience) -> Result<()> {
    c.prepare_cached("DELETE FROM broadcast_recipients WHERE broadcast_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(map_err)?;
    if let Audience::ExplicitUsers(ids) = audience {
        let mut st = c
            .prepare_cached(
                "INSERT INTO broadcast_recipients (broadcast_id, pos, user_id) VALUES (?1, ?2, ?3)",
            )
            .map_err(map_err)?;
        for (i, u) in ids.iter().enumerate() {
            st.execute(params![id, (i + 1) as i64, u.as_str()])
                .map_err(map_err)?;
        }
    }
    Ok(())
}

pub fn create(c: &Connection, b: &Broadcast) -> Result<()> {
    let id = b.id.to_string();
    c.prepare_cached(
        "INSERT INTO broadcasts (id, title, body, audience, status, created_by, created_at,
             updated_at, scheduled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            b.title,
            b.body,
            b.audience.to_json().to_string(),
            b.status.as_str(),
            b.created_by,
            to_ms(&b.created_at),
            b.scheduled_at.as_ref().map(to_ms),
        ])
    })
    .map_err(map_err)?;
    write_recipients(c, &id, &b.audience)
}

/// Runs a guarded status change: `sql` updates the row only from the allowed statuses
/// and returns its id. No row means unknown (404) or not allowed now (409).
fn guarded_update(c: &Connection, id: &str, sql: &str, args: Vec<Sql>) -> Result<()> {
    let changed: Option<String> = c
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params_from_iter(args), |r| r.get(0)).optional())
        .map_err(map_err)?;
    match changed {
        Some(_) => Ok(()),
        None => {
            load(c, id)?;
            Err(StoreError::Conflict(JobConflict::InvalidStatus))
        }
    }
}

fn guarded(c: &Connection, id: &str, sql: &str, args: Vec<Sql>) -> Result<Broadcast> {
    guarded_update(c, id, sql, args)?;
    load(c, id)
}

pub fn replace(c: &Connection, id: uuid::Uuid, d: &BroadcastDraft, now: Ts) -> Result<Broadcast> {
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
            "UPDATE broadcasts SET title = ?2, body = ?3, audience = ?4, scheduled_at = ?5,
             status = ?6, updated_at = ?7
         WHERE id = ?1 AND deleted_at IS NULL AND status IN ({}) RETURNING id",
            BroadcastAction::Replace.sql_statuses()
        ),
        vec![
            id.clone().into(),
            d.title.clone().into(),
            d.body.clone().into(),
            d.audience.to_json().to_string().into(),
            d.scheduled_at.as_ref().map(to_ms).into(),
            status.to_string().into(),
            to_ms(&now).into(),
        ],
    )?;
    write_recipients(c, &id, &d.audience)?;
    Ok(b)
}

pub fn schedule(c: &Connection, id: uuid::Uuid, at: Ts, now: Ts) -> Result<Broadcast> {
    let id = id.to_string();
    guarded(
        c,
        &id,
        &format!(
            "UPDATE broadcasts SET status = 'scheduled', scheduled_at = ?2, updated_at = ?3
         WHERE id = ?1 AND deleted_at IS NULL AND status IN ({}) RETURNING id",
            BroadcastAction::Schedule.sql_statuses()
        ),
        vec![id.clone().into(), to_ms(&at).into(), to_ms(&now).into()],
    )
}

pub fn cancel(c: &Connection, id: uuid::Uuid, now: Ts) -> Result<Broadcast> {
    let id = id.to_string();
    guarded(
        c,
        &id,
        &format!(
            "UPDATE broadcasts SET status = 'cancelled', finished_at = ?2, updated_at = ?2,
             lease_owner = NULL, lease_until = NULL
         WHERE id = ?1 AND deleted_at IS NULL AND status IN ({})
         RETURNING id",
            BroadcastAction::Cancel.sql_statuses()
        ),
        vec![id.clone().into(), to_ms(&now).into()],
    )
}

pub fn delete(c: &Connection, id: uuid::Uuid, now: Ts) -> Result<()> {
    let id = id.to_string();
    guarded_update(
        c,
        &id,
        &format!(
            "UPDATE broadcasts SET deleted_at = ?2, updated_at = ?2
         WHERE id = ?1 AND deleted_at IS NULL AND status IN ({}) RETURNING id",
            BroadcastAction::Delete.sql_statuses()
        ),
        vec![id.clone().into(), to_ms(&now).into()],
    )?;
    c.prepare_cached("DELETE FROM broadcast_recipients WHERE broadcast_id = ?1")
        .and_then(|mut s| s.execute([&id]))
        .map_err(map_err)?;
    Ok(())
}

pub fn list(c: &Connection, f: &BroadcastFilter) -> Result<BroadcastPage> {
    let pattern: Sql = f.q.as_deref().map(like_pattern).into();
    let q_filter = "deleted_at IS NULL AND (?1 IS NULL OR title LIKE ?1 ESCAPE '\\' \
                    OR body LIKE ?1 ESCAPE '\\' OR created_by LIKE ?1 ESCAPE '\\')";
    let counts: Vec<(String, i64)> = c
        .prepare_cached(&format!(
            "SELECT status, COUNT(*) FROM broadcasts WHERE {q_filter} GROUP BY status"
        ))
        .and_then(|mut s| {
            s.query_map([pattern.clone()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(map_err)?;
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
    let mut status_filter = String::new();
    let mut args: Vec<Sql> = vec![pattern];
    if !f.statuses.is_empty() {
        let marks: Vec<String> = f
            .statuses
            .iter()
            .map(|s| {
                args.push(s.as_str().to_string().into());
                format!("?{}", args.len())
            })
            .collect();
        status_filter = format!(" AND status IN ({})", marks.join(", "));
    }
    let (total, recipients): (i64, i64) = c
        .prepare_cached(&format!(
            "SELECT COUNT(*), COALESCE(SUM(total), 0) FROM broadcasts WHERE {q_filter}{status_filter}"
        ))
        .and_then(|mut s| s.query_row(params_from_iter(args.clone()), |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(map_err)?;
    args.push((f.limit as i64).into());
    let lim = args.len();
    args.push((f.offset as i64).into());
    let items = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM broadcasts WHERE {q_filter}{status_filter}
             ORDER BY seq DESC LIMIT ?{lim} OFFSET ?{}",
            lim + 1
        ))
        .and_then(|mut s| {
            s.query_map(params_from_iter(args), row_to_broadcast)?
                .collect()
        })
        .map_err(map_err)?;
    Ok(BroadcastPage {
        items,
        total,
        status_counts,
        recipients,
    })
}

/// SQL for "this user is in the segment" and its arguments, appended to `args`.
/// The segment's conditions with two parameters each, however many values a list holds:
/// the attribute's path and the values as one JSON array, matched through `json_each`
/// (a chain of `OR`s grows the expression tree with every value, and SQLite refuses a
/// tree deeper than 1000). A value matches an attribute of the same JSON type (any two
/// numbers compare as numbers) and the same value.
fn segment_sql(conds: &[Condition], args: &mut Vec<Sql>) -> String {
    let mut all = Vec::new();
    for c in conds {
        args.push(format!("$.\"{}\"", c.attribute).into());
        let p = args.len();
        args.push(Value::Array(c.any_of.clone()).to_string().into());
        let q = args.len();
        all.push(format!(
            "EXISTS (SELECT 1 FROM json_each(?{q}) v WHERE CASE json_type(attributes, ?{p})
                 WHEN 'text' THEN v.type = 'text' AND v.value = json_extract(attributes, ?{p})
                 WHEN 'integer' THEN v.type IN ('integer', 'real') AND v.value = json_extract(attributes, ?{p})
                 WHEN 'real' THEN v.type IN ('integer', 'real') AND v.value = json_extract(attributes, ?{p})
                 WHEN 'true' THEN v.type = 'true'
                 WHEN 'false' THEN v.type = 'false'
                 ELSE 0 END)"
        ));
    }
    all.join(" AND ")
}

/// The audience condition on `users` (active, not deleted, in the segment if any).
fn audience_where(audience: &Audience, args: &mut Vec<Sql>) -> String {
    let base = "is_active = 1 AND deleted_at IS NULL".to_string();
    match audience {
        Audience::Segment(conds) => format!("{base} AND {}", segment_sql(conds, args)),
        _ => base,
    }
}

fn load_delivery(c: &Connection, id: &str, owner: &str) -> Result<Option<Delivery>> {
    let row: Option<(i64, String, Option<i64>, i64)> = c
        .prepare_cached(
            "SELECT seq, audience, snapshot_max, cursor FROM broadcasts
             WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2 AND deleted_at IS NULL",
        )
        .and_then(|mut s| {
            s.query_row(params![id, owner], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(map_err)?;
    row.map(|(seq, audience, snapshot_max, cursor)| {
        Ok(Delivery {
            seq,
            id: id.to_string(),
            audience: parse_stored_audience(&audience)?,
            snapshot_max,
            cursor,
        })
    })
    .transpose()
}

/// Fixes the audience bound and the total the first time a broadcast is claimed.
fn snapshot(c: &Connection, d: &Delivery) -> Result<()> {
    let (max, total): (i64, i64) = match &d.audience {
        Audience::ExplicitUsers(_) => c
            .prepare_cached("SELECT COALESCE(MAX(pos), 0), COUNT(*) FROM broadcast_recipients WHERE broadcast_id = ?1")
            .and_then(|mut s| s.query_row([&d.id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(map_err)?,
        audience => {
            let max: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM users")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(map_err)?;
            let mut args: Vec<Sql> = vec![max.into()];
            let cond = audience_where(audience, &mut args);
            let total: i64 = c
                .prepare_cached(&format!("SELECT COUNT(*) FROM users WHERE seq <= ?1 AND {cond}"))
                .and_then(|mut s| s.query_row(params_from_iter(args), |r| r.get(0)))
                .map_err(map_err)?;
            (max, total)
        }
    };
    c.prepare_cached(
        "UPDATE broadcasts SET snapshot_max = ?2, total = ?3, cursor = 0 WHERE seq = ?1",
    )
    .and_then(|mut s| s.execute(params![d.seq, max, total]))
    .map_err(map_err)?;
    Ok(())
}

/// Claims due broadcasts (scheduled and due, or sending with an expired claim) for `owner`.
pub fn claim_due(
    c: &Connection,
    owner: &str,
    limit: usize,
    lease_until: Ts,
    now: Ts,
) -> Result<Vec<Broadcast>> {
    let ids: Vec<String> = c
        .prepare_cached(
            "UPDATE broadcasts SET status = 'sending', lease_owner = ?1, lease_until = ?2,
                 started_at = COALESCE(started_at, ?3), updated_at = ?3
             WHERE seq IN (
                 SELECT seq FROM broadcasts WHERE deleted_at IS NULL AND
                     ((status = 'scheduled' AND scheduled_at <= ?3)
                      OR (status = 'sending' AND lease_until < ?3))
                 ORDER BY scheduled_at LIMIT ?4)
             RETURNING id",
        )
        .and_then(|mut s| {
            s.query_map(
                params![owner, to_ms(&lease_until), to_ms(&now), limit as i64],
                |r| r.get(0),
            )?
            .collect()
        })
        .map_err(map_err)?;
    crate::storage::delivery::prepare_claimed(
        &mut &*c,
        ids,
        ClaimSteps {
            exec: |c: &mut &Connection, sql: &str| super::exec(c, sql),
            prepare: |c: &mut &Connection, id: &str| {
                if let Some(d) = load_delivery(c, id, owner)? {
                    if d.snapshot_max.is_none() {
                        snapshot(c, &d)?;
                    }
                }
                load(c, id)
            },
            fail: |c: &mut &Connection, id: &str, why: &str| mark_failed(c, id, owner, why, now),
        },
    )
}

/// Delivers the next chunk of up to `chunk` recipients, renewing the claim; finishes the
/// broadcast when the audience is exhausted.
pub fn deliver_chunk(
    c: &Connection,
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
    let last_item = super::inbox::last_item_id(c)?;
    let (boundary, inserted, processed) = match &d.audience {
        Audience::ExplicitUsers(_) => {
            let boundary = (d.cursor + chunk as i64).min(max);
            let inserted = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO inbox_items (uid, user_id, broadcast_id, created_at)
                     SELECT wp_uuid7(), r.user_id, ?1, ?2 FROM broadcast_recipients r
                     JOIN users u ON u.id = r.user_id AND u.is_active = 1 AND u.deleted_at IS NULL
                     WHERE r.broadcast_id = ?1 AND r.pos > ?3 AND r.pos <= ?4
                     ORDER BY r.pos",
                )
                .and_then(|mut s| s.execute(params![d.id, now_ms, d.cursor, boundary]))
                .map_err(map_err)? as i64;
            (boundary, inserted, boundary - d.cursor)
        }
        audience => {
            let mut args: Vec<Sql> = vec![d.cursor.into(), max.into(), (chunk as i64 - 1).into()];
            let cond = audience_where(audience, &mut args);
            let found: Option<i64> = c
                .prepare_cached(&format!(
                    "SELECT seq FROM users WHERE seq > ?1 AND seq <= ?2 AND {cond}
                     ORDER BY seq LIMIT 1 OFFSET ?3"
                ))
                .and_then(|mut s| s.query_row(params_from_iter(args), |r| r.get(0)).optional())
                .map_err(map_err)?;
            let boundary = found.unwrap_or(max);
            let mut args: Vec<Sql> = vec![
                d.id.clone().into(),
                now_ms.into(),
                d.cursor.into(),
                boundary.into(),
            ];
            let cond = audience_where(audience, &mut args);
            let inserted = c
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO inbox_items (uid, user_id, broadcast_id, created_at)
                     SELECT wp_uuid7(), id, ?1, ?2 FROM users WHERE seq > ?3 AND seq <= ?4 AND {cond} ORDER BY seq"
                ))
                .and_then(|mut s| s.execute(params_from_iter(args)))
                .map_err(map_err)? as i64;
            (boundary, inserted, inserted)
        }
    };
    if inserted > 0 {
        super::inbox::count_new_items(c, last_item)?;
    }
    let skipped = processed - inserted;
    let done = boundary >= max;
    c.prepare_cached(
        "UPDATE broadcasts SET sent = sent + ?2, skipped = skipped + ?3, cursor = ?4,
             lease_until = ?5, updated_at = ?6
         WHERE seq = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.seq,
            inserted,
            skipped,
            boundary,
            to_ms(&lease_until),
            now_ms
        ])
    })
    .map_err(map_err)?;
    if !done {
        return Ok(ChunkOutcome::Progress(load(c, &id)?));
    }
    // Whoever left the audience while it was being sent counts as skipped, so that
    // sent + failed + skipped == total; one who joined it counts in total.
    c.prepare_cached(
        "UPDATE broadcasts SET
             skipped = skipped + MAX(total - sent - failed - skipped, 0),
             total = MAX(total, sent + failed + skipped),
             status = CASE WHEN sent = 0 AND failed > 0 THEN 'failed' ELSE 'sent' END,
             finished_at = ?2, updated_at = ?2, lease_owner = NULL, lease_until = NULL
         WHERE seq = ?1",
    )
    .and_then(|mut s| s.execute(params![d.seq, now_ms]))
    .map_err(map_err)?;
    Ok(ChunkOutcome::Finished(load(c, &id)?))
}

/// Ends a broadcast that could not be delivered: whatever was not delivered is failed.
pub fn fail(
    c: &Connection,
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
fn mark_failed(c: &Connection, id: &str, owner: &str, error: &str, now: Ts) -> Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE broadcasts SET status = 'failed', last_error = ?3,
                 failed = MAX(total - sent - skipped, 0), finished_at = ?4, updated_at = ?4,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        )
        .and_then(|mut s| s.execute(params![id, owner, error, to_ms(&now)]))
        .map_err(map_err)?;
    Ok(n == 1)
}

impl BroadcastStore for SqliteStore {
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
