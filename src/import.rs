//! `wp-lite users import FILE`: CSV (a header row; `id` required; `email`, `is_active`
//! optional; every other column a string attribute) or JSON Lines (one user object per
//! line, as in the API). Every row is checked first; if any is bad, the bad rows are
//! reported with their line numbers and nothing is written. Then the rows are upserted
//! in transactions of 10 000, with a progress bar on a terminal and a summary line.

use crate::cli::{ImportArgs, ImportFormat};
use crate::clock::SystemClock;
use crate::domain::notify::UserBody;
use crate::domain::notify::{Attributes, NewUser, UserId};
use crate::domain::FieldError;
use crate::exit::UsageError;
use crate::service::users::{UserService, MAX_BATCH};
use crate::storage::Db;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The most bad rows listed.
const MAX_REPORTED: usize = 20;

fn format_of(args: &ImportArgs) -> anyhow::Result<ImportFormat> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    match args
        .file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(ImportFormat::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(ImportFormat::Jsonl),
        _ => Err(UsageError(format!(
            "cannot tell the format of {} from its extension; use --format csv or --format jsonl",
            args.file.display()
        ))
        .into()),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Reads every row, calling `each(line, result)`.
fn read_rows(
    path: &Path,
    format: ImportFormat,
    mut each: impl FnMut(u64, Result<NewUser, String>),
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    match format {
        ImportFormat::Jsonl => {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let n = i as u64 + 1;
                let parsed = crate::domain::json_object::<UserBody>(line.as_bytes())
                    .map_err(|e| match e.field {
                        Some(f) => format!("{f}: {}", e.message),
                        None => e.message,
                    })
                    .and_then(|body| {
                        let mut errs = Vec::new();
                        body.parse("", None, &mut errs).ok_or_else(|| join(&errs))
                    });
                each(n, parsed);
            }
        }
        ImportFormat::Csv => {
            let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(file);
            let headers: Vec<String> = rdr
                .headers()?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            let id_col = headers.iter().position(|h| h == "id").ok_or_else(|| {
                UsageError(format!(
                    "{}: the header row has no `id` column",
                    path.display()
                ))
            })?;
            for record in rdr.records() {
                let record = match record {
                    Ok(r) => r,
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        each(line, Err(e.to_string()));
                        continue;
                    }
                };
                let line = record.position().map_or(0, |p| p.line());
                let mut attrs = Map::new();
                let (mut email, mut active) = (None, Some(true));
                for (i, value) in record.iter().enumerate() {
                    match headers[i].as_str() {
                        _ if i == id_col => {}
                        "email" => email = Some(value.trim().to_string()).filter(|e| !e.is_empty()),
                        "is_active" => active = parse_bool(value),
                        h if !value.is_empty() => {
                            attrs.insert(h.to_string(), Value::String(value.to_string()));
                        }
                        _ => {}
                    }
                }
                let result = (|| {
                    let active = active.ok_or("is_active: must be true, false, 1 or 0")?;
                    let id = UserId::parse("id", record.get(id_col).unwrap_or("").trim())
                        .map_err(|e| join(&[e]))?;
                    let attributes = Attributes::parse("attributes", Some(Value::Object(attrs)))
                        .map_err(|e| join(&[e]))?;
                    if email
                        .as_deref()
                        .is_some_and(|e| !e.contains('@') || e.chars().count() > 320)
                    {
                        return Err("email: must be an email address".to_string());
                    }
                    Ok(NewUser {
                        id,
                        email,
                        attributes,
                        is_active: active,
                    })
                })()
                .map_err(|e: String| e);
                each(line, result);
            }
        }
    }
    Ok(())
}

fn join(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn run(db: &Db, args: &ImportArgs) -> anyhow::Result<()> {
    let format = format_of(args)?;
    let path = args.file.clone();
    let started = Instant::now();
    // Pass 1: check every row; nothing is written if any is bad.
    let (rows, bad) = {
        let p = path.clone();
        crate::storage::blocking::run(move || -> anyhow::Result<(u64, Vec<String>)> {
            let (mut rows, mut bad) = (0u64, Vec::new());
            read_rows(&p, format, |line, r| {
                rows += 1;
                if let Err(e) = r {
                    bad.push(format!("line {line}: {e}"));
                }
            })?;
            Ok((rows, bad))
        })
        .await?
    };
    if !bad.is_empty() {
        for b in bad.iter().take(MAX_REPORTED) {
            eprintln!("{}: {b}", path.display());
        }
        if bad.len() > MAX_REPORTED {
            eprintln!("… and {} more bad rows", bad.len() - MAX_REPORTED);
        }
        return Err(UsageError(format!(
            "{} of {rows} rows in {} are invalid; nothing was imported",
            bad.len(),
            path.display()
        ))
        .into());
    }
    // Pass 2: upsert in transactions of MAX_BATCH.
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(rows);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} users ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let users = UserService::new(db.clone(), Arc::new(SystemClock));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<NewUser>>(2);
    let reader = tokio::spawn(crate::storage::blocking::run(move || {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        read_rows(&path, format, |_, r| {
            if let Ok(u) = r {
                batch.push(u);
                if batch.len() == MAX_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                    let _ = tx.blocking_send(full);
                }
            }
        })?;
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        anyhow::Ok(())
    }));
    let mut imported = 0usize;
    while let Some(batch) = rx.recv().await {
        let n = users.upsert_many(batch).await?;
        imported += n;
        bar.inc(n as u64);
    }
    reader.await??;
    bar.finish_and_clear();
    println!(
        "imported {imported} users from {} in {:.1} s",
        args.file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
