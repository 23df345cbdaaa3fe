//! Browser sessions on SQLite.

use super::{map_err, SqliteStore};
use crate::domain::time::{to_ms, Ts};
use crate::storage::{Result, Session, SessionStore};
use rusqlite::{params, Connection, OptionalExtension};

pub fn create(c: &Connection, s: &Session) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO sessions (token_hash, csrf_token, principal, created_at, expires_at, epoch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(params![
            s.token_hash,
            s.csrf_token,
            s.principal,
            to_ms(&s.created_at),
            to_ms(&s.expires_at),
            s.epoch
        ])
    })
    .map(|_| ())
    .map_err(map_err)
}

const COLS: &str = "token_hash, csrf_token, principal, created_at, expires_at, epoch";

fn row_to_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    super::decoded(0, crate::storage::row::session(r))
}

pub fn find(c: &Connection, token_hash: &str, now: Ts) -> Result<Option<Session>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM sessions WHERE token_hash = ?1 AND expires_at > ?2"
    ))
    .and_then(|mut st| {
        st.query_row(params![token_hash, to_ms(&now)], row_to_session)
            .optional()
    })
    .map_err(map_err)
}

pub fn list(c: &Connection, now: Ts, limit: usize) -> Result<Vec<Session>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM sessions WHERE expires_at > ?1 ORDER BY created_at DESC LIMIT ?2"
    ))
    .and_then(|mut st| {
        st.query_map(params![to_ms(&now), limit as i64], row_to_session)?
            .collect()
    })
    .map_err(map_err)
}

pub fn delete(c: &Connection, token_hash: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")
        .and_then(|mut st| st.execute([token_hash]))
        .map(|_| ())
        .map_err(map_err)
}

pub fn prune(c: &Connection, now: Ts) -> Result<usize> {
    c.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")
        .and_then(|mut st| st.execute([to_ms(&now)]))
        .map_err(map_err)
}

impl SessionStore for SqliteStore {
    fn create_session(&self, session: &Session) -> Result<()> {
        let s = session.clone();
        self.write(move |c| create(c, &s))
    }

    fn find_session(&self, token_hash: &str, now: Ts) -> Result<Option<Session>> {
        self.read(|c| find(c, token_hash, now))
    }

    fn delete_session(&self, token_hash: &str) -> Result<()> {
        let h = token_hash.to_string();
        self.write(move |c| delete(c, &h))
    }

    fn list_sessions(&self, now: Ts, limit: usize) -> Result<Vec<Session>> {
        self.read(|c| list(c, now, limit))
    }

    fn prune_sessions(&self, now: Ts) -> Result<usize> {
        self.write(move |c| prune(c, now))
    }
}
