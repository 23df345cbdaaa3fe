//! WAL checkpoints off the write path. The writer connection runs with automatic
//! checkpoints off, so a commit never stalls while the WAL is copied into the database;
//! this thread runs a `PASSIVE` checkpoint (which never blocks the writer or readers) on its
//! own connection every few hundred milliseconds. SQLite restarts the WAL from its start
//! once a checkpoint has caught up, so the file stays small.

use super::configure;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(250);

pub struct Checkpointer {
    stop: Mutex<Option<Sender<()>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        configure(&conn)?;
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let handle = std::thread::Builder::new()
            .name("wp-lite-sqlite-checkpoint".into())
            .spawn(move || run(conn, rx))
            .expect("spawn the SQLite checkpoint thread");
        Ok(Self {
            stop: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Runs a last checkpoint and stops the thread.
    pub fn close(&self) {
        self.stop.lock().expect("checkpoint lock").take();
        if let Some(h) = self.handle.lock().expect("checkpoint lock").take() {
            let _ = h.join();
        }
    }
}

/// WAL pages beyond which a checkpoint that could not catch up is forced to (it then
/// waits briefly for the writer, and the WAL starts over).
const FORCE_ABOVE_PAGES: i64 = 16_384;

fn checkpoint(conn: &Connection) {
    let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match passive {
        Ok((log, done)) if log > FORCE_ABOVE_PAGES && done < log => {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "forced WAL checkpoint skipped");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "WAL checkpoint skipped"),
    }
}

fn run(conn: Connection, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(EVERY) {
            Err(RecvTimeoutError::Timeout) => checkpoint(&conn),
            _ => {
                checkpoint(&conn);
                return;
            }
        }
    }
}
