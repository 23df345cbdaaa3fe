//! Worker process liveness rows on SQLite.

use super::{map_err, SqliteStore};
use crate::domain::time::{from_ms, to_ms, Ts};
use crate::domain::WorkerProcess;
use crate::storage::{Result, WorkerStore};
use rusqlite::{params, Connection};

pub fn record(c: &Connection, p: &WorkerProcess) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO worker_processes (id, name, host, pid, state, started_at, last_heartbeat_at,
             last_tick_at, last_tick_ms, heartbeat_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state,
             last_heartbeat_at = excluded.last_heartbeat_at, last_tick_at = excluded.last_tick_at,
             last_tick_ms = excluded.last_tick_ms, heartbeat_ms = excluded.heartbeat_ms",
    )
    .and_then(|mut s| {
        s.execute(params![
            p.id,
            p.name,
            p.host,
            p.pid,
            p.state,
            to_ms(&p.started_at),
            to_ms(&p.last_heartbeat_at),
            p.last_tick_at.as_ref().map(to_ms),
            p.last_tick_ms,
            p.heartbeat_ms
        ])
    })
    .map(|_| ())
    .map_err(map_err)
}

pub fn list(c: &Connection, since: Ts) -> Result<Vec<WorkerProcess>> {
    c.prepare_cached(
        "SELECT id, name, host, pid, state, started_at, last_heartbeat_at, last_tick_at,
             last_tick_ms, heartbeat_ms
         FROM worker_processes WHERE last_heartbeat_at >= ?1
         ORDER BY last_heartbeat_at DESC LIMIT 500",
    )
    .and_then(|mut s| {
        s.query_map([to_ms(&since)], |r| {
            Ok(WorkerProcess {
                id: r.get(0)?,
                name: r.get(1)?,
                host: r.get(2)?,
                pid: r.get(3)?,
                state: r.get(4)?,
                started_at: from_ms(r.get(5)?),
                last_heartbeat_at: from_ms(r.get(6)?),
                last_tick_at: r.get::<_, Option<i64>>(7)?.map(from_ms),
                last_tick_ms: r.get(8)?,
                heartbeat_ms: r.get(9)?,
            })
        })?
        .collect()
    })
    .map_err(map_err)
}

impl WorkerStore for SqliteStore {
    fn record_worker_process(&self, p: &WorkerProcess) -> Result<()> {
        let p = p.clone();
        self.write(move |c| record(c, &p))
    }

    fn list_worker_processes(&self, since: Ts) -> Result<Vec<WorkerProcess>> {
        self.read(|c| list(c, since))
    }
}
