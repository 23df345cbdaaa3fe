//! Inboxes on PostgreSQL. Broadcast items point at their broadcast (content stored once);
//! direct notifications point at a content row. Behaves as the SQLite version does; the
//! per-user counts are kept from the rows each statement returns, never from id ranges
//! (ids are not handed out in commit order).

use super::{PgConn, PgStore};
use crate::domain::notify::{
    Delivered, DirectNotification, FeedItem, InboxItem, InboxPage, UserId,
};
use crate::domain::time::{to_ms, Ts};
use crate::storage::{InboxStore, Replay, Result, StoreError, PRUNE_USERS_PER_PASS};
use postgres::Row;
use std::collections::BTreeMap;
use uuid::Uuid;

macro_rules! item_columns {
    () => {
        "SELECT i.uid::text, i.created_at, i.read_at, i.broadcast_id, i.event_key, i.user_id,
        COALESCE(b.title, c.title, ''), COALESCE(b.body, c.body, ''), c.meta"
    };
}
macro_rules! item_joins {
    () => {
        " FROM inbox_items i
    LEFT JOIN broadcasts b ON b.id = i.broadcast_id
    LEFT JOIN notification_contents c ON c.id = i.content_id"
    };
}
const ITEM: &str = concat!(item_columns!(), item_joins!());
/// `ITEM` with the row's sequence number last (`row::feed_item`).
const FEED_ITEM: &str = concat!(item_columns!(), ", i.id", item_joins!());

/// A UUID column read as text (the `postgres` crate is built without its uuid feature).
fn uuid_text(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| {
        StoreError::Backend(format!("a stored inbox item id is not a UUID: {e}").into())
    })
}

fn row_to_item(r: &Row) -> Result<InboxItem> {
    crate::storage::row::inbox_item(r)
}

fn existing_event(c: &mut PgConn, user: &str, key: &str) -> Result<Option<Uuid>> {
    c.query_opt(
        "SELECT uid::text FROM inbox_items WHERE user_id = $1 AND event_key = $2",
        &[&user, &key],
    )?
    .map(|r| uuid_text(r.get(0)))
    .transpose()
}

pub fn deliver_direct(c: &mut PgConn, n: &DirectNotification, now: Ts) -> Result<Delivered> {
    let user = n.user_id.as_str();
    if let Some(key) = &n.event_id {
        if let Some(item_id) = existing_event(c, user, key)? {
            return Ok(Delivered {
                item_id,
                created: false,
            });
        }
    }
    let now = to_ms(&now);
    let content_id: i64 = c
        .query_one(
            "INSERT INTO notification_contents (title, body, meta, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[
                &n.title,
                &n.body,
                &n.meta.as_ref().map(|m| m.to_string()),
                &now,
            ],
        )?
        .get(0);
    let inserted = c.query_opt(
        "INSERT INTO inbox_items (user_id, content_id, event_key, created_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, event_key) WHERE event_key IS NOT NULL DO NOTHING
         RETURNING uid::text, id",
        &[&user, &content_id, &n.event_id, &now],
    )?;
    let Some(row) = inserted else {
        // A concurrent delivery of the same event committed first: that item it is.
        c.execute(
            "DELETE FROM notification_contents WHERE id = $1",
            &[&content_id],
        )?;
        let key = n.event_id.as_deref().unwrap_or_default();
        let item_id = existing_event(c, user, key)?.ok_or_else(|| {
            crate::storage::StoreError::Backend(
                "an inbox item conflicted and then could not be found".into(),
            )
        })?;
        return Ok(Delivered {
            item_id,
            created: false,
        });
    };
    c.execute(
        "INSERT INTO inbox_counts (user_id, total, unread) VALUES ($1, 1, 1)
         ON CONFLICT (user_id) DO UPDATE SET total = inbox_counts.total + 1,
             unread = inbox_counts.unread + 1",
        &[&user],
    )?;
    let seq: i64 = row.get(1);
    c.notify_inbox(seq, seq)?;
    Ok(Delivered {
        item_id: uuid_text(row.get(0))?,
        created: true,
    })
}

/// (total, unread) of a user's inbox, from the kept counts.
fn counts(c: &mut PgConn, user: &UserId) -> Result<(i64, i64)> {
    Ok(c.query_opt(
        "SELECT total, unread FROM inbox_counts WHERE user_id = $1",
        &[&user.as_str()],
    )?
    .map_or((0, 0), |r| (r.get(0), r.get(1))))
}

pub fn unread(c: &mut PgConn, user: &UserId) -> Result<i64> {
    counts(c, user).map(|(_, unread)| unread)
}

