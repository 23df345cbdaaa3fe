//! Inboxes on SQLite. Broadcast items point at their broadcast (content stored once);
//! direct notifications point at a content row.

use super::{map_err, SqliteStore};
use crate::domain::notify::{
    Delivered, DirectNotification, FeedItem, InboxItem, InboxPage, UserId,
};
use crate::domain::time::{to_ms, Ts};
use crate::storage::{InboxStore, Replay, Result, StoreError, PRUNE_USERS_PER_PASS};
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

macro_rules! item_columns {
    () => {
        "SELECT i.uid, i.created_at, i.read_at, i.broadcast_id, i.event_key, i.user_id,
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

fn row_to_item(r: &Row<'_>) -> rusqlite::Result<InboxItem> {
    super::decoded(0, crate::storage::row::inbox_item(r))
}

fn row_to_feed_item(r: &Row<'_>) -> rusqlite::Result<FeedItem> {
    super::decoded(0, crate::storage::row::feed_item(r))
}

/// The users as one JSON array parameter, read back with `json_each`.
fn user_list(users: &[UserId]) -> String {
    serde_json::Value::from(users.iter().map(UserId::as_str).collect::<Vec<_>>()).to_string()
}

pub fn news(
    c: &Connection,
    after: i64,
    upto: i64,
    users: &[UserId],
    limit: usize,
) -> Result<Vec<FeedItem>> {
    // Whichever is less work: one probe of the (user_id, id) index per listening user, or
    // (many new rows while many listen: a broadcast's chunk) a walk of the new rows that
    // picks out the listeners' ones, then a read of those by id.
    if users.len() as i64 <= (upto - after) / 4 {
        return c
            .prepare_cached(&format!(
                "{FEED_ITEM} WHERE i.user_id IN (SELECT value FROM json_each(?3))
                   AND i.id > ?1 AND i.id <= ?2
                 ORDER BY i.id LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(
                    params![after, upto, user_list(users), limit as i64],
                    row_to_feed_item,
                )?
                .collect()
            })
            .map_err(map_err);
    }
    // Both reads in one snapshot, so retention between them cannot shorten the batch.
    let tx = c.unchecked_transaction().map_err(map_err)?;
    let c = &*tx;
    let listening: std::collections::HashSet<&str> = users.iter().map(UserId::as_str).collect();
    let mut ids: Vec<i64> = Vec::new();
    {
        let mut st = c
            .prepare_cached(
                "SELECT id, user_id FROM inbox_items WHERE id > ?1 AND id <= ?2 ORDER BY id",
            )
            .map_err(map_err)?;
        let mut rows = st.query([after, upto]).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let user = r
                .get_ref(1)
                .and_then(|v| Ok(v.as_str()?))
                .map_err(map_err)?;
            if listening.contains(user) {
                ids.push(r.get(0).map_err(map_err)?);
                if ids.len() >= limit {
                    break;
                }
            }
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let items = c
        .prepare_cached(&format!(
            "{FEED_ITEM} WHERE i.id IN (SELECT value FROM json_each(?1)) ORDER BY i.id"
        ))
        .and_then(|mut s| {
            s.query_map([serde_json::Value::from(ids).to_string()], row_to_feed_item)?
                .collect()
        })
        .map_err(map_err)?;
    tx.finish().map_err(map_err)?;
    Ok(items)
}

pub fn unread_counts(c: &Connection, users: &[UserId]) -> Result<Vec<(UserId, i64)>> {
    c.prepare_cached(
        "SELECT user_id, unread FROM inbox_counts
         WHERE user_id IN (SELECT value FROM json_each(?1))",
    )
    .and_then(|mut s| {
        s.query_map([user_list(users)], |r| {
            Ok((UserId::trusted(r.get(0)?), r.get(1)?))
        })?
        .collect()
    })
    .map_err(map_err)
}

pub fn after(c: &Connection, user: &UserId, item: Uuid, limit: usize) -> Result<Replay> {
    let rows = c
        .prepare_cached(&format!(
            "{FEED_ITEM} WHERE i.user_id = ?1
               AND i.id >= (SELECT id FROM inbox_items WHERE uid = ?2 AND user_id = ?1)
             ORDER BY i.id LIMIT ?3"
        ))
        .and_then(|mut s| {
            s.query_map(
                params![
                    user.as_str(),
                    item.as_bytes().as_slice(),
                    (limit as i64).saturating_add(1)
                ],
                row_to_feed_item,
            )?
            .collect()
        })
        .map_err(map_err)?;
    Ok(crate::storage::after_anchor(item, rows))
}

/// The highest item id so far: items inserted after this call have larger ids.
pub(super) fn last_item_id(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM inbox_items")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(map_err)
}

/// Counts every item inserted after `after_id` into its user's totals (one unread each).
/// The upsert takes the new rows one by one, so a user with several new items counts
/// each of them.
pub(super) fn count_new_items(c: &Connection, after_id: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO inbox_counts (user_id, total, unread)
         SELECT user_id, 1, 1 FROM inbox_items WHERE id > ?1
         ON CONFLICT (user_id) DO UPDATE SET total = total + 1, unread = unread + 1",
    )
    .and_then(|mut s| s.execute([after_id]))
    .map(|_| ())
    .map_err(map_err)
}

pub fn deliver_direct(c: &Connection, n: &DirectNotification, now: Ts) -> Result<Delivered> {
    if let Some(key) = &n.event_id {
        let existing: Option<Vec<u8>> = c
            .prepare_cached("SELECT uid FROM inbox_items WHERE user_id = ?1 AND event_key = ?2")
            .and_then(|mut s| {
                s.query_row(params![n.user_id.as_str(), key], |r| r.get(0))
                    .optional()
            })
            .map_err(map_err)?;
        let existing = existing
            .map(|b| super::uuid_from_blob(&b))
            .transpose()
            .map_err(map_err)?;
        if let Some(item_id) = existing {
            return Ok(Delivered {
                item_id,
                created: false,
            });
        }
    }
    let now = to_ms(&now);
    let before = last_item_id(c)?;
    c.prepare_cached(
        "INSERT INTO notification_contents (title, body, meta, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            n.title,
            n.body,
            n.meta.as_ref().map(|m| m.to_string()),
            now
        ])
    })
    .map_err(map_err)?;
    let content_id = c.last_insert_rowid();
    let item_id = Uuid::now_v7();
    c.prepare_cached(
        "INSERT INTO inbox_items (uid, user_id, content_id, event_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            item_id.as_bytes().as_slice(),
            n.user_id.as_str(),
            content_id,
            n.event_id,
            now
        ])
    })
    .map_err(map_err)?;
    count_new_items(c, before)?;
    Ok(Delivered {
        item_id,
        created: true,
    })
}

