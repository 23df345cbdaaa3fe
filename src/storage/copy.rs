//! `wp-lite copy`: every table of a SQLite database into an empty PostgreSQL database, so
//! an install that outgrows one machine keeps its jobs, users, broadcasts and inboxes.
//!
//! The source is read inside one read transaction (one consistent snapshot; with WAL a
//! `serve` on it keeps running) and the target is written inside one PostgreSQL
//! transaction with `COPY … FROM STDIN`, so the copy lands whole or not at all. The
//! tables are the ones of the source schema (both schemas are mirrored, version by
//! version, so both sides must be at this build's latest version), copied parents first,
//! and every `BIGSERIAL` sequence is moved past the copied ids at the end.

use super::{parse_url, postgres as pg, redact_url, OpenError, OpenOptions, Target, UrlError};
use postgres::Transaction;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The table that records applied migrations: each side keeps its own.
const HISTORY: &str = "refinery_schema_history";
/// Bytes of COPY text gathered before they are handed to the connection.
const CHUNK_BYTES: usize = 64 * 1024;
/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 1024;
/// How long the copy waits for a lock on a target table before it gives up.
const LOCK_TIMEOUT: &str = "10s";

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A bad URL, an unsupported direction, a missing source, a schema at another
    /// version, or a target that already holds data (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Anything that went wrong while copying; nothing was written.
    #[error("{0}")]
    Failed(String),
}

impl CopyError {
    /// Usage and configuration errors exit 2; the rest are runtime failures (1).
    pub fn is_usage(&self) -> bool {
        match self {
            CopyError::Usage(_) => true,
            CopyError::Open(o) => o.is_usage(),
            CopyError::Failed(_) => false,
        }
    }
}

impl From<UrlError> for CopyError {
    fn from(e: UrlError) -> Self {
        CopyError::Usage(e.to_string())
    }
}

fn sqlite_err(what: &str) -> impl Fn(rusqlite::Error) -> CopyError + '_ {
    move |e| CopyError::Failed(format!("{what}: {e}"))
}

fn pg_err(what: &str) -> impl Fn(postgres::Error) -> CopyError + '_ {
    move |e| {
        let msg = match e.as_db_error() {
            Some(d) => match d.detail() {
                Some(detail) => format!("{} ({detail})", d.message()),
                None => d.message().to_string(),
            },
            None => e.to_string(),
        };
        CopyError::Failed(format!("{what}: {msg}"))
    }
}

/// Told about the copy as it goes (a progress bar on a terminal, log lines otherwise).
pub trait Progress {
    /// A table starts; `rows` is how many the snapshot holds.
    fn table_started(&mut self, table: &str, rows: u64);
    /// `n` more rows of the current table were sent.
    fn rows_copied(&mut self, n: u64);
    /// The table is done (its rows are not committed until the whole copy is).
    fn table_done(&mut self, table: &str, rows: u64, took: Duration);
}

/// A progress sink that reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn table_started(&mut self, _: &str, _: u64) {}
    fn rows_copied(&mut self, _: u64) {}
    fn table_done(&mut self, _: &str, _: u64, _: Duration) {}
}

/// What was copied.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Every table in the order copied, with its row count.
    pub tables: Vec<(String, u64)>,
    /// The sequences moved past the copied ids: (table, column, next value).
    pub sequences: Vec<(String, String, i64)>,
    pub elapsed: Duration,
}

impl CopyReport {
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// How a target column takes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
    /// 16 bytes on SQLite, `uuid` on PostgreSQL.
    Uuid,
    /// 0 or 1 on SQLite, `boolean` on PostgreSQL.
    Bool,
}

