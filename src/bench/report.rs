//! The report of a `wp-lite bench` run: the Markdown table, the targets (SQLite and
//! PostgreSQL) checked against it, and BENCHMARKS.md, regenerated around the hand-written
//! analysis kept between its `<!-- analysis:… -->` markers.

use super::{BenchTarget, Outcome};
use anyhow::Context;
use std::path::Path;

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// The report as a Markdown table.
pub fn table(out: &[Outcome]) -> String {
    let mut s = String::from(
        "| scenario | ops | seconds | ops/s | p50 ms | p99 ms | peak RSS MB | compared with | % of it | % of raw-minimal | client / server CPU % |\n\
         |---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n",
    );
    for o in out {
        let cpu = match (o.client_cpu_percent, o.server_cpu_percent) {
            (Some(c), Some(v)) => format!("{c:.0} / {v:.0}"),
            _ => "–".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
            o.scenario,
            o.ops,
            o.seconds,
            o.ops_per_s,
            fmt_opt(o.p50_ms, 2),
            fmt_opt(o.p99_ms, 2),
            o.peak_rss_mb,
            o.compared_with.clone().unwrap_or_else(|| "–".into()),
            fmt_opt(o.percent_of_raw, 0),
            fmt_opt(o.percent_of_minimal, 0),
            cpu,
        ));
    }
    s
}

/// Rows of a targets table: a label, the figure, and whether it is met (`None`: not run).
struct Targets(String);

impl Targets {
    fn new() -> Self {
        Self(String::from("| target | figure | met |\n|---|---|---|\n"))
    }
    fn row(&mut self, label: &str, check: Option<(String, bool)>) {
        let (figure, met) = match check {
            Some((f, true)) => (f, "yes"),
            Some((f, false)) => (f, "**no**"),
            None => ("–".into(), "not run"),
        };
        self.0
            .push_str(&format!("| {label} | {figure} | {met} |\n"));
    }
}

fn find<'a>(out: &'a [Outcome], name: &str) -> Option<&'a Outcome> {
    out.iter().find(|o| o.scenario == name)
}

/// `scenario`'s throughput is at least `want` jobs/s.
fn at_least(out: &[Outcome], name: &str, want: f64) -> Option<(String, bool)> {
    find(out, name).map(|o| (format!("{:.0} jobs/s", o.ops_per_s), o.ops_per_s >= want))
}

/// `scenario` reaches `want` % of the figure it is compared with (`minimal`: raw-minimal).
fn percent(out: &[Outcome], name: &str, minimal: bool, want: f64) -> Option<(String, bool)> {
    let o = find(out, name)?;
    let p = if minimal {
        o.percent_of_minimal
    } else {
        o.percent_of_raw
    }?;
    Some((format!("{:.0} jobs/s, {p:.0} %", o.ops_per_s), p >= want))
}

fn pickup(out: &[Outcome], p50: f64, p99: f64) -> Option<(String, bool)> {
    find(out, "pickup-latency").map(|o| {
        let (a, b) = (o.p50_ms.unwrap_or(f64::MAX), o.p99_ms.unwrap_or(f64::MAX));
        (
            format!("p50 {a:.2} ms, p99 {b:.2} ms"),
            a <= p50 && b <= p99,
        )
    })
}

/// Every job scenario's peak RSS stays within 100 MB.
fn job_rss(out: &[Outcome]) -> Option<(String, bool)> {
    let jobs: Vec<&Outcome> = out
        .iter()
        .filter(|o| {
            o.scenario.starts_with("enqueue")
                || o.scenario.starts_with("drain")
                || o.scenario.starts_with("http")
                || o.scenario == "pickup-latency"
        })
        .collect();
    let worst = jobs
        .iter()
        .max_by(|a, b| a.peak_rss_mb.total_cmp(&b.peak_rss_mb))?;
    Some((
        format!("{:.0} MB ({})", worst.peak_rss_mb, worst.scenario),
        worst.peak_rss_mb <= 100.0,
    ))
}