/// (total, unread) of a user's inbox, from the kept counts.
fn counts(c: &Connection, user: &UserId) -> Result<(i64, i64)> {
    Ok(
        c.prepare_cached("SELECT total, unread FROM inbox_counts WHERE user_id = ?1")
            .and_then(|mut s| {
                s.query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(map_err)?
            .unwrap_or((0, 0)),
    )
}

pub fn unread(c: &Connection, user: &UserId) -> Result<i64> {
    counts(c, user).map(|(_, unread)| unread)
}

pub fn page(c: &Connection, user: &UserId, limit: usize, offset: usize) -> Result<InboxPage> {
    let items = c
        .prepare_cached(&format!(
            "{ITEM} WHERE i.user_id = ?1 ORDER BY i.id DESC LIMIT ?2 OFFSET ?3"
        ))
        .and_then(|mut s| {
            s.query_map(
                params![user.as_str(), limit as i64, offset as i64],
                row_to_item,
            )?
            .collect()
        })
        .map_err(map_err)?;
    let (total, unread) = counts(c, user)?;
    Ok(InboxPage {
        items,
        total,
        unread,
    })
}

pub fn mark_read(c: &Connection, user: &UserId, item: Uuid, now: Ts) -> Result<InboxItem> {
    let item = item.as_bytes().as_slice();
    let newly = c
        .prepare_cached(
            "UPDATE inbox_items SET read_at = ?3 WHERE uid = ?1 AND user_id = ?2 AND read_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![item, user.as_str(), to_ms(&now)]))
        .map_err(map_err)?;
    if newly == 1 {
        c.prepare_cached("UPDATE inbox_counts SET unread = MAX(unread - 1, 0) WHERE user_id = ?1")
            .and_then(|mut s| s.execute([user.as_str()]))
            .map_err(map_err)?;
    }
    one(c, user, item)
}

/// One of the user's items; another user's is not found.
pub fn one(c: &Connection, user: &UserId, item: &[u8]) -> Result<InboxItem> {
    c.prepare_cached(&format!("{ITEM} WHERE i.uid = ?1 AND i.user_id = ?2"))
        .and_then(|mut s| {
            s.query_row(params![item, user.as_str()], row_to_item)
                .optional()
        })
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)
}

pub fn mark_all_read(c: &Connection, user: &UserId, now: Ts) -> Result<usize> {
    let n = c
        .prepare_cached(
            "UPDATE inbox_items SET read_at = ?2 WHERE user_id = ?1 AND read_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![user.as_str(), to_ms(&now)]))
        .map_err(map_err)?;
    c.prepare_cached("UPDATE inbox_counts SET unread = 0 WHERE user_id = ?1")
        .and_then(|mut s| s.execute([user.as_str()]))
        .map_err(map_err)?;
    Ok(n)
}

/// Takes deleted items (user, was unread) out of the kept counts.
fn uncount(c: &Connection, deleted: Vec<(String, bool)>) -> Result<usize> {
    let mut per_user: std::collections::HashMap<String, (i64, i64)> =
        std::collections::HashMap::new();
    for (user, unread) in &deleted {
        let e = per_user.entry(user.clone()).or_default();
        e.0 += 1;
        e.1 += i64::from(*unread);
    }
    let mut st = c
        .prepare_cached(
            "UPDATE inbox_counts SET total = MAX(total - ?2, 0), unread = MAX(unread - ?3, 0)
             WHERE user_id = ?1",
        )
        .map_err(map_err)?;
    for (user, (total, unread)) in per_user {
        st.execute(params![user, total, unread]).map_err(map_err)?;
    }
    Ok(deleted.len())
}

/// The users (at most `limit`) whose inbox holds more than `max` items, from the counts.
pub fn users_over(c: &Connection, max: usize, limit: usize) -> Result<Vec<String>> {
    c.prepare_cached("SELECT user_id FROM inbox_counts WHERE total > ?1 LIMIT ?2")
        .and_then(|mut s| {
            s.query_map(params![max as i64, limit as i64], |r| r.get(0))?
                .collect()
        })
        .map_err(map_err)
}

/// Deletes at most `limit` items older than `before`, and the items beyond the newest
/// `max_per_user` of each user in `over`.
pub fn prune(
    c: &Connection,
    before: Option<Ts>,
    max_per_user: Option<usize>,
    over: &[String],
    limit: usize,
) -> Result<usize> {
    let mut deleted = 0;
    if let Some(before) = before {
        // Ids grow with time, so the old items are the lowest ids.
        let gone: Vec<(String, bool)> = c
            .prepare_cached(
                "DELETE FROM inbox_items WHERE id IN (SELECT id FROM inbox_items ORDER BY id LIMIT ?2)
                   AND created_at < ?1
                 RETURNING user_id, read_at IS NULL",
            )
            .and_then(|mut s| {
                s.query_map(params![to_ms(&before), limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(map_err)?;
        deleted += uncount(c, gone)?;
    }
    if let Some(max) = max_per_user.filter(|m| *m > 0) {
        for user in over {
            let gone: Vec<(String, bool)> = c
                .prepare_cached(
                    "DELETE FROM inbox_items WHERE user_id = ?1 AND id < (
                         SELECT id FROM inbox_items WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)
                     RETURNING user_id, read_at IS NULL",
                )
                .and_then(|mut s| {
                    s.query_map(params![user, (max - 1) as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect()
                })
                .map_err(map_err)?;
            deleted += uncount(c, gone)?;
            if deleted >= limit {
                break;
            }
        }
    }
    Ok(deleted)
}

impl InboxStore for SqliteStore {
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
        self.read(|c| one(c, user, item.as_bytes().as_slice()))
    }

    fn inbox_head(&self) -> Result<i64> {
        self.read(last_item_id)
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