struct Table {
    name: String,
    /// Column names in the target's order, with how each is written.
    columns: Vec<(String, Kind)>,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies every table of the SQLite database `from` into the empty PostgreSQL database
/// `to`. With `migrate`, both schemas are brought to this build's version first; without
/// it, both must be there already. Blocking: call from a blocking thread.
pub fn copy(
    from: &str,
    to: &str,
    migrate: bool,
    progress: &mut dyn Progress,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let path = match parse_url(from)? {
        Target::Sqlite(p) => p,
        Target::Postgres(_) => {
            return Err(CopyError::Usage(format!(
                "--from {}: copying from PostgreSQL is not supported; --from must be a SQLite database (sqlite://PATH)",
                redact_url(from)
            )))
        }
    };
    let url = match parse_url(to)? {
        Target::Postgres(u) => u,
        Target::Sqlite(_) => {
            return Err(CopyError::Usage(format!(
                "--to {to}: copying into SQLite is not supported; --to must be a PostgreSQL database (postgres://user:pass@host:port/db[?schema=NAME])"
            )))
        }
    };
    let target = pg::parse_target(&url).map_err(|e| CopyError::Usage(format!("--to: {e}")))?;
    if !path.is_file() {
        return Err(CopyError::Usage(format!(
            "--from {from}: {} is not a file",
            path.display()
        )));
    }

    // Both schemas at this build's version. The source store stays open while the copy
    // reads: its connections keep the WAL files in place for the read-only reader.
    let opts = OpenOptions { migrate };
    let source = super::open(from, &opts)?;
    let result = (|| {
        check_version(&*source, "--from", from)?;
        {
            let target_store = super::open(&url, &opts)?;
            let checked = check_version(&*target_store, "--to", &url);
            target_store.close();
            checked?;
        }
        copy_tables(&path, &target, progress)
    })();
    source.close();
    let (tables, sequences) = result?;
    Ok(CopyReport {
        tables,
        sequences,
        elapsed: started.elapsed(),
    })
}

fn check_version(store: &dyn super::Store, flag: &str, url: &str) -> Result<(), CopyError> {
    let have = store
        .schema_version()
        .map_err(|e| CopyError::Failed(format!("{flag} {}: {e}", redact_url(url))))?;
    let want = store.latest_schema_version();
    if have == want {
        return Ok(());
    }
    let url = redact_url(url);
    Err(CopyError::Usage(if have < want {
        format!(
            "{flag} {url} is at schema version {have}, this wp-lite copies version {want}: \
             run `wp-lite --database-url {url} migrate` first (or leave out --no-migrate)"
        )
    } else {
        format!(
            "{flag} {url} is at schema version {have}, newer than this wp-lite ({want}): \
             copy with the wp-lite that wrote it"
        )
    }))
}

type Copied = (Vec<(String, u64)>, Vec<(String, String, i64)>);

fn copy_tables(
    path: &Path,
    target: &pg::PgTarget,
    progress: &mut dyn Progress,
) -> Result<Copied, CopyError> {
    let mut src = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err("opening the source read-only"))?;
    src.busy_timeout(Duration::from_secs(5))
        .map_err(sqlite_err("configuring the source"))?;
    let mut client = pg::connect(target)?;

    // One read transaction: every SELECT below sees the same snapshot.
    let snapshot = src
        .transaction()
        .map_err(sqlite_err("starting the read transaction"))?;
    let mut tx = client
        .transaction()
        .map_err(pg_err("starting the PostgreSQL transaction"))?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .map_err(pg_err("setting lock_timeout"))?;

    let tables = plan(&snapshot, &mut tx)?;

    // Nobody writes the target while it is filled; a copy never merges into live data.
    let names: Vec<String> = tables.iter().map(|t| ident(&t.name)).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        names.join(", ")
    ))
    .map_err(pg_err("locking the target tables (is a wp-lite using it?)"))?;
    let mut holding = Vec::new();
    for t in &tables {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", ident(&t.name));
        let row = tx
            .query_one(&sql, &[])
            .map_err(pg_err("checking that the target is empty"))?;
        if row.get::<_, bool>(0) {
            holding.push(t.name.clone());
        }
    }
    if !holding.is_empty() {
        return Err(CopyError::Usage(format!(
            "the target already holds data (tables {}); copy only into an empty database or \
             a new ?schema=NAME, so nothing is merged into a live store",
            holding.join(", ")
        )));
    }

    let mut copied = Vec::with_capacity(tables.len());
    for t in &tables {
        let n = copy_table(&snapshot, &mut tx, t, progress)?;
        copied.push((t.name.clone(), n));
    }
    let sequences = reset_sequences(&mut tx, &tables)?;
    tx.commit().map_err(pg_err("committing the copy"))?;
    snapshot
        .finish()
        .map_err(sqlite_err("ending the read transaction"))?;
    Ok((copied, sequences))
}

