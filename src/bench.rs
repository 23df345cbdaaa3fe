//! `wp-lite bench`: the benchmark scenarios (README, "Benchmarks") on a throw-away
//! database, each next to the raw SQLite limit measured in the same run on the same disk
//! with the same settings.

use crate::app::{open_store, App};
use crate::cli::BenchArgs;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, Secret};
use crate::domain::{Ack, AckOutcome, Claim, Fence, JobMeta, JobType, NewJob};
use crate::queue::ReadyQueue;
use crate::service::jobs::JobService;
use crate::storage::raw;
use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Every scenario, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "raw-minimal-insert-single",
    "raw-minimal-insert-batch",
    "raw-minimal-claim-complete",
    "raw-insert-single",
    "raw-insert-batch",
    "raw-claim-complete",
    "enqueue-single",
    "enqueue-batch",
    "drain-1",
    "drain-4",
    "drain-1-history",
    "http-roundtrip",
    "http-batch",
    "pickup-latency",
    "raw-insert-select",
    "broadcast-fanout",
    "stream-fanout",
    "stream-fanout-1m",
    "inbox-list-10",
    "inbox-list-10000",
];

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
    fn new(scenario: &str, ops: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            scenario: scenario.into(),
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
fn baseline(scenario: &str) -> Option<&'static str> {
    match scenario {
        "enqueue-single" => Some("raw-insert-single"),
        "enqueue-batch" => Some("raw-insert-batch"),
        "drain-1" | "drain-4" => Some("raw-claim-complete"),
        "drain-1-history" => Some("drain-1"),
        "broadcast-fanout" => Some("raw-insert-select"),
        "inbox-list-10000" => Some("inbox-list-10"),
        _ => None,
    }
}