/// The SQLite targets, checked against a run.
pub fn targets(out: &[Outcome]) -> String {
    let mut t = Targets::new();
    t.row(
        "enqueue-single (16 producers) ≥ 100 % of raw-minimal-insert-single",
        percent(out, "enqueue-single", true, 100.0),
    );
    t.row(
        "enqueue-batch ≥ 30 % of raw-minimal-insert-batch",
        percent(out, "enqueue-batch", true, 30.0),
    );
    t.row(
        "drain-4 ≥ 150 % of raw-minimal-claim-complete",
        percent(out, "drain-4", true, 150.0),
    );
    t.row(
        "drain-1 with 1 000 000 finished jobs ≥ 90 % of drain-1",
        percent(out, "drain-1-history", false, 90.0),
    );
    t.row(
        "http-roundtrip (three requests per job) ≥ 5 000 jobs/s",
        at_least(out, "http-roundtrip", 5_000.0),
    );
    t.row(
        "http-batch ≥ 30 000 jobs/s",
        at_least(out, "http-batch", 30_000.0),
    );
    t.row(
        "pickup-latency p50 ≤ 1 ms, p99 ≤ 5 ms",
        pickup(out, 1.0, 5.0),
    );
    t.row("every job scenario: peak RSS ≤ 100 MB", job_rss(out));
    t.row(
        "broadcast-fanout of 1 000 000 users ≤ 5 s, ≥ 40 % of raw INSERT … SELECT, RSS ≤ 200 MB",
        find(out, "broadcast-fanout").map(|o| {
            let pct = o.percent_of_raw.unwrap_or(0.0);
            (
                format!(
                    "{:.2} s, {:.0}/s, {pct:.0} % of raw, {:.0} MB",
                    o.seconds, o.ops_per_s, o.peak_rss_mb
                ),
                o.seconds <= 5.0 && pct >= 40.0 && o.peak_rss_mb <= 200.0 && o.ops >= 1_000_000,
            )
        }),
    );
    t.row(
        "stream-fanout, 10 000 open SSE streams and a broadcast to those users: every item, p99 lag ≤ 2 s, server RSS ≤ 300 MB, delivery within 20 % of the same broadcast with no stream open",
        stream_target(out, "stream-fanout"),
    );
    t.row(
        "in-process push: one item at a time to one of 10 000 open streams, p99 ≤ 100 ms (from the send call)",
        find(out, "stream-fanout").and_then(|o| {
            let (p50, p99) = (o.single_push_p50_ms?, o.single_push_p99_ms?);
            Some((format!("p50 {p50:.1} ms, p99 {p99:.1} ms"), p99 <= 100.0))
        }),
    );
    t.row(
        "stream-fanout-1m, the same 10 000 streams spread over 1 000 000 users and a broadcast to all of them (a harder case; the same bounds)",
        stream_target(out, "stream-fanout-1m"),
    );
    t.row(
        "inbox page of a 10 000-item inbox ≈ a 10-item one (p50 within 2×)",
        find(out, "inbox-list-10")
            .zip(find(out, "inbox-list-10000"))
            .map(|(a, b)| {
                let (pa, pb) = (a.p50_ms.unwrap_or(0.0), b.p50_ms.unwrap_or(f64::MAX));
                (
                    format!("p50 {pb:.2} ms vs {pa:.2} ms"),
                    pb <= 2.0 * pa.max(0.05),
                )
            }),
    );
    t.0
}

/// The stream-fanout bounds: every item, p99 ≤ 2 s, server RSS ≤ 300 MB, delivery within
/// 20 % of the same broadcast with no stream open.
fn stream_target(out: &[Outcome], name: &str) -> Option<(String, bool)> {
    find(out, name).map(|o| {
        let p99 = o.p99_ms.unwrap_or(f64::MAX);
        let (with, alone) = (
            o.delivery_seconds.unwrap_or(f64::MAX),
            o.delivery_seconds_alone.unwrap_or(0.0),
        );
        (
            format!(
                "{} streams, p50 {:.0} ms, p99 {p99:.0} ms (the server's push lag: p99 ≤ {:.0} ms), {:.0} MB, delivery {with:.3} s vs {alone:.3} s with none open",
                o.ops,
                o.p50_ms.unwrap_or(0.0),
                o.push_lag_p99_ms.unwrap_or(f64::NAN),
                o.peak_rss_mb
            ),
            o.ops >= 10_000 && p99 <= 2_000.0 && o.peak_rss_mb <= 300.0 && with <= 1.2 * alone,
        )
    })
}

/// The machine the run is on, for the heading.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem} RAM, {} {}, SQLite {} (bundled), WAL + synchronous=NORMAL",
        std::env::consts::OS,
        std::env::consts::ARCH,
        rusqlite::version()
    )
}

const PG_HEADING: &str = "## PostgreSQL";

