//! `wp-lite bench` (`docs/operations.md`, "Benchmarks"): the entry point and the orchestration — where the
//! scenarios run (each in a child process of its own when there are several), the comparisons
//! with the raw limits measured in the same run, and the measurements the scenarios share.

mod conn;
mod report;
mod scenarios;

pub use report::{pg_targets, table, targets};

use crate::cli::{BenchArgs, Scenario};
use crate::storage::raw;
use anyhow::Context;
use scenarios::{
    broadcast_fanout, drain_fresh, drain_history, enqueue_batch, enqueue_single, http_batch,
    http_roundtrip, inbox_list, pickup_latency, raw_insert_select, raw_scenario, stream_fanout,
};
use serde::Serialize;
use std::time::Duration;

/// One line of the report (the fields `--json` prints).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub scenario: String,
    pub ops: usize,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub peak_rss_mb: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_ops_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_of_raw: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<String>,
    /// The machine's own limit on the smallest queue table (`raw-minimal-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimal_ops_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_of_minimal: Option<f64>,
    /// HTTP scenarios: the share of the machine (all cores) the client and the server used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_percent: Option<f64>,
    /// `stream-fanout`: how long the broadcast took to be `sent` with the streams open,
    /// and with none open (the same serve, just before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_seconds_alone: Option<f64>,
    /// `stream-fanout`: the server's own push lag (an item's delivery to its sending on a
    /// stream), p50 and p99 as the upper bounds of its histogram's buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_lag_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_lag_p99_ms: Option<f64>,
    /// `stream-fanout`: one direct send at a time to one of the open streams, from the call
    /// until the stream has the item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_push_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_push_p99_ms: Option<f64>,
}

impl Outcome {
    fn new(scenario: Scenario, ops: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            scenario: scenario.to_string(),
            ops,
            seconds,
            ops_per_s: ops as f64 / seconds.max(1e-9),
            p50_ms: None,
            p99_ms: None,
            peak_rss_mb: peak_rss_mb(),
            raw_ops_per_s: None,
            percent_of_raw: None,
            compared_with: None,
            minimal_ops_per_s: None,
            percent_of_minimal: None,
            client_cpu_percent: None,
            server_cpu_percent: None,
            delivery_seconds: None,
            delivery_seconds_alone: None,
            push_lag_p50_ms: None,
            push_lag_p99_ms: None,
            single_push_p50_ms: None,
            single_push_p99_ms: None,
        }
    }
}

/// Which figure each scenario is compared with.
fn baseline(scenario: Scenario) -> Option<Scenario> {
    match scenario {
        Scenario::EnqueueSingle => Some(Scenario::RawInsertSingle),
        Scenario::EnqueueBatch => Some(Scenario::RawInsertBatch),
        Scenario::Drain1 | Scenario::Drain4 => Some(Scenario::RawClaimComplete),
        Scenario::Drain1History => Some(Scenario::Drain1),
        Scenario::BroadcastFanout => Some(Scenario::RawInsertSelect),
        Scenario::InboxList10000 => Some(Scenario::InboxList10),
        _ => None,
    }
}

/// Which raw-minimal figure (the machine's limit on the smallest queue table) a scenario
/// is also compared with.
fn minimal_baseline(scenario: Scenario) -> Option<Scenario> {
    match scenario {
        Scenario::EnqueueSingle => Some(Scenario::RawMinimalInsertSingle),
        Scenario::EnqueueBatch => Some(Scenario::RawMinimalInsertBatch),
        Scenario::Drain1 | Scenario::Drain4 => Some(Scenario::RawMinimalClaimComplete),
        _ => None,
    }
}

/// Resets the kernel's peak-RSS mark so each scenario reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> f64 {
    vm_hwm_mb("/proc/self/status")
}

/// The peak resident set (VmHWM) from a `/proc/…/status` file, in MB.
fn vm_hwm_mb(path: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[idx.min(sorted.len() - 1)])
}