/// Which raw-minimal figure (the machine's limit on the smallest queue table) a scenario
/// is also compared with.
fn minimal_baseline(scenario: &str) -> Option<&'static str> {
    match scenario {
        "enqueue-single" => Some("raw-minimal-insert-single"),
        "enqueue-batch" => Some("raw-minimal-insert-batch"),
        "drain-1" | "drain-4" => Some("raw-minimal-claim-complete"),
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

fn new_job(i: usize) -> NewJob {
    NewJob {
        id: None,
        job_type: JobType::trusted("bench".into()),
        priority: 5,
        max_attempts: 3,
        available_at: None,
        meta: JobMeta::default(),
        input: json!({ "n": i }),
    }
}

async fn service(url: &str) -> anyhow::Result<JobService> {
    let db = open_store(url, true).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    Ok(JobService::new(db, Arc::new(ReadyQueue::new()), clock))
}

async fn close(svc: &JobService) {
    let _ = svc; // the store closes when the last handle drops
}

async fn fill(svc: &JobService, ops: usize) -> anyhow::Result<()> {
    let mut left = ops;
    let mut i = 0;
    while left > 0 {
        let n = left.min(1000);
        svc.enqueue((i..i + n).map(new_job).collect()).await?;
        i += n;
        left -= n;
    }
    Ok(())
}

async fn enqueue_single(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    const PRODUCERS: usize = 16;
    let svc = service(url).await?;
    let start = Instant::now();
    let mut set = JoinSet::new();
    for p in 0..PRODUCERS {
        let svc = svc.clone();
        let n = ops / PRODUCERS + usize::from(p < ops % PRODUCERS);
        set.spawn(async move {
            for i in 0..n {
                svc.enqueue(vec![new_job(i)]).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let out = Outcome::new("enqueue-single", ops, start.elapsed());
    close(&svc).await;
    Ok(out)
}

async fn enqueue_batch(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    let svc = service(url).await?;
    let start = Instant::now();
    fill(&svc, ops).await?;
    Ok(Outcome::new("enqueue-batch", ops, start.elapsed()))
}

/// `workers` workers each lease up to 100 jobs at a time and complete them (the
/// completions of one batch go out together and share group commits).
async fn drain(
    svc: &JobService,
    name: &str,
    ops: usize,
    workers: usize,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for w in 0..workers {
        let svc = svc.clone();
        set.spawn(async move {
            let worker_id = format!("bench-{w}");
            let mut done = 0usize;
            loop {
                let claim = Claim {
                    worker_id: worker_id.clone(),
                    types: vec![],
                    limit: 100,
                    lease: chrono::Duration::seconds(60),
                };
                let jobs = svc.lease(claim, Duration::ZERO).await?;
                if jobs.is_empty() {
                    return anyhow::Ok(done);
                }
                let acks: Vec<Ack> = jobs
                    .into_iter()
                    .map(|j| Ack {
                        id: j.id,
                        fence: Fence {
                            worker_id: worker_id.clone(),
                            lease_token: j.lease_token,
                        },
                        outcome: AckOutcome::Complete(None),
                    })
                    .collect();
                for r in svc.ack(acks).await? {
                    r?;
                    done += 1;
                }
            }
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    anyhow::ensure!(total == ops, "{name}: drained {total} of {ops} jobs");
    Ok(Outcome::new(name, ops, start.elapsed()))
}

async fn drain_fresh(url: &str, name: &str, ops: usize, workers: usize) -> anyhow::Result<Outcome> {
    let svc = service(url).await?;
    fill(&svc, ops).await?;
    reset_peak_rss();
    drain(&svc, name, ops, workers).await
}

async fn drain_history(url: &str, ops: usize, history: usize) -> anyhow::Result<Outcome> {
    {
        let _svc = service(url).await?; // creates and migrates the file
    }
    let u = url.to_string();
    crate::storage::blocking::run(move || raw::fill_finished(&u, history)).await?;
    let svc = service(url).await?;
    fill(&svc, ops).await?;
    reset_peak_rss();
    let mut out = drain(&svc, "drain-1-history", ops, 1).await?;
    out.compared_with = Some(format!(
        "drain-1 (empty table; this run has {history} finished jobs)"
    ));
    Ok(out)
}

async fn start_app(url: &str) -> anyhow::Result<(App, String)> {
    let mut config = Config::for_database(url.to_string());
    let token = "bench-admin-token-0123456789abcdef0123456789";
    config.admin_token = Some(Secret::new(token));
    let app = App::start(config, Arc::new(SystemClock)).await?;
    Ok((app, token.to_string()))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()?)
}

async fn http_roundtrip(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    const CLIENTS: usize = 16;
    against_child(url, "http-roundtrip", ops, |base| async move {
        let http = client()?;
        let mut set = JoinSet::new();
        for c in 0..CLIENTS {
            let (http, base) = (http.clone(), base.clone());
            let n = ops / CLIENTS + usize::from(c < ops % CLIENTS);
            set.spawn(async move {
                let worker = format!("client-{c}");
                let job_type = format!("rt-{c}");
                for i in 0..n {
                    let r = http
                        .post(format!("{base}/v1/worker/jobs"))
                        .bearer_auth(BENCH_TOKEN)
                        .json(&json!({ "type": job_type, "input": { "i": i } }))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "enqueue: {}", r.status());
                    let r: serde_json::Value = http
                        .post(format!("{base}/v1/worker/jobs/lease"))
                        .bearer_auth(BENCH_TOKEN)
                        .json(&json!({ "worker_id": worker, "job_types": [job_type] }))
                        .send()
                        .await?
                        .json()
                        .await?;
                    let job = &r["jobs"][0];
                    let id = job["job_id"].as_str().context("leased nothing")?;
                    let r = http
                        .post(format!("{base}/v1/worker/jobs/{id}/complete"))
                        .bearer_auth(BENCH_TOKEN)
                        .json(&json!({ "worker_id": worker, "lease_token": job["lease_token"], "result": {} }))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "complete: {}", r.status());
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok(())
    })
    .await
}

/// A `wp-lite serve` child of this very binary, so the HTTP scenarios' client (this
/// process) and server are measured apart. Killed when dropped.
struct ServeChild {
    child: std::process::Child,
    base: String,
}

const BENCH_TOKEN: &str = "bench-admin-token-0123456789abcdef0123456789";

impl ServeChild {
    fn start(url: &str) -> anyhow::Result<Self> {
        Self::start_with(url, &[])
    }

    /// A serve child with more `serve` options.
    fn start_with(url: &str, extra: &[&str]) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info",
                "--database-url",
                url,
            ])
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--admin-token",
                BENCH_TOKEN,
            ])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting a serve child")?;
        let stderr = child.stderr.take().context("serve's stderr")?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().context("serve exited before listening")??;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "wp-lite serving" {
                    break v["addr"].as_str().context("addr in the log")?.to_string();
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            base: format!("http://{addr}"),
        })
    }

    /// CPU seconds (user + system) the child has used so far.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    /// The child's peak RSS in MB.
    fn peak_rss_mb(&self) -> f64 {
        vm_hwm_mb(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Runs an HTTP scenario's client against a fresh `serve` child and fills in the figures:
/// throughput, the server's peak RSS and how much of the machine each side used.
async fn against_child<F, Fut>(
    url: &str,
    name: &str,
    ops: usize,
    client: F,
) -> anyhow::Result<Outcome>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let served = ServeChild::start(url)?;
    let (server0, client0) = (served.cpu_seconds(), cpu_seconds("/proc/self/stat"));
    let start = Instant::now();
    client(served.base.clone()).await?;
    let elapsed = start.elapsed();
    let machine =
        elapsed.as_secs_f64() * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut out = Outcome::new(name, ops, elapsed);
    out.peak_rss_mb = served.peak_rss_mb();
    out.server_cpu_percent = Some((served.cpu_seconds() - server0) / machine * 100.0);
    out.client_cpu_percent = Some((cpu_seconds("/proc/self/stat") - client0) / machine * 100.0);
    Ok(out)
}

/// 16 HTTP clients, each job-type of its own: enqueue 100 jobs in one batch call, lease
/// them with one long-poll call (`limit` 100, `wait_ms`), finish them with one `ack`.
async fn http_batch(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    const CLIENTS: usize = 16;
    const BATCH: usize = 100;
    against_child(url, "http-batch", ops, |base| async move {
        let http = client()?;
        let mut set = JoinSet::new();
        for c in 0..CLIENTS {
            let (http, base) = (http.clone(), base.clone());
            let n = ops / CLIENTS + usize::from(c < ops % CLIENTS);
            set.spawn(async move {
                let worker = format!("client-{c}");
                let job_type = format!("hb-{c}");
                let mut left = n;
                while left > 0 {
                    let k = left.min(BATCH);
                    let jobs: Vec<_> = (0..k)
                        .map(|i| json!({ "type": job_type, "input": { "i": i } }))
                        .collect();
                    let r = http
                        .post(format!("{base}/v1/worker/jobs/batch"))
                        .bearer_auth(BENCH_TOKEN)
                        .json(&json!({ "jobs": jobs }))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "batch: {}", r.status());
                    let mut pending = k;
                    while pending > 0 {
                        let r: serde_json::Value = http
                            .post(format!("{base}/v1/worker/jobs/lease"))
                            .bearer_auth(BENCH_TOKEN)
                            .json(&json!({ "worker_id": worker, "job_types": [job_type],
                                           "limit": BATCH, "wait_ms": 1000 }))
                            .send()
                            .await?
                            .json()
                            .await?;
                        let items: Vec<_> = r["jobs"]
                            .as_array()
                            .context("lease answer")?
                            .iter()
                            .map(|j| {
                                json!({ "job_id": j["job_id"], "lease_token": j["lease_token"],
                                             "outcome": "complete", "result": {} })
                            })
                            .collect();
                        anyhow::ensure!(!items.is_empty(), "leased nothing");
                        let got = items.len();
                        let r: serde_json::Value = http
                            .post(format!("{base}/v1/worker/jobs/ack"))
                            .bearer_auth(BENCH_TOKEN)
                            .json(&json!({ "worker_id": worker, "items": items }))
                            .send()
                            .await?
                            .json()
                            .await?;
                        let ok = r["items"]
                            .as_array()
                            .map_or(0, |a| a.iter().filter(|i| i["ok"] == true).count());
                        anyhow::ensure!(ok == got, "ack: {ok} of {got} ok");
                        pending -= got;
                    }
                    left -= k;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok(())
    })
    .await
}

/// A long-poll leaser waits over HTTP; each job is enqueued over HTTP only after the
/// previous one arrived, and the time from sending the enqueue to the lease answer is kept.
async fn pickup_latency(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    let (app, token) = start_app(url).await?;
    let base = format!("http://{}", app.addr());
    // On PostgreSQL the leaser waits on a second node: the wake-up crosses nodes through
    // LISTEN/NOTIFY. On SQLite both sides talk to the one process.
    let other = if url.starts_with("postgres") {
        Some(start_app(url).await?.0)
    } else {
        None
    };
    let leaser_base = other
        .as_ref()
        .map(|a| format!("http://{}", a.addr()))
        .unwrap_or_else(|| base.clone());
    let http = client()?;
    let (got_tx, mut got_rx) = tokio::sync::mpsc::channel::<Instant>(1);
    let leaser = {
        let (http, base, token) = (http.clone(), leaser_base.clone(), token.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < ops {
                let r: serde_json::Value = http
                    .post(format!("{base}/v1/worker/jobs/lease"))
                    .bearer_auth(&token)
                    .json(&json!({ "worker_id": "pickup", "wait_ms": 30000 }))
                    .send()
                    .await?
                    .json()
                    .await?;
                let at = Instant::now();
                if let Some(job) = r["jobs"].as_array().and_then(|a| a.first()) {
                    seen += 1;
                    let id = job["job_id"].as_str().unwrap_or_default().to_string();
                    got_tx.send(at).await?;
                    http.post(format!("{base}/v1/worker/jobs/{id}/complete"))
                        .bearer_auth(&token)
                        .json(&json!({ "worker_id": "pickup" }))
                        .send()
                        .await?;
                }
            }
            anyhow::Ok(())
        })
    };
    let mut lat = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in 0..ops {
        // Give the leaser a moment to be waiting again before the next enqueue.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = Instant::now();
        http.post(format!("{base}/v1/worker/jobs"))
            .bearer_auth(&token)
            .json(&json!({ "type": "pickup", "input": { "i": i } }))
            .send()
            .await?;
        let at = got_rx.recv().await.context("the leaser stopped")?;
        lat.push(at.duration_since(sent).as_secs_f64() * 1000.0);
    }
    leaser.await??;
    let mut out = Outcome::new("pickup-latency", ops, start.elapsed());
    lat.sort_by(|a, b| a.total_cmp(b));
    out.p50_ms = percentile(&lat, 0.50);
    out.p99_ms = percentile(&lat, 0.99);
    if let Some(b) = other {
        b.stop().await?;
    }
    app.stop().await?;
    Ok(out)
}

/// Users in the fanout scenarios: ten per op (1 000 000 at the default scale).
fn fanout_users(ops: usize) -> usize {
    ops.saturating_mul(10).max(1000)
}

/// A migrated database with `users` active users (not timed).
async fn users_db(url: &str, users: usize) -> anyhow::Result<()> {
    {
        let _ = open_store(url, true).await?;
    }
    let u = url.to_string();
    crate::storage::blocking::run(move || raw::fill_users(&u, users)).await?;
    Ok(())
}

async fn raw_insert_select(url: &str, users: usize) -> anyhow::Result<Outcome> {
    users_db(url, users).await?;
    reset_peak_rss();
    let u = url.to_string();
    let (n, elapsed) = crate::storage::blocking::run(move || raw::insert_select(&u)).await?;
    anyhow::ensure!(n == users, "raw-insert-select inserted {n} of {users}");
    Ok(Outcome::new("raw-insert-select", n, elapsed))
}

/// One `all_users` broadcast to every user, sent now and delivered by the
/// `notifications.broadcast` worker's tick, timed until it is `sent`.
async fn broadcast_fanout(url: &str, users: usize) -> anyhow::Result<Outcome> {
    use crate::domain::notify::{Audience, BroadcastDraft, BroadcastStatus};
    use crate::service::broadcasts::BroadcastService;
    use crate::worker::broadcast::{BroadcastWorker, Settings};
    use crate::worker::{WorkerEnv, WorkerOptions};
    users_db(url, users).await?;
    let db = open_store(url, true).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let wake = Arc::new(tokio::sync::Notify::new());
    let env = WorkerEnv {
        jobs: JobService::new(db.clone(), Arc::new(ReadyQueue::new()), clock.clone()),
        db: db.clone(),
        clock: clock.clone(),
        options: WorkerOptions::default(),
        broadcast_wake: wake.clone(),
        hub: None,
    };
    let settings = Settings::from_lookup(|_| None).map_err(|e| anyhow::anyhow!(e.0))?;
    let worker = BroadcastWorker::new(&env, settings);
    let broadcasts = BroadcastService::new(db.clone(), clock, wake);
    let draft = BroadcastDraft {
        title: "Feature launch".into(),
        body: "We are live!".into(),
        audience: Audience::AllUsers,
        scheduled_at: None,
    };
    let b = broadcasts.create(draft, "bench".into()).await?;
    reset_peak_rss();
    let start = Instant::now();
    broadcasts.send_now(b.id).await?;
    worker.run_tick().await?;
    let elapsed = start.elapsed();
    let done = broadcasts.get(b.id).await?;
    anyhow::ensure!(
        done.status == BroadcastStatus::Sent && done.sent as usize == users,
        "broadcast-fanout: status {:?}, sent {} of {users}",
        done.status,
        done.sent
    );
    Ok(Outcome::new("broadcast-fanout", users, elapsed))
}

const BENCH_JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef0123456789";

/// One open SSE stream of the bench's client: a raw HTTP/1.1 request on its own socket,
/// read until a line holds `needle`.
struct RawStream {
    user: String,
    tcp: tokio::net::TcpStream,
    seen: String,
}

impl RawStream {
    async fn open(addr: std::net::SocketAddr, user: String) -> anyhow::Result<RawStream> {
        use tokio::io::AsyncWriteExt;
        let exp = chrono::Utc::now().timestamp() + 3600;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({ "sub": user, "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(BENCH_JWT_SECRET.as_bytes())?,
        )?;
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(
            format!("GET /v1/notifications/stream?token={token} HTTP/1.1\r\nhost: bench\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut s = RawStream {
            user,
            tcp,
            seen: String::new(),
        };
        s.until("event: unread").await?;
        anyhow::ensure!(
            s.seen.starts_with("HTTP/1.1 200"),
            "a stream was refused: {}",
            s.seen.lines().next().unwrap_or("")
        );
        s.seen.clear();
        Ok(s)
    }

    async fn until(&mut self, needle: &str) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            let n = self.tcp.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "a stream ended early");
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(())
    }
}

/// The upper bound (in ms) of the first bucket of a Prometheus histogram holding the
/// fraction `q` of its observations.
fn histogram_bound(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total && total > 0.0)
        .map(|(le, _)| le * 1000.0)
}

/// Sends an `all_users` broadcast now through the API and returns how long it took to be
/// `sent` (polled every millisecond).
async fn send_broadcast_now(http: &reqwest::Client, base: &str) -> anyhow::Result<Duration> {
    let prefix = format!("{base}/v1/admin/notifications/broadcasts");
    let b: serde_json::Value = http
        .post(&prefix)
        .bearer_auth(BENCH_TOKEN)
        .json(
            &serde_json::json!({ "title": "Feature launch", "body": "We are live!",
                                     "audience": { "type": "all_users" } }),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = b["id"].as_str().context("a broadcast id")?.to_string();
    let start = Instant::now();
    http.post(format!("{prefix}/{id}/actions/send-now"))
        .bearer_auth(BENCH_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await?
        .error_for_status()?;
    loop {
        let b: serde_json::Value = http
            .get(format!("{prefix}/{id}"))
            .bearer_auth(BENCH_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        // (Polled: the broadcast's `finished_at` is when its last chunk began.)
        if b["status"] == "sent" {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(b["status"] != "failed", "the broadcast failed: {b}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `streams` open SSE streams on a `serve` child (whose broadcast worker delivers), one
/// each for users spread evenly over `users`; one `all_users` broadcast, timed until every
/// stream has its item. The same broadcast is first sent on a fresh database of the same
/// users (`alone_url`) with no stream open, so the report can say what the open streams
/// cost the delivery itself.
async fn stream_fanout(
    name: &str,
    url: &str,
    alone_url: &str,
    users: usize,
    streams: usize,
) -> anyhow::Result<Outcome> {
    let http = client()?;
    let max = streams.to_string();
    let serve_args = ["--jwt-secret", BENCH_JWT_SECRET, "--max-streams", &max];
    users_db(alone_url, users).await?;
    let alone = {
        let served = ServeChild::start_with(alone_url, &serve_args)?;
        send_broadcast_now(&http, &served.base).await?
    };
    users_db(url, users).await?;
    let spread = (users / streams).max(1);
    let served = ServeChild::start_with(url, &serve_args)?;

    let addr: std::net::SocketAddr = served.base.trim_start_matches("http://").parse()?;
    let mut open = Vec::with_capacity(streams);
    let mut set = JoinSet::new();
    for i in 0..streams {
        set.spawn(RawStream::open(addr, format!("user-{:07}", i * spread)));
        // At most 256 handshakes in flight.
        if set.len() >= 256 {
            open.push(set.join_next().await.context("a stream")???);
        }
    }
    while let Some(r) = set.join_next().await {
        open.push(r??);
    }
    let (server0, client0) = (served.cpu_seconds(), cpu_seconds("/proc/self/stat"));
    let start = Instant::now();
    let mut waiting = JoinSet::new();
    for mut s in open {
        waiting.spawn(async move {
            s.until("event: notification").await?;
            anyhow::Ok((start.elapsed(), s))
        });
    }
    let delivered = send_broadcast_now(&http, &served.base).await?;
    let mut lags = Vec::with_capacity(streams);
    let mut keep = Vec::with_capacity(streams);
    while let Some(r) = waiting.join_next().await {
        let (lag, s) = r??;
        lags.push(lag.as_secs_f64() * 1000.0);
        keep.push(s); // closed after the measurement, not while others still wait
    }
    let elapsed = start.elapsed();
    lags.sort_by(f64::total_cmp);
    let machine =
        elapsed.as_secs_f64() * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut out = Outcome::new(name, lags.len(), elapsed);
    out.p50_ms = percentile(&lags, 0.50);
    out.p99_ms = percentile(&lags, 0.99);
    out.peak_rss_mb = served.peak_rss_mb();
    out.server_cpu_percent = Some((served.cpu_seconds() - server0) / machine * 100.0);
    out.client_cpu_percent = Some((cpu_seconds("/proc/self/stat") - client0) / machine * 100.0);
    out.compared_with = Some("the same broadcast's delivery with no stream open".into());
    out.raw_ops_per_s = Some(streams as f64 / alone.as_secs_f64().max(1e-9));
    out.percent_of_raw = Some(alone.as_secs_f64() / delivered.as_secs_f64().max(1e-9) * 100.0);
    out.delivery_seconds = Some(delivered.as_secs_f64());
    out.delivery_seconds_alone = Some(alone.as_secs_f64());
    let metrics = http
        .get(format!("{}/v1/metrics", served.base))
        .bearer_auth(BENCH_TOKEN)
        .send()
        .await?
        .text()
        .await?;
    out.push_lag_p50_ms = histogram_bound(&metrics, "wp_lite_inbox_push_lag_seconds", 0.50);
    out.push_lag_p99_ms = histogram_bound(&metrics, "wp_lite_inbox_push_lag_seconds", 0.99);
    // Then one item at a time (a direct send) to one of the open streams, as an application
    // sends them: the time from the call until that stream has it.
    let mut single = Vec::new();
    for s in keep.iter_mut().step_by((streams / 200).max(1)) {
        s.seen.clear();
        let start = Instant::now();
        http.post(format!("{}/v1/admin/notifications/send", served.base))
            .bearer_auth(BENCH_TOKEN)
            .json(&serde_json::json!({ "user_id": s.user, "title": "ping", "message": "one" }))
            .send()
            .await?
            .error_for_status()?;
        s.until("event: notification").await?;
        single.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    single.sort_by(f64::total_cmp);
    out.single_push_p50_ms = percentile(&single, 0.50);
    out.single_push_p99_ms = percentile(&single, 0.99);
    drop(keep);
    Ok(out)
}

/// The first page (10 items, with total and unread counts) of an inbox holding `items`
/// notifications, fetched `ops` times through the inbox service; p50/p99 per page. The page
/// size is the same for both inbox sizes, so the comparison shows only what the inbox's
/// size costs.
async fn inbox_list(url: &str, items: usize, ops: usize) -> anyhow::Result<Outcome> {
    use crate::domain::notify::{DirectNotification, UserId};
    use crate::service::inbox::InboxService;
    let db = open_store(url, true).await?;
    let inbox = InboxService::new(db, Arc::new(SystemClock));
    let user = UserId::parse("user", "bench-user").map_err(|e| anyhow::anyhow!(e.message))?;
    for i in 0..items {
        inbox
            .deliver(DirectNotification {
                user_id: user.clone(),
                title: format!("n{i}"),
                body: "body".into(),
                meta: None,
                event_id: None,
            })
            .await?;
    }
    let mut lat = Vec::with_capacity(ops);
    let start = Instant::now();
    for _ in 0..ops {
        let t = Instant::now();
        let page = inbox.page(user.clone(), 10, 0).await?;
        anyhow::ensure!(
            page.total as usize == items,
            "inbox holds {} of {items}",
            page.total
        );
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut out = Outcome::new(&format!("inbox-list-{items}"), ops, start.elapsed());
    lat.sort_by(|a, b| a.total_cmp(b));
    out.p50_ms = percentile(&lat, 0.50);
    out.p99_ms = percentile(&lat, 0.99);
    Ok(out)
}

async fn raw_scenario(url: &str, name: &str, ops: usize) -> anyhow::Result<Outcome> {
    let u = url.to_string();
    let n = name.to_string();
    let elapsed = crate::storage::blocking::run(move || match n.as_str() {
        "raw-insert-single" => raw::insert_single(&u, ops),
        "raw-insert-batch" => raw::insert_batch(&u, ops, 1000),
        "raw-minimal-insert-single" => raw::minimal_insert_single(&u, ops),
        "raw-minimal-insert-batch" => raw::minimal_insert_batch(&u, ops, 1000),
        "raw-minimal-claim-complete" => raw::minimal_claim_complete(&u, ops),
        _ => raw::claim_complete(&u, ops),
    })
    .await?;
    Ok(Outcome::new(name, ops, elapsed))
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

async fn run_one(target: &BenchTarget, name: &str, ops: usize) -> anyhow::Result<Outcome> {
    reset_peak_rss();
    let url = &target.url(name);
    match name {
        "raw-insert-single"
        | "raw-insert-batch"
        | "raw-claim-complete"
        | "raw-minimal-insert-single"
        | "raw-minimal-insert-batch"
        | "raw-minimal-claim-complete" => raw_scenario(url, name, ops).await,
        "enqueue-single" => enqueue_single(url, ops).await,
        "enqueue-batch" => enqueue_batch(url, ops).await,
        "drain-1" => drain_fresh(url, name, ops, 1).await,
        "drain-4" => drain_fresh(url, name, ops, 4).await,
        "drain-1-history" => drain_history(url, ops, 1_000_000).await,
        "http-roundtrip" => http_roundtrip(url, ops).await,
        "http-batch" => http_batch(url, ops).await,
        "pickup-latency" => pickup_latency(url, (ops / 100).clamp(100, 2000)).await,
        "raw-insert-select" => raw_insert_select(url, fanout_users(ops)).await,
        "broadcast-fanout" => broadcast_fanout(url, fanout_users(ops)).await,
        "stream-fanout" | "stream-fanout-1m" => {
            let alone = format!("{name}-alone");
            target.cleanup(&alone).await;
            let streams = (ops / 10).clamp(100, 10_000);
            // The audience: the users with a stream, or (`-1m`) ten per op, among whom the
            // users with a stream are spread.
            let users = if name == "stream-fanout" {
                streams
            } else {
                fanout_users(ops)
            };
            let o = stream_fanout(name, url, &target.url(&alone), users, streams).await;
            target.cleanup(&alone).await;
            o
        }
        "inbox-list-10" => inbox_list(url, 10, (ops / 20).clamp(200, 5000)).await,
        "inbox-list-10000" => inbox_list(url, 10_000, (ops / 20).clamp(200, 5000)).await,
        other => anyhow::bail!("unknown scenario '{other}'"),
    }
}

/// Runs one scenario in a child process of this binary (`bench --scenario NAME --json`), so
/// that its peak RSS is its own: memory the allocator kept from an earlier scenario of the
/// same process would count otherwise.
async fn run_in_child(database_url: &str, name: &str, ops: usize) -> anyhow::Result<Outcome> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--log-level",
            "warn",
            "--database-url",
            database_url,
            "bench",
        ])
        .args(["--scenario", name, "--ops", &ops.to_string(), "--json"])
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
    names: &[String],
    ops: usize,
    target: &BenchTarget,
    database_url: &str,
) -> anyhow::Result<Vec<Outcome>> {
    let mut out: Vec<Outcome> = Vec::new();
    for name in names {
        eprintln!("running {name} …");
        let o = if names.len() > 1 {
            run_in_child(database_url, name, ops).await
        } else {
            target.cleanup(name).await;
            let o = run_one(target, name, ops).await;
            target.cleanup(name).await;
            o
        };
        out.push(o.with_context(|| format!("scenario {name}"))?);
    }
    let figures: Vec<(String, f64)> = out
        .iter()
        .map(|o| (o.scenario.clone(), o.ops_per_s))
        .collect();
    for o in &mut out {
        if let Some(base) = baseline(&o.scenario) {
            if let Some((_, raw)) = figures.iter().find(|(n, _)| n == base) {
                o.raw_ops_per_s = Some(*raw);
                o.percent_of_raw = Some(o.ops_per_s / raw * 100.0);
                o.compared_with.get_or_insert_with(|| base.to_string());
            }
        }
        if let Some(base) = minimal_baseline(&o.scenario) {
            if let Some((_, raw)) = figures.iter().find(|(n, _)| n == base) {
                o.minimal_ops_per_s = Some(*raw);
                o.percent_of_minimal = Some(o.ops_per_s / raw * 100.0);
            }
        }
    }
    Ok(out)
}

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

pub async fn run(args: BenchArgs, database_url: &str) -> anyhow::Result<()> {
    let names: Vec<String> = if args.scenarios.is_empty() {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        for s in &args.scenarios {
            if !SCENARIOS.contains(&s.as_str()) {
                return Err(crate::exit::UsageError(format!(
                    "unknown scenario '{s}'; known: {}",
                    SCENARIOS.join(", ")
                ))
                .into());
            }
        }
        args.scenarios.clone()
    };
    let target = if database_url.starts_with("postgres") {
        BenchTarget::Postgres(database_url.to_string())
    } else {
        BenchTarget::Sqlite(tempfile::Builder::new().prefix("wp-lite-bench").tempdir()?)
    };
    let out = run_scenarios(&names, args.ops.max(1), &target, database_url).await?;
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
        let cmd = std::env::args().collect::<Vec<_>>().join(" ");
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let (sqlite_part, pg_part) = match old.find(PG_HEADING) {
            Some(i) => (old[..i].to_string(), old[i..].to_string()),
            None => (old, String::new()),
        };
        let doc = if let BenchTarget::Postgres(url) = &target {
            let version = {
                let u = url.clone();
                crate::storage::blocking::run(move || {
                    crate::storage::postgres::raw::server_version(&u)
                })
                .await
                .unwrap_or_else(|e| format!("unknown ({e})"))
            };
            format!(
                "{sqlite_part}{PG_HEADING}\n\n\
                 Generated by `make bench-postgres` (`{cmd}`) on {date}.\n\n\
                 Machine: {machine}; PostgreSQL {version} on the same machine, default durability \
                 (fsync on, synchronous_commit on). Each scenario runs in a fresh schema; the `raw-*` \
                 rows are plain statements on one connection, measured in the same run (`raw-minimal-*` on the \
                 smallest queue table). \
                 `pickup-latency` enqueues on one node and leases on a second node (LISTEN/NOTIFY).\n\n\
                 ### Results\n\n{table}\n### Targets\n\n{targets}\n{notes}\n",
                 notes = analysis(&pg_part, "postgres"),
                machine = machine(),
                table = table(&out),
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
                 machine the client and the server used. See the README for what each scenario does.\n\n\
                 ## Results\n\n{table}\n## Targets\n\n{targets}\n{notes}\n\n{pg_part}",
                 notes = analysis(&sqlite_part, "sqlite"),
                machine = machine(),
                table = table(&out),
            )
        };
        std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

const PG_HEADING: &str = "## PostgreSQL";

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