fn feed_items(rows: Vec<Row>) -> Result<Vec<FeedItem>> {
    rows.iter().map(crate::storage::row::feed_item).collect()
}

pub fn news(
    c: &mut PgConn,
    after: i64,
    upto: i64,
    users: &[UserId],
    limit: usize,
) -> Result<Vec<FeedItem>> {
    let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Planned for each call's own values (not a cached statement): on a generic plan
    // PostgreSQL compares every row in the range with each element of the array (24 s for
    // one batch with 10 000 users listening and 200 000 rows to pass over); planned with
    // the array it hashes it (30 ms).
    let rows = c.query_planned(
        &format!(
            "{FEED_ITEM} WHERE i.user_id = ANY($3) AND i.id > $1 AND i.id <= $2
             ORDER BY i.id LIMIT $4"
        ),
        &[&after, &upto, &users, &limit],
    )?;
    feed_items(rows)
}

pub fn unread_counts(c: &mut PgConn, users: &[UserId]) -> Result<Vec<(UserId, i64)>> {
    let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
    Ok(c.query(
        "SELECT user_id, unread FROM inbox_counts WHERE user_id = ANY($1)",
        &[&users],
    )?
    .iter()
    .map(|r| (UserId::trusted(r.get(0)), r.get(1)))
    .collect())
}

pub fn after(c: &mut PgConn, user: &UserId, item: Uuid, limit: usize) -> Result<Replay> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let rows = c.query(
        &format!(
            "{FEED_ITEM} WHERE i.user_id = $1
               AND i.id >= (SELECT id FROM inbox_items WHERE uid = ($2::text)::uuid AND user_id = $1)
             ORDER BY i.id LIMIT $3"
        ),
        &[&user.as_str(), &item.to_string(), &limit],
    )?;
    Ok(crate::storage::after_anchor(item, feed_items(rows)?))
}

pub fn page(c: &mut PgConn, user: &UserId, limit: usize, offset: usize) -> Result<InboxPage> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let items = c
        .query(
            &format!("{ITEM} WHERE i.user_id = $1 ORDER BY i.id DESC LIMIT $2 OFFSET $3"),
            &[&user.as_str(), &limit, &offset],
        )?
        .iter()
        .map(row_to_item)
        .collect::<Result<_>>()?;
    let (total, unread) = counts(c, user)?;
    Ok(InboxPage {
        items,
        total,
        unread,
    })
}

pub fn mark_read(c: &mut PgConn, user: &UserId, item: Uuid, now: Ts) -> Result<InboxItem> {
    let item = item.to_string();
    let newly = c.execute(
        "UPDATE inbox_items SET read_at = $3
         WHERE uid = ($1::text)::uuid AND user_id = $2 AND read_at IS NULL",
        &[&item, &user.as_str(), &to_ms(&now)],
    )?;
    if newly == 1 {
        c.execute(
            "UPDATE inbox_counts SET unread = GREATEST(unread - 1, 0) WHERE user_id = $1",
            &[&user.as_str()],
        )?;
    }
    one(c, user, &item)
}

/// One of the user's items; another user's is not found.
pub fn one(c: &mut PgConn, user: &UserId, item: &str) -> Result<InboxItem> {
    c.query_opt(
        &format!("{ITEM} WHERE i.uid = ($1::text)::uuid AND i.user_id = $2"),
        &[&item, &user.as_str()],
    )?
    .ok_or(StoreError::NotFound)
    .and_then(|r| row_to_item(&r))
}