/// The source's tables, parents before children, each with the target's columns.
fn plan(src: &Connection, tx: &mut Transaction<'_>) -> Result<Vec<Table>, CopyError> {
    let q = |e| sqlite_err("reading the source schema")(e);
    let mut stmt = src
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?1 ORDER BY rowid",
        )
        .map_err(q)?;
    let created: Vec<String> = stmt
        .query_map([HISTORY], |r| r.get(0))
        .map_err(q)?
        .collect::<Result<_, _>>()
        .map_err(q)?;
    let mut parents = Vec::with_capacity(created.len());
    for t in &created {
        let mut stmt = src
            .prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)")
            .map_err(q)?;
        let ps: Vec<String> = stmt
            .query_map([t], |r| r.get(0))
            .map_err(q)?
            .collect::<Result<_, _>>()
            .map_err(q)?;
        parents.push(ps);
    }
    let order = parents_first(&created, &parents)?;

    let mut tables = Vec::with_capacity(order.len());
    for name in order {
        let mut stmt = src
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(q)?;
        let mut source_cols: Vec<String> = stmt
            .query_map([&name], |r| r.get(0))
            .map_err(q)?
            .collect::<Result<_, _>>()
            .map_err(q)?;
        let rows = tx
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&name],
            )
            .map_err(pg_err("reading the target schema"))?;
        if rows.is_empty() {
            return Err(CopyError::Failed(format!(
                "the target has no table {name} although both schemas are at the same version"
            )));
        }
        let mut columns = Vec::with_capacity(rows.len());
        for r in rows {
            let (col, ty): (String, String) = (r.get(0), r.get(1));
            let kind = match ty.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Int,
                "double precision" | "real" => Kind::Float,
                "text" | "character varying" => Kind::Text,
                "uuid" => Kind::Uuid,
                "boolean" => Kind::Bool,
                other => {
                    return Err(CopyError::Failed(format!(
                        "target column {name}.{col} has type {other}, which copy does not handle"
                    )))
                }
            };
            columns.push((col, kind));
        }
        let mut target_cols: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
        source_cols.sort();
        target_cols.sort();
        if source_cols != target_cols {
            return Err(CopyError::Failed(format!(
                "table {name} has columns {source_cols:?} in the source but {target_cols:?} in the target"
            )));
        }
        tables.push(Table { name, columns });
    }
    Ok(tables)
}

/// Orders tables so every table comes after the ones it references, keeping creation
/// order otherwise.
fn parents_first(created: &[String], parents: &[Vec<String>]) -> Result<Vec<String>, CopyError> {
    let mut done: Vec<String> = Vec::with_capacity(created.len());
    while done.len() < created.len() {
        let next = created.iter().enumerate().find(|(i, t)| {
            !done.contains(t)
                && parents[*i]
                    .iter()
                    .all(|p| p == *t || done.contains(p) || !created.contains(p))
        });
        match next {
            Some((_, t)) => done.push(t.clone()),
            None => {
                let left: Vec<&String> = created.iter().filter(|t| !done.contains(t)).collect();
                return Err(CopyError::Failed(format!(
                    "the foreign keys between {left:?} form a cycle"
                )));
            }
        }
    }
    Ok(done)
}

