//! Users on PostgreSQL.

use super::conn::map_err;
use super::{PgConn, PgStore};
use crate::domain::notify::{NewUser, User, UserId};
use crate::domain::time::{to_ms, Ts};
use crate::storage::like_pattern;
use crate::storage::{Result, StoreError, UserStore};
use postgres::Row;
use serde_json::Value;
use std::collections::HashMap;

fn row_to_user(r: &Row) -> Result<User> {
    crate::storage::row::user(r)
}

const UPSERT_ONE: &str =
    "INSERT INTO users (id, email, attributes, is_active, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email,
         attributes = EXCLUDED.attributes, is_active = EXCLUDED.is_active,
         updated_at = EXCLUDED.updated_at, deleted_at = NULL";

/// Rows arrive sorted by id (so concurrent batches lock in one order and cannot deadlock),
/// each with a `seq` allocated in the batch's order, so new users keep the creation order
/// that SQLite's one-by-one upserts would give them.
const UPSERT_MANY: &str =
    "INSERT INTO users (seq, id, email, attributes, is_active, created_at, updated_at)
     SELECT u.seq, u.id, u.email, u.attributes, u.is_active, $6, $6
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
         WITH ORDINALITY AS u(seq, id, email, attributes, is_active, ord)
     ORDER BY u.ord
     ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email,
         attributes = EXCLUDED.attributes, is_active = EXCLUDED.is_active,
         updated_at = EXCLUDED.updated_at, deleted_at = NULL";

const ALLOC_SEQS: &str =
    "SELECT nextval(pg_get_serial_sequence('users', 'seq')) FROM generate_series(1, $1::bigint)";

/// Upserts every user in the op's transaction; an upsert revives a soft-deleted user.
/// A batch naming one id several times ends with the last of them (created where the first
/// one stood), as sequential upserts would.
pub fn upsert(c: &mut PgConn, users: &[NewUser], now: Ts) -> Result<usize> {
    let now = to_ms(&now);
    // Distinct ids in order of first appearance, each with its last values.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(users.len());
    let mut distinct: Vec<&NewUser> = Vec::with_capacity(users.len());
    for u in users {
        match index.get(u.id.as_str()) {
            Some(&i) => distinct[i] = u,
            None => {
                index.insert(u.id.as_str(), distinct.len());
                distinct.push(u);
            }
        }
    }
    let attrs = |u: &NewUser| Value::Object(u.attributes.0.clone()).to_string();
    match distinct.as_slice() {
        [] => {}
        [u] => {
            c.execute(
                UPSERT_ONE,
                &[
                    &u.id.as_str(),
                    &u.email,
                    &attrs(u),
                    &(u.is_active as i64),
                    &now,
                ],
            )?;
        }
        _ => {
            let mut seqs: Vec<i64> = c
                .query(ALLOC_SEQS, &[&(distinct.len() as i64)])?
                .iter()
                .map(|r| r.try_get(0).map_err(map_err))
                .collect::<Result<_>>()?;
            if seqs.len() != distinct.len() {
                return Err(StoreError::Backend(
                    "could not allocate user sequence numbers".into(),
                ));
            }
            seqs.sort_unstable();
            let mut rows: Vec<(i64, &NewUser)> = seqs.into_iter().zip(distinct).collect();
            rows.sort_unstable_by(|a, b| a.1.id.as_str().cmp(b.1.id.as_str()));
            let seq: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let ids: Vec<&str> = rows.iter().map(|r| r.1.id.as_str()).collect();
            let emails: Vec<Option<&str>> = rows.iter().map(|r| r.1.email.as_deref()).collect();
            let attributes: Vec<String> = rows.iter().map(|r| attrs(r.1)).collect();
            let active: Vec<i64> = rows.iter().map(|r| r.1.is_active as i64).collect();
            c.execute(
                UPSERT_MANY,
                &[&seq, &ids, &emails, &attributes, &active, &now],
            )?;
        }
    }
    Ok(users.len())
}

pub fn get(c: &mut PgConn, id: &UserId) -> Result<User> {
    let row = c.query_one(
        "SELECT id, email, attributes, is_active, created_at, updated_at, deleted_at
         FROM users WHERE id = $1",
        &[&id.as_str()],
    )?;
    row_to_user(&row)
}

/// SQLite's LIKE folds ASCII letters only; `translate` does exactly that on both sides
/// (ILIKE would also fold other letters, depending on the database's locale).
const LIST_FILTERED: &str =
    "SELECT id, email, attributes, is_active, created_at, updated_at, deleted_at
     FROM users
     WHERE translate(id, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
               LIKE $1 ESCAPE '\\'
        OR translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
               LIKE $1 ESCAPE '\\'
     ORDER BY seq LIMIT $2 OFFSET $3";
const COUNT_FILTERED: &str = "SELECT COUNT(*) FROM users
     WHERE translate(id, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
               LIKE $1 ESCAPE '\\'
        OR translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
               LIKE $1 ESCAPE '\\'";
const LIST_ALL: &str = "SELECT id, email, attributes, is_active, created_at, updated_at, deleted_at
     FROM users ORDER BY seq LIMIT $1 OFFSET $2";
const COUNT_ALL: &str = "SELECT COUNT(*) FROM users";

pub fn list(
    c: &mut PgConn,
    q: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<(Vec<User>, i64)> {
    // SQLite reads a huge limit as "no limit"; PostgreSQL rejects a negative one.
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let (total, rows) = match q {
        Some(q) => {
            let pattern = like_pattern(q).to_ascii_lowercase();
            let total: i64 = c.query_one(COUNT_FILTERED, &[&pattern])?.get(0);
            (total, c.query(LIST_FILTERED, &[&pattern, &limit, &offset])?)
        }
        None => {
            let total: i64 = c.query_one(COUNT_ALL, &[])?.get(0);
            (total, c.query(LIST_ALL, &[&limit, &offset])?)
        }
    };
    let items = rows.iter().map(row_to_user).collect::<Result<_>>()?;
    Ok((items, total))
}

pub fn soft_delete(c: &mut PgConn, id: &UserId, now: Ts) -> Result<()> {
    let n = c.execute(
        "UPDATE users SET deleted_at = COALESCE(deleted_at, $2), updated_at = $2 WHERE id = $1",
        &[&id.as_str(), &to_ms(&now)],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

impl UserStore for PgStore {
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
