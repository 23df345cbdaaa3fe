//! Reading rows back into domain types, once for both backends. Each backend's row type
//! implements [`Columns`] (typed, fallible access by position: a wrong type or an
//! unexpected NULL is an error, never a panic or a default), and the decoders here build
//! jobs, broadcasts, inbox items, users, sessions and schedules from it. The SELECT lists
//! each decoder expects is the backend's `COLS` of that table, in the same order on both.

use super::schedules::ScheduleRow;
use super::{decode, Result, Session};
use crate::domain::notify::{Attributes, Broadcast, FeedItem, InboxItem, User, UserId};
use crate::domain::time::from_ms;
use crate::domain::{Job, JobMeta, JobType};
use serde_json::Value;
use uuid::Uuid;

/// Typed access to one row's columns by position.
pub(crate) trait Columns {
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    /// A UUID column (16 bytes on SQLite, text on PostgreSQL).
    fn uuid(&self, i: usize) -> Result<Uuid>;
    /// A flag (0/1 on SQLite; the backends store the old flags as integers everywhere).
    fn flag(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }
}

fn json_col(s: Option<String>) -> Option<Value> {
    s.and_then(|t| serde_json::from_str(&t).ok())
}

/// A job row (the insertion sequence first) as (seq, job).
pub(crate) fn job(r: &impl Columns) -> Result<(i64, Job)> {
    let status = decode::job_status(&r.text(3)?)?;
    Ok((
        r.int(0)?,
        Job {
            id: decode::job_id(&r.text(1)?)?,
            job_type: JobType::trusted(r.text(2)?),
            status,
            priority: r.int(4)?,
            meta: JobMeta {
                idempotency_key: r.opt_text(5)?,
                code_version: r.opt_text(6)?,
                model_version: r.opt_text(7)?,
                config_hash: r.opt_text(8)?,
                budget_tag: r.opt_text(9)?,
                cost_cap_eur: r.opt_text(10)?,
            },
            input: json_col(r.opt_text(11)?).unwrap_or(Value::Null),
            result: json_col(r.opt_text(12)?),
            attempts: r.int(13)?,
            max_attempts: r.int(14)?,
            available_at: from_ms(r.int(15)?),
            // A finished job has no lease. PostgreSQL keeps the worker that completed a
            // job in this column, for the `succeeded` event the row carries (its V19).
            lease_owner: if status.is_finished() {
                None
            } else {
                r.opt_text(16)?
            },
            lease_until: r.opt_int(17)?.map(from_ms),
            lease_token: r.opt_text(18)?,
            last_error: r.opt_text(19)?,
            created_at: from_ms(r.int(20)?),
            updated_at: from_ms(r.int(21)?),
        },
    ))
}

pub(crate) fn broadcast(r: &impl Columns) -> Result<Broadcast> {
    Ok(Broadcast {
        id: decode::broadcast_id(&r.text(0)?)?,
        title: r.text(1)?,
        body: r.text(2)?,
        audience: decode::audience_for_display(&r.text(3)?),
        status: decode::broadcast_status(&r.text(4)?)?,
        created_by: r.text(5)?,
        created_at: from_ms(r.int(6)?),
        updated_at: from_ms(r.int(7)?),
        scheduled_at: r.opt_int(8)?.map(from_ms),
        started_at: r.opt_int(9)?.map(from_ms),
        finished_at: r.opt_int(10)?.map(from_ms),
        total: r.int(11)?,
        sent: r.int(12)?,
        failed: r.int(13)?,
        skipped: r.int(14)?,
        last_error: r.opt_text(15)?,
    })
}

/// An inbox item joined with its content: uid, created_at, read_at, broadcast_id,
/// event_key, user_id, title, body, meta (each backend's `ITEM` query).
pub(crate) fn inbox_item(r: &impl Columns) -> Result<InboxItem> {
    let id = r.uuid(0)?;
    let broadcast_id = r.opt_text(3)?;
    let event_key = r.opt_text(4)?;
    let user_id = r.text(5)?;
    let event_id = match (&broadcast_id, event_key) {
        (Some(b), _) => format!("broadcast:{b}:{user_id}"),
        (None, Some(k)) => k,
        (None, None) => format!("direct:{id}"),
    };
    Ok(InboxItem {
        id,
        title: r.text(6)?,
        message: r.text(7)?,
        kind: if broadcast_id.is_some() {
            "broadcast"
        } else {
            "direct"
        },
        created_at: from_ms(r.int(1)?),
        read_at: r.opt_int(2)?.map(from_ms),
        meta: json_col(r.opt_text(8)?),
        event_id,
        broadcast_id,
    })
}

/// An inbox item with its user and sequence number: the `ITEM` columns, then the row's id.
pub(crate) fn feed_item(r: &impl Columns) -> Result<FeedItem> {
    Ok(FeedItem {
        seq: r.int(9)?,
        user: UserId::trusted(r.text(5)?),
        item: inbox_item(r)?,
    })
}

pub(crate) fn user(r: &impl Columns) -> Result<User> {
    Ok(User {
        id: UserId::trusted(r.text(0)?),
        email: r.opt_text(1)?,
        attributes: match serde_json::from_str(&r.text(2)?) {
            Ok(Value::Object(m)) => Attributes(m),
            _ => Attributes::default(),
        },
        is_active: r.flag(3)?,
        created_at: from_ms(r.int(4)?),
        updated_at: from_ms(r.int(5)?),
        deleted_at: r.opt_int(6)?.map(from_ms),
    })
}

pub(crate) fn session(r: &impl Columns) -> Result<Session> {
    Ok(Session {
        token_hash: r.text(0)?,
        csrf_token: r.text(1)?,
        principal: r.text(2)?,
        created_at: from_ms(r.int(3)?),
        expires_at: from_ms(r.int(4)?),
        epoch: r.text(5)?,
    })
}

/// A schedule row (`schedules::SCHEDULE_COLS`).
pub(crate) fn schedule(r: &impl Columns) -> Result<crate::domain::schedule::Schedule> {
    ScheduleRow {
        name: r.text(0)?,
        cron: r.text(1)?,
        timezone: r.text(2)?,
        job: r.text(3)?,
        enabled: r.flag(4)?,
        overlap: r.text(5)?,
        next_run_at: r.opt_int(6)?,
        last_run_at: r.opt_int(7)?,
        last_job_id: r.opt_text(8)?,
        runs_total: r.int(9)?,
        skipped_total: r.int(10)?,
        created_at: r.int(11)?,
        updated_at: r.int(12)?,
    }
    .decode()
}