/// Appends one value in COPY text format.
fn push_value(
    out: &mut Vec<u8>,
    v: ValueRef<'_>,
    kind: Kind,
    table: &str,
    col: &str,
) -> Result<(), CopyError> {
    match v {
        ValueRef::Null => out.extend_from_slice(b"\\N"),
        // SQLite keeps a flag as 0 or 1; a PostgreSQL boolean column takes t or f.
        ValueRef::Integer(i) if kind == Kind::Bool => match i {
            0 => out.push(b'f'),
            1 => out.push(b't'),
            _ => {
                return Err(CopyError::Failed(format!(
                    "{table}.{col} holds {i}, which is not a flag (0 or 1)"
                )))
            }
        },
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) => match kind {
            // An INTEGER column keeps whole numbers as integers; anything else would not
            // fit a BIGINT either, so say where it is.
            Kind::Int if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                let _ = write!(out, "{}", f as i64);
            }
            Kind::Int => {
                return Err(CopyError::Failed(format!(
                    "{table}.{col} holds {f}, which a BIGINT column cannot take"
                )))
            }
            _ if f.is_nan() => out.extend_from_slice(b"NaN"),
            _ if f.is_infinite() => {
                out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" })
            }
            // Debug is the shortest text that reads back as the same f64.
            _ => {
                let _ = write!(out, "{f:?}");
            }
        },
        ValueRef::Text(bytes) => {
            std::str::from_utf8(bytes).map_err(|_| {
                CopyError::Failed(format!("{table}.{col} holds text that is not UTF-8"))
            })?;
            for &b in bytes {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
        ValueRef::Blob(b) if kind == Kind::Uuid => {
            let id = uuid::Uuid::from_slice(b).map_err(|_| {
                CopyError::Failed(format!("{table}.{col} holds a BLOB that is not a UUID"))
            })?;
            let _ = write!(out, "{id}");
        }
        ValueRef::Blob(_) => {
            return Err(CopyError::Failed(format!(
                "{table}.{col} holds a BLOB; wp-lite never writes one there"
            )))
        }
    }
    Ok(())
}

fn copy_table(
    src: &Connection,
    tx: &mut Transaction<'_>,
    t: &Table,
    progress: &mut dyn Progress,
) -> Result<u64, CopyError> {
    let started = Instant::now();
    let name = t.name.as_str();
    let cols: Vec<String> = t.columns.iter().map(|(c, _)| ident(c)).collect();
    let cols = cols.join(", ");
    let read = |e| sqlite_err(&format!("reading {name}"))(e);
    let expected: i64 = src
        .query_row(&format!("SELECT COUNT(*) FROM {}", ident(name)), [], |r| {
            r.get(0)
        })
        .map_err(read)?;
    progress.table_started(name, expected as u64);

    let mut stmt = src
        .prepare(&format!("SELECT {cols} FROM {}", ident(name)))
        .map_err(read)?;
    let write_err = |e: std::io::Error| CopyError::Failed(format!("copying {name}: {e}"));
    let mut writer = tx
        .copy_in(&format!("COPY {} ({cols}) FROM STDIN", ident(name)))
        .map_err(pg_err(&format!("copying {name}")))?;
    let mut rows = stmt.query([]).map_err(read)?;
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    let (mut n, mut reported) = (0u64, 0u64);
    while let Some(row) = rows.next().map_err(read)? {
        for (i, (col, kind)) in t.columns.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            let v = row.get_ref(i).map_err(read)?;
            push_value(&mut buf, v, *kind, name, col)?;
        }
        buf.push(b'\n');
        n += 1;
        if buf.len() >= CHUNK_BYTES {
            writer.write_all(&buf).map_err(write_err)?;
            buf.clear();
        }
        if n - reported >= PROGRESS_EVERY {
            progress.rows_copied(n - reported);
            reported = n;
        }
    }
    writer.write_all(&buf).map_err(write_err)?;
    let written = writer
        .finish()
        .map_err(pg_err(&format!("copying {name}")))?;
    progress.rows_copied(n - reported);
    if written != n || n != expected as u64 {
        return Err(CopyError::Failed(format!(
            "{name}: the snapshot counted {expected} rows, {n} were read and {written} written"
        )));
    }
    progress.table_done(name, n, started.elapsed());
    Ok(n)
}