pub fn mark_all_read(c: &mut PgConn, user: &UserId, now: Ts) -> Result<usize> {
    let n = c.execute(
        "UPDATE inbox_items SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL",
        &[&user.as_str(), &to_ms(&now)],
    )?;
    c.execute(
        "UPDATE inbox_counts SET unread = 0 WHERE user_id = $1",
        &[&user.as_str()],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Takes deleted items (user, was unread) out of the kept counts: the count rows are
/// locked in user order first, so two transactions cannot deadlock on them.
fn uncount(c: &mut PgConn, deleted: Vec<Row>) -> Result<usize> {
    let mut per_user: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in &deleted {
        let e = per_user.entry(r.get(0)).or_default();
        e.0 += 1;
        e.1 += i64::from(r.get::<_, bool>(1));
    }
    if per_user.is_empty() {
        return Ok(0);
    }
    let mut users = Vec::with_capacity(per_user.len());
    let mut totals = Vec::with_capacity(per_user.len());
    let mut unreads = Vec::with_capacity(per_user.len());
    for (user, (total, unread)) in per_user {
        users.push(user);
        totals.push(total);
        unreads.push(unread);
    }
    c.execute(
        "SELECT 1 FROM inbox_counts WHERE user_id = ANY($1::text[])
         ORDER BY user_id FOR UPDATE",
        &[&users],
    )?;
    c.execute(
        "UPDATE inbox_counts n SET total = GREATEST(n.total - d.total, 0),
             unread = GREATEST(n.unread - d.unread, 0)
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS d(user_id, total, unread)
         WHERE n.user_id = d.user_id",
        &[&users, &totals, &unreads],
    )?;
    Ok(deleted.len())
}

/// The users (at most `limit`) whose inbox holds more than `max` items, from the counts.
pub fn users_over(c: &mut PgConn, max: usize, limit: usize) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT user_id FROM inbox_counts WHERE total > $1 LIMIT $2",
        &[
            &i64::try_from(max).unwrap_or(i64::MAX),
            &i64::try_from(limit).unwrap_or(i64::MAX),
        ],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Deletes at most `limit` items older than `before`, and the items beyond the newest
/// `max_per_user` of each user in `over`.
pub fn prune(
    c: &mut PgConn,
    before: Option<Ts>,
    max_per_user: Option<usize>,
    over: &[String],
    limit: usize,
) -> Result<usize> {
    let mut deleted = 0;
    if let Some(before) = before {
        // Ids grow with time, so the old items are the lowest ids.
        let gone = c.query(
            "DELETE FROM inbox_items WHERE id IN (SELECT id FROM inbox_items ORDER BY id LIMIT $2)
               AND created_at < $1
             RETURNING user_id, read_at IS NULL",
            &[&to_ms(&before), &i64::try_from(limit).unwrap_or(i64::MAX)],
        )?;
        deleted += uncount(c, gone)?;
    }
    if let Some(max) = max_per_user.filter(|m| *m > 0) {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        for user in over {
            let gone = c.query(
                "DELETE FROM inbox_items WHERE user_id = $1 AND id < (
                     SELECT id FROM inbox_items WHERE user_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)
                 RETURNING user_id, read_at IS NULL",
                &[&user, &(max - 1)],
            )?;
            deleted += uncount(c, gone)?;
            if deleted >= limit {
                break;
            }
        }
    }
    Ok(deleted)
}

impl InboxStore for PgStore {
    fn deliver_direct(&self, n: &DirectNotification, now: Ts) -> Result<Delivered> {
        let n = n.clone();
        self.write(move |c| deliver_direct(c, &n, now))
    }

    fn inbox_page(&self, user: &UserId, limit: usize, offset: usize) -> Result<InboxPage> {
        self.read(|c| page(c, user, limit, offset))
    }

    fn unread_count(&self, user: &UserId) -> Result<i64> {
        self.read(|c| unread(c, user))
    }

    fn mark_read(&self, user: &UserId, item: Uuid, now: Ts) -> Result<InboxItem> {
        let user = user.clone();
        self.write(move |c| mark_read(c, &user, item, now))
    }

    fn mark_all_read(&self, user: &UserId, now: Ts) -> Result<usize> {
        let user = user.clone();
        self.write(move |c| mark_all_read(c, &user, now))
    }

    fn prune_inbox(
        &self,
        before: Option<Ts>,
        max_per_user: Option<usize>,
        limit: usize,
    ) -> Result<usize> {
        // Who is over the bound is read from the per-user counts on a reader, so the
        // writer only deletes, each user through its own index range.
        let over = match max_per_user.filter(|m| *m > 0) {
            Some(max) => self.read(|c| users_over(c, max, PRUNE_USERS_PER_PASS))?,
            None => Vec::new(),
        };
        self.write(move |c| prune(c, before, max_per_user, &over, limit))
    }

    fn inbox_item(&self, user: &UserId, item: Uuid) -> Result<InboxItem> {
        self.read(|c| one(c, user, &item.to_string()))
    }

    fn inbox_head(&self) -> Result<i64> {
        self.read(|c| {
            Ok(
                c.query_one("SELECT COALESCE(MAX(id), 0)::bigint FROM inbox_items", &[])?
                    .get(0),
            )
        })
    }

    fn inbox_news(
        &self,
        after: i64,
        upto: i64,
        users: &[UserId],
        limit: usize,
    ) -> Result<Vec<FeedItem>> {
        self.read(|c| news(c, after, upto, users, limit))
    }

    fn unread_counts(&self, users: &[UserId]) -> Result<Vec<(UserId, i64)>> {
        self.read(|c| unread_counts(c, users))
    }

    fn inbox_after(&self, user: &UserId, item: Uuid, limit: usize) -> Result<Replay> {
        self.read(|c| after(c, user, item, limit))
    }
}