/// User + system CPU seconds from a `/proc/…/stat` file (Linux's USER_HZ is 100).
fn cpu_seconds(path: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// Users in the fanout scenarios: ten per op (1 000 000 at the default scale).
fn fanout_users(ops: usize) -> usize {
    ops.saturating_mul(10).max(1000)
}

/// Where the scenarios run: a temporary directory of SQLite files, or fresh schemas in a
/// PostgreSQL database (each dropped when its scenario is done).
pub enum BenchTarget {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl BenchTarget {
    fn schema(name: &str) -> String {
        format!(
            "wp_lite_bench_{}_{}",
            name.replace('-', "_"),
            std::process::id()
        )
    }

    /// The database URL of one scenario.
    fn url(&self, name: &str) -> String {
        match self {
            BenchTarget::Sqlite(dir) => {
                format!(
                    "sqlite://{}",
                    dir.path().join(format!("{name}.db")).display()
                )
            }
            BenchTarget::Postgres(base) => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}schema={}", Self::schema(name))
            }
        }
    }

    /// Removes a scenario's database, so the disk does not fill.
    async fn cleanup(&self, name: &str) {
        match self {
            BenchTarget::Sqlite(dir) => {
                for entry in std::fs::read_dir(dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            BenchTarget::Postgres(base) => {
                let (base, schema) = (base.clone(), Self::schema(name));
                let _ = crate::storage::blocking::run(move || {
                    crate::storage::postgres::raw::drop_schema(&base, &schema)
                })
                .await;
            }
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self, BenchTarget::Postgres(_))
    }
}

async fn run_one(target: &BenchTarget, scenario: Scenario, ops: usize) -> anyhow::Result<Outcome> {
    reset_peak_rss();
    let name = scenario.as_str();
    let url = &target.url(name);
    scenarios::settle(url).await;
    match scenario {
        Scenario::RawInsertSingle => raw_scenario(url, scenario, ops, raw::insert_single).await,
        Scenario::RawInsertBatch => {
            raw_scenario(url, scenario, ops, |u, n| raw::insert_batch(u, n, 1000)).await
        }
        Scenario::RawClaimComplete => raw_scenario(url, scenario, ops, raw::claim_complete).await,
        Scenario::RawMinimalInsertSingle => {
            raw_scenario(url, scenario, ops, raw::minimal_insert_single).await
        }
        Scenario::RawMinimalInsertBatch => {
            raw_scenario(url, scenario, ops, |u, n| {
                raw::minimal_insert_batch(u, n, 1000)
            })
            .await
        }
        Scenario::RawMinimalClaimComplete => {
            raw_scenario(url, scenario, ops, raw::minimal_claim_complete).await
        }
        Scenario::EnqueueSingle => enqueue_single(url, ops).await,
        Scenario::EnqueueBatch => enqueue_batch(url, ops).await,
        Scenario::Drain1 => drain_fresh(url, scenario, ops, 1).await,
        Scenario::Drain4 => drain_fresh(url, scenario, ops, 4).await,
        Scenario::Drain1History => drain_history(url, ops, 1_000_000).await,
        Scenario::HttpRoundtrip => http_roundtrip(url, ops).await,
        Scenario::HttpBatch => http_batch(url, ops).await,
        Scenario::PickupLatency => pickup_latency(url, (ops / 100).clamp(100, 2000)).await,
        Scenario::RawInsertSelect => raw_insert_select(url, fanout_users(ops)).await,
        Scenario::BroadcastFanout => broadcast_fanout(url, fanout_users(ops)).await,
        Scenario::StreamFanout | Scenario::StreamFanout1m => {
            let alone = format!("{name}-alone");
            target.cleanup(&alone).await;
            let streams = (ops / 10).clamp(100, 10_000);
            // The audience: the users with a stream, or (`-1m`) ten per op, among whom the
            // users with a stream are spread.
            let users = if scenario == Scenario::StreamFanout {
                streams
            } else {
                fanout_users(ops)
            };
            let o = stream_fanout(scenario, url, &target.url(&alone), users, streams).await;
            target.cleanup(&alone).await;
            o
        }
        Scenario::InboxList10 => inbox_list(url, scenario, 10, (ops / 20).clamp(200, 5000)).await,
        Scenario::InboxList10000 => {
            inbox_list(url, scenario, 10_000, (ops / 20).clamp(200, 5000)).await
        }
    }
}

/// Runs one scenario in a child process of this binary (`bench --scenario NAME --json`), so
/// that its peak RSS is its own: memory the allocator kept from an earlier scenario of the
/// same process would count otherwise.
async fn run_in_child(
    database_url: &str,
    scenario: Scenario,
    ops: usize,
) -> anyhow::Result<Outcome> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--log-level",
            "warn",
            "--database-url",
            database_url,
            "bench",
        ])
        .args([
            "--scenario",
            scenario.as_str(),
            "--ops",
            &ops.to_string(),
            "--json",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("starting a bench child")?;
    anyhow::ensure!(
        out.status.success(),
        "the bench child failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut all: Vec<Outcome> =
        serde_json::from_slice(&out.stdout).context("reading the bench child's JSON")?;
    all.pop().context("the bench child reported nothing")
}

/// Runs the chosen scenarios (each in a process of its own when there are several) and
/// fills in the comparisons.
pub async fn run_scenarios(
    scenarios: &[Scenario],
    ops: usize,
    target: &BenchTarget,
    database_url: &str,
) -> anyhow::Result<Vec<Outcome>> {
    let mut out: Vec<Outcome> = Vec::new();
    for &scenario in scenarios {
        let name = scenario.as_str();
        eprintln!("running {name} …");
        let o = if scenarios.len() > 1 {
            run_in_child(database_url, scenario, ops).await
        } else {
            target.cleanup(name).await;
            let o = run_one(target, scenario, ops).await;
            target.cleanup(name).await;
            o
        };
        out.push(o.with_context(|| format!("scenario {name}"))?);
    }
    // `out` holds one outcome per scenario, in the same order.
    let figures: Vec<(Scenario, f64)> = scenarios
        .iter()
        .zip(&out)
        .map(|(s, o)| (*s, o.ops_per_s))
        .collect();
    for (o, &scenario) in out.iter_mut().zip(scenarios) {
        if let Some(base) = baseline(scenario) {
            if let Some((_, raw)) = figures.iter().find(|(s, _)| *s == base) {
                o.raw_ops_per_s = Some(*raw);
                o.percent_of_raw = Some(o.ops_per_s / raw * 100.0);
                o.compared_with.get_or_insert_with(|| base.to_string());
            }
        }
        if let Some(base) = minimal_baseline(scenario) {
            if let Some((_, raw)) = figures.iter().find(|(s, _)| *s == base) {
                o.minimal_ops_per_s = Some(*raw);
                o.percent_of_minimal = Some(o.ops_per_s / raw * 100.0);
            }
        }
    }
    Ok(out)
}

/// `wp-lite bench`: runs the chosen scenarios (all of them, in their order, when none is
/// given), prints the table and the targets (or `--json`), and with `--markdown` writes
/// them into that file.
pub async fn run(args: BenchArgs, database_url: &str) -> anyhow::Result<()> {
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        <Scenario as clap::ValueEnum>::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    let target = if database_url.starts_with("postgres") {
        BenchTarget::Postgres(database_url.to_string())
    } else {
        BenchTarget::Sqlite(tempfile::Builder::new().prefix("wp-lite-bench").tempdir()?)
    };
    let out = run_scenarios(&scenarios, args.ops.max(1), &target, database_url).await?;
    let targets = if target.is_postgres() {
        pg_targets(&out)
    } else {
        targets(&out)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", table(&out));
        println!("{targets}");
    }
    if let Some(path) = args.markdown {
        report::write_markdown(&path, &out, &target, &targets).await?;
    }
    Ok(())
}