/// Moves every serial column's sequence past the copied ids, so new rows get fresh ones.
fn reset_sequences(
    tx: &mut Transaction<'_>,
    tables: &[Table],
) -> Result<Vec<(String, String, i64)>, CopyError> {
    let err = |e| pg_err("resetting the sequences")(e);
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let rows = tx
        .query(
            "SELECT table_name::text, column_name::text, \
                    pg_get_serial_sequence(quote_ident(table_name), column_name)::text \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ANY($1) \
               AND column_default LIKE 'nextval(%' \
             ORDER BY table_name, column_name",
            &[&names],
        )
        .map_err(err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (table, col, seq): (String, String, Option<String>) = (r.get(0), r.get(1), r.get(2));
        let Some(seq) = seq else { continue };
        // Empty table: the next value is 1; otherwise MAX + 1.
        let sql = format!(
            "SELECT setval($1::text::regclass, COALESCE(MAX({c}), 1), MAX({c}) IS NOT NULL), \
                    COALESCE(MAX({c}), 0) + 1 \
             FROM {t}",
            c = ident(&col),
            t = ident(&table)
        );
        let next: i64 = tx.query_one(&sql, &[&seq]).map_err(err)?.get(1);
        out.push((table, col, next));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: ValueRef<'_>, kind: Kind) -> String {
        let mut out = Vec::new();
        push_value(&mut out, v, kind, "t", "c").unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn copy_text_format() {
        assert_eq!(text(ValueRef::Null, Kind::Text), "\\N");
        assert_eq!(text(ValueRef::Integer(-42), Kind::Int), "-42");
        assert_eq!(
            text(ValueRef::Text(b"a\\b\tc\nd\re \\N"), Kind::Text),
            "a\\\\b\\tc\\nd\\re \\\\N"
        );
        assert_eq!(text(ValueRef::Real(0.1), Kind::Float), "0.1");
        assert_eq!(text(ValueRef::Real(3.0), Kind::Float), "3.0");
        assert_eq!(text(ValueRef::Real(3.0), Kind::Int), "3");
        assert_eq!(text(ValueRef::Real(f64::INFINITY), Kind::Float), "Infinity");
        let mut out = Vec::new();
        assert_eq!(text(ValueRef::Integer(1), Kind::Bool), "t");
        assert_eq!(text(ValueRef::Integer(0), Kind::Bool), "f");
        assert!(push_value(&mut out, ValueRef::Integer(2), Kind::Bool, "t", "c").is_err());
        assert!(push_value(&mut out, ValueRef::Real(1.5), Kind::Int, "t", "c").is_err());
        assert!(push_value(&mut out, ValueRef::Blob(b"x"), Kind::Text, "t", "c").is_err());
        assert!(push_value(&mut out, ValueRef::Text(b"\xff"), Kind::Text, "t", "c").is_err());
    }

    #[test]
    fn parents_come_first() {
        let created: Vec<String> = ["events", "jobs", "users"].map(String::from).to_vec();
        let parents = vec![vec!["jobs".to_string()], vec![], vec!["users".to_string()]];
        assert_eq!(
            parents_first(&created, &parents).unwrap(),
            ["jobs", "events", "users"]
        );
        let cycle = vec![vec!["jobs".to_string()], vec!["events".to_string()], vec![]];
        assert!(parents_first(&created, &cycle).is_err());
    }

    #[test]
    fn directions_and_urls() {
        let e = copy("postgres://u@h/db", "postgres://u@h/db2", false, &mut Quiet).unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("not supported"),
            "{e}"
        );
        let e = copy("sqlite://a.db", "sqlite://b.db", false, &mut Quiet).unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("not supported"),
            "{e}"
        );
        let e = copy("mysql://x", "postgres://u@h/db", false, &mut Quiet).unwrap_err();
        assert!(e.is_usage(), "{e}");
        let e = copy(
            "sqlite://a.db",
            "postgres://u@h/db?schema=bad-name",
            false,
            &mut Quiet,
        )
        .unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("schema"), "{e}");
        let e = copy(
            "sqlite:///nonexistent/dir/wp.db",
            "postgres://u@h/db",
            false,
            &mut Quiet,
        )
        .unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("not a file"), "{e}");
    }
}
