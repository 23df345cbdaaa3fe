//! Browser sessions on PostgreSQL.

use super::{PgConn, PgStore};
use crate::domain::time::{to_ms, Ts};
use crate::storage::{Result, Session, SessionStore};

pub fn create(c: &mut PgConn, s: &Session) -> Result<()> {
    c.execute(
        "INSERT INTO sessions (token_hash, csrf_token, principal, created_at, expires_at, epoch)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &s.token_hash,
            &s.csrf_token,
            &s.principal,
            &to_ms(&s.created_at),
            &to_ms(&s.expires_at),
            &s.epoch,
        ],
    )
    .map(|_| ())
}

const COLS: &str = "token_hash, csrf_token, principal, created_at, expires_at, epoch";

fn row_to_session(r: &postgres::Row) -> Result<Session> {
    crate::storage::row::session(r)
}

pub fn find(c: &mut PgConn, token_hash: &str, now: Ts) -> Result<Option<Session>> {
    c.query_opt(
        &format!("SELECT {COLS} FROM sessions WHERE token_hash = $1 AND expires_at > $2"),
        &[&token_hash, &to_ms(&now)],
    )?
    .map(|r| row_to_session(&r))
    .transpose()
}

pub fn list(c: &mut PgConn, now: Ts, limit: usize) -> Result<Vec<Session>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(
        &format!(
            "SELECT {COLS} FROM sessions WHERE expires_at > $1 ORDER BY created_at DESC LIMIT $2"
        ),
        &[&to_ms(&now), &limit],
    )?
    .iter()
    .map(row_to_session)
    .collect()
}

pub fn delete(c: &mut PgConn, token_hash: &str) -> Result<()> {
    c.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
        .map(|_| ())
}

pub fn prune(c: &mut PgConn, now: Ts) -> Result<usize> {
    c.execute(
        "DELETE FROM sessions WHERE expires_at <= $1",
        &[&to_ms(&now)],
    )
    .map(|n| n as usize)
}

impl SessionStore for PgStore {
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
