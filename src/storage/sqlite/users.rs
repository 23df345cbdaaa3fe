//! Users on SQLite.

use super::{map_err, SqliteStore};
use crate::domain::notify::{NewUser, User, UserId};
use crate::domain::time::{to_ms, Ts};
use crate::storage::like_pattern;
use crate::storage::{Result, StoreError, UserStore};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

const COLS: &str = "id, email, attributes, is_active, created_at, updated_at, deleted_at";

fn row_to_user(r: &Row<'_>) -> rusqlite::Result<User> {
    super::decoded(0, crate::storage::row::user(r))
}

/// Upserts every user in one transaction; an upsert revives a soft-deleted user.
pub fn upsert(c: &Connection, users: &[NewUser], now: Ts) -> Result<usize> {
    let mut st = c
        .prepare_cached(
            "INSERT INTO users (id, email, attributes, is_active, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET email = excluded.email,
                 attributes = excluded.attributes, is_active = excluded.is_active,
                 updated_at = excluded.updated_at, deleted_at = NULL",
        )
        .map_err(map_err)?;
    let now = to_ms(&now);
    for u in users {
        st.execute(params![
            u.id.as_str(),
            u.email,
            Value::Object(u.attributes.0.clone()).to_string(),
            u.is_active as i64,
            now
        ])
        .map_err(map_err)?;
    }
    Ok(users.len())
}

pub fn get(c: &Connection, id: &UserId) -> Result<User> {
    c.prepare_cached(&format!("SELECT {COLS} FROM users WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.as_str()], row_to_user).optional())
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)
}

pub fn list(
    c: &Connection,
    q: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<(Vec<User>, i64)> {
    let pattern = q.map(like_pattern);
    let filter = "(?1 IS NULL OR id LIKE ?1 ESCAPE '\\' OR email LIKE ?1 ESCAPE '\\')";
    let total: i64 = c
        .prepare_cached(&format!("SELECT COUNT(*) FROM users WHERE {filter}"))
        .and_then(|mut s| s.query_row(params![pattern], |r| r.get(0)))
        .map_err(map_err)?;
    let items = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM users WHERE {filter} ORDER BY seq LIMIT ?2 OFFSET ?3"
        ))
        .and_then(|mut s| {
            s.query_map(params![pattern, limit as i64, offset as i64], row_to_user)?
                .collect()
        })
        .map_err(map_err)?;
    Ok((items, total))
}

pub fn soft_delete(c: &Connection, id: &UserId, now: Ts) -> Result<()> {
    let n = c
        .prepare_cached(
            "UPDATE users SET deleted_at = COALESCE(deleted_at, ?2), updated_at = ?2 WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id.as_str(), to_ms(&now)]))
        .map_err(map_err)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

impl UserStore for SqliteStore {
    fn upsert_users(&self, users: Vec<NewUser>, now: Ts) -> Result<usize> {
        self.write(move |c| upsert(c, &users, now))
    }

    fn get_user(&self, id: &UserId) -> Result<User> {
        self.read(|c| get(c, id))
    }

    fn list_users(&self, q: Option<&str>, limit: usize, offset: usize) -> Result<(Vec<User>, i64)> {
        self.read(|c| list(c, q, limit, offset))
    }

    fn delete_user(&self, id: &UserId, now: Ts) -> Result<()> {
        let id = id.clone();
        self.write(move |c| soft_delete(c, &id, now))
    }
}
