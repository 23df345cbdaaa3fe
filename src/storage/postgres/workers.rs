//! Worker process liveness rows on PostgreSQL.

use super::conn::map_err;
use super::{PgConn, PgStore};
use crate::domain::time::{from_ms, to_ms, Ts};
use crate::domain::WorkerProcess;
use crate::storage::{Result, WorkerStore};

pub fn record(c: &mut PgConn, p: &WorkerProcess) -> Result<()> {
    c.execute(
        "INSERT INTO worker_processes (id, name, host, pid, state, started_at, last_heartbeat_at,
             last_tick_at, last_tick_ms, heartbeat_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state,
             last_heartbeat_at = EXCLUDED.last_heartbeat_at, last_tick_at = EXCLUDED.last_tick_at,
             last_tick_ms = EXCLUDED.last_tick_ms, heartbeat_ms = EXCLUDED.heartbeat_ms",
        &[
            &p.id,
            &p.name,
            &p.host,
            &p.pid,
            &p.state,
            &to_ms(&p.started_at),
            &to_ms(&p.last_heartbeat_at),
            &p.last_tick_at.as_ref().map(to_ms),
            &p.last_tick_ms,
            &p.heartbeat_ms,
        ],
    )
    .map(|_| ())
}

pub fn list(c: &mut PgConn, since: Ts) -> Result<Vec<WorkerProcess>> {
    c.query(
        "SELECT id, name, host, pid, state, started_at, last_heartbeat_at, last_tick_at,
             last_tick_ms, heartbeat_ms
         FROM worker_processes WHERE last_heartbeat_at >= $1
         ORDER BY last_heartbeat_at DESC LIMIT 500",
        &[&to_ms(&since)],
    )?
    .iter()
    .map(|r| {
        Ok(WorkerProcess {
            id: r.try_get(0).map_err(map_err)?,
            name: r.try_get(1).map_err(map_err)?,
            host: r.try_get(2).map_err(map_err)?,
            pid: r.try_get(3).map_err(map_err)?,
            state: r.try_get(4).map_err(map_err)?,
            started_at: from_ms(r.try_get(5).map_err(map_err)?),
            last_heartbeat_at: from_ms(r.try_get(6).map_err(map_err)?),
            last_tick_at: r
                .try_get::<_, Option<i64>>(7)
                .map_err(map_err)?
                .map(from_ms),
            last_tick_ms: r.try_get(8).map_err(map_err)?,
            heartbeat_ms: r.try_get(9).map_err(map_err)?,
        })
    })
    .collect()
}

impl WorkerStore for PgStore {
    fn record_worker_process(&self, p: &WorkerProcess) -> Result<()> {
        let p = p.clone();
        self.write(move |c| record(c, &p))
    }

    fn list_worker_processes(&self, since: Ts) -> Result<Vec<WorkerProcess>> {
        self.read(|c| list(c, since))
    }
}