/// Writes the run into `path` (BENCHMARKS.md). A SQLite run replaces everything before the
/// PostgreSQL section and keeps that section; a PostgreSQL run replaces that section and
/// keeps what comes before it. Each keeps its own hand-written analysis (`analysis`).
pub(super) async fn write_markdown(
    path: &Path,
    out: &[Outcome],
    target: &BenchTarget,
    targets: &str,
) -> anyhow::Result<()> {
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let (sqlite_part, pg_part) = match old.find(PG_HEADING) {
        Some(i) => (old[..i].to_string(), old[i..].to_string()),
        None => (old, String::new()),
    };
    let doc = if let BenchTarget::Postgres(url) = target {
        let version = {
            let u = url.clone();
            crate::storage::blocking::run(move || crate::storage::postgres::raw::server_version(&u))
                .await
                .unwrap_or_else(|e| format!("unknown ({e})"))
        };
        format!(
            "{sqlite_part}{PG_HEADING}\n\n\
             Generated by `make bench-postgres` (`{cmd}`) on {date}.\n\n\
             Machine: {machine}; PostgreSQL {version} on the same machine, default durability \
             (fsync on, synchronous_commit on). Each scenario runs in a fresh schema, after a `CHECKPOINT` \
             (the drain scenarios take another after their untimed fill), so that no scenario pays \
             for writing back what an earlier one left dirty; the `raw-*` \
             rows are plain statements on one connection, measured in the same run (`raw-minimal-*` on the \
             smallest queue table). \
             `pickup-latency` enqueues on one node and leases on a second node (LISTEN/NOTIFY).\n\n\
             ### Results\n\n{table}\n### Targets\n\n{targets}\n{notes}\n",
             notes = analysis(&pg_part, "postgres"),
            machine = machine(),
            table = table(out),
        )
    } else {
        format!(
            "# wp-lite benchmarks\n\n\
             Generated by `make bench` (`{cmd}`) on {date}.\n\n\
             Machine: {machine}.\n\n\
             Every scenario runs in a process of its own (so its peak RSS is its own) on a fresh database file in a temporary directory. The `raw-*` rows are \
             plain rusqlite on the same disk with the same pragmas, measured in the same run: `raw-minimal-*` \
             on the smallest table a queue can have (the machine's own limit), the other `raw-*` on wp-lite's \
             own schema. The HTTP scenarios drive a `serve` child; the last column is the share of the whole \
             machine the client and the server used. What each scenario does: `docs/operations.md`, \"Benchmarks\".\n\n\
             ## Results\n\n{table}\n## Targets\n\n{targets}\n{notes}\n\n{pg_part}",
             notes = analysis(&sqlite_part, "sqlite"),
            machine = machine(),
            table = table(out),
        )
    };
    std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The PostgreSQL targets, checked against a run.
pub fn pg_targets(out: &[Outcome]) -> String {
    let mut t = Targets::new();
    t.row(
        "enqueue-batch ≥ 45 000 jobs/s (graphile-worker's addJobs here: 42 700)",
        at_least(out, "enqueue-batch", 45_000.0),
    );
    t.row(
        "drain-4 ≥ 30 000 jobs/s with the job history kept (graphile-worker batched: 31 800)",
        at_least(out, "drain-4", 30_000.0),
    );
    t.row(
        "enqueue-single (16 producers) ≥ 3× raw-insert-single",
        find(out, "enqueue-single").map(|o| {
            let x = o.percent_of_raw.unwrap_or(0.0) / 100.0;
            (format!("{:.0} jobs/s, {x:.1}× raw", o.ops_per_s), x >= 3.0)
        }),
    );
    t.row(
        "http-roundtrip ≥ 3 000 jobs/s",
        at_least(out, "http-roundtrip", 3_000.0),
    );
    t.row(
        "pickup latency across nodes p99 ≤ 20 ms",
        pickup(out, f64::MAX, 20.0),
    );
    t.row("every job scenario: peak RSS ≤ 100 MB", job_rss(out));
    t.0
}

/// The hand-written analysis of a run (where the time goes, what is next) lives in
/// BENCHMARKS.md between these markers and is kept when the tables are regenerated.
fn analysis(old: &str, backend: &str) -> String {
    let (open, close) = (
        format!("<!-- analysis:{backend} -->"),
        format!("<!-- /analysis:{backend} -->"),
    );
    let kept = old.find(&open).and_then(|a| {
        old[a..]
            .find(&close)
            .map(|b| old[a..a + b + close.len()].to_string())
    });
    kept.unwrap_or_else(|| format!("{open}\n(no analysis written for this run yet)\n{close}"))
}
