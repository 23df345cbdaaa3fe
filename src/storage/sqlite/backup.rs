//! `wp-lite backup`: an online, consistent copy of a live SQLite database with SQLite's
//! backup API, checked with `PRAGMA integrity_check` before it is published.
//!
//! The source connection holds one read transaction for the whole copy. In WAL mode that
//! pins a snapshot: the copy holds exactly what was committed when it began, while
//! `serve` and `run` keep writing (a writer is never blocked by a reader), and the backup
//! never restarts however busy the database is — without the pinned snapshot the backup
//! API starts over whenever another connection commits between two steps.
//!
//! The copy is written to a private temporary file beside the target, synced, checked,
//! and then hard-linked into place, which fails if the target exists: an existing file
//! is never overwritten, and a reader never sees a half-written backup.

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pages copied per step (a progress update after each).
const PAGES_PER_STEP: std::os::raw::c_int = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Bad usage: the target exists, the source does not (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("backup failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("backup failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the copy failed its integrity check: {0}")]
    Integrity(String),
}

/// What a finished backup did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub pages: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Copies the database at `source` to the new file `target`; `progress(done, total)` is
/// called with page counts after every step.
pub fn backup(
    source: &Path,
    target: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if target.exists() {
        return Err(BackupError::Usage(format!(
            "{} exists; refusing to overwrite it (choose a new file name)",
            target.display()
        )));
    }
    if !source.is_file() {
        return Err(BackupError::Usage(format!(
            "no SQLite database at {}",
            source.display()
        )));
    }
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(30))?;
    let tmp = temp_path(target);
    create_private(&tmp)?;
    let copied = copy_snapshot(&src, &tmp, progress);
    drop(src);
    let report = copied.and_then(|(pages, page_size)| {
        check(&tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        publish(&tmp, target)?;
        Ok(BackupReport {
            pages,
            bytes: pages * page_size,
            elapsed: started.elapsed(),
        })
    });
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = tmp.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    report
}

/// The copy holds everything the database does (sessions included): mode 0600 from the
/// start, so it is never readable by others, not even while it is written.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map(drop)
}

fn temp_path(target: &Path) -> PathBuf {
    let mut p = target.as_os_str().to_owned();
    p.push(format!(".partial-{}", uuid::Uuid::new_v4()));
    PathBuf::from(p)
}

/// Copies one pinned snapshot of `src` into a new database at `tmp`: (pages, page size).
fn copy_snapshot(
    src: &Connection,
    tmp: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, u64), BackupError> {
    // Pin the snapshot: a read transaction that stays open across every step.
    src.execute_batch("BEGIN DEFERRED")?;
    let pinned = src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    });
    let result = pinned.map_err(BackupError::from).and_then(|_| {
        let mut dst = Connection::open(tmp)?;
        let page_size: i64 = src.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let total = {
            let b = Backup::new(src, &mut dst)?;
            loop {
                let step = b.step(PAGES_PER_STEP)?;
                let p = b.progress();
                let total = p.pagecount.max(0) as u64;
                progress((p.pagecount - p.remaining).max(0) as u64, total);
                match step {
                    StepResult::Done => break total,
                    StepResult::More => {}
                    // Only possible if something else writes the new file: wait a little.
                    StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        };
        // Leave the copy as one self-contained file (no WAL beside it).
        dst.execute_batch("PRAGMA journal_mode = DELETE;")?;
        dst.close().map_err(|(_, e)| e)?;
        Ok((total, page_size.max(0) as u64))
    });
    let _ = src.execute_batch("COMMIT");
    result
}

/// `PRAGMA integrity_check` on the copy: "ok" or the first problems it names.
fn check(path: &Path) -> Result<(), BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(BackupError::Integrity(
            rows.into_iter().take(5).collect::<Vec<_>>().join("; "),
        ))
    }
}

/// Links the finished copy into place; refuses if the target appeared meanwhile.
fn publish(tmp: &Path, target: &Path) -> Result<(), BackupError> {
    match std::fs::hard_link(tmp, target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(BackupError::Usage(format!(
                "{} appeared while the backup ran; refusing to overwrite it",
                target.display()
            )))
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
