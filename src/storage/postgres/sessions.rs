//! Browser sessions on PostgreSQL.

use super::conn::map_err;
use super::PgConn;
use crate::domain::time::{from_ms, to_ms, Ts};
use crate::storage::{Result, Session};

pub fn create(c: &mut PgConn, s: &Session) -> Result<()> {
    c.execute(
        "INSERT INTO sessions (token_hash, csrf_token, principal, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &s.token_hash,
            &s.csrf_token,
            &s.principal,
            &to_ms(&s.created_at),
            &to_ms(&s.expires_at),
        ],
    )
    .map(|_| ())
}

pub fn find(c: &mut PgConn, token_hash: &str, now: Ts) -> Result<Option<Session>> {
    let Some(r) = c.query_opt(
        "SELECT token_hash, csrf_token, principal, created_at, expires_at FROM sessions
         WHERE token_hash = $1 AND expires_at > $2",
        &[&token_hash, &to_ms(&now)],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Session {
        token_hash: r.try_get(0).map_err(map_err)?,
        csrf_token: r.try_get(1).map_err(map_err)?,
        principal: r.try_get(2).map_err(map_err)?,
        created_at: from_ms(r.try_get(3).map_err(map_err)?),
        expires_at: from_ms(r.try_get(4).map_err(map_err)?),
    }))
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
