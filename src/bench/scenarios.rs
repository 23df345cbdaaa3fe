//! The scenarios, one function each returning the `Outcome` of one run: enqueue and drain
//! through the job service, HTTP against a `serve` child of this binary, pickup latency,
//! broadcast and SSE stream fan-out, inbox pages, and the raw database limits.

use super::conn::Conn;
use super::{cpu_seconds, percentile, reset_peak_rss, vm_hwm_mb, Outcome, Scenario};
use crate::app::{open_store, App};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, Secret};
use crate::domain::{Ack, AckOutcome, Claim, JobMeta, JobType, NewJob, WorkerId};
use crate::queue::ReadyQueue;
use crate::service::jobs::JobService;
use crate::storage::raw;
use anyhow::Context;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

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

/// Settles the database before a timed phase (`raw::settle`); if it cannot, the run goes
/// on without, and says so.
pub(super) async fn settle(url: &str) {
    let u = url.to_string();
    if let Err(e) = crate::storage::blocking::run(move || raw::settle(&u)).await {
        tracing::warn!(error = %e, "not checkpointed before a timed phase");
    }
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

/// Runs `task(i, n)` for `i` in `0..parts` at once, task `i` doing its share `n` of `ops`
/// (the first `ops % parts` tasks take one more), and waits for all; the first error fails
/// the run.
async fn in_parallel<F, Fut>(ops: usize, parts: usize, task: F) -> anyhow::Result<()>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..parts {
        set.spawn(task(i, ops / parts + usize::from(i < ops % parts)));
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

pub(super) async fn enqueue_single(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    const PRODUCERS: usize = 16;
    let svc = service(url).await?;
    let start = Instant::now();
    in_parallel(ops, PRODUCERS, |_, n| {
        let svc = svc.clone();
        async move {
            for i in 0..n {
                svc.enqueue(vec![new_job(i)]).await?;
            }
            Ok(())
        }
    })
    .await?;
    let out = Outcome::new(Scenario::EnqueueSingle, ops, start.elapsed());
    close(&svc).await;
    Ok(out)
}

pub(super) async fn enqueue_batch(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    let svc = service(url).await?;
    let start = Instant::now();
    fill(&svc, ops).await?;
    Ok(Outcome::new(Scenario::EnqueueBatch, ops, start.elapsed()))
}

/// `workers` workers each lease up to 100 jobs at a time and complete them (the
/// completions of one batch go out together and share group commits).
async fn drain(
    svc: &JobService,
    scenario: Scenario,
    ops: usize,
    workers: usize,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for w in 0..workers {
        let svc = svc.clone();
        set.spawn(async move {
            let worker_id = WorkerId::local(format!("bench-{w}"));
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
                        fence: j.fence(&worker_id),
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
    anyhow::ensure!(total == ops, "{scenario}: drained {total} of {ops} jobs");
    Ok(Outcome::new(scenario, ops, start.elapsed()))
}

pub(super) async fn drain_fresh(
    url: &str,
    scenario: Scenario,
    ops: usize,
    workers: usize,
) -> anyhow::Result<Outcome> {
    let svc = service(url).await?;
    fill(&svc, ops).await?;
    settle(url).await;
    reset_peak_rss();
    drain(&svc, scenario, ops, workers).await
}

pub(super) async fn drain_history(
    url: &str,
    ops: usize,
    history: usize,
) -> anyhow::Result<Outcome> {
    {
        let _svc = service(url).await?; // creates and migrates the file
    }
    let u = url.to_string();
    crate::storage::blocking::run(move || raw::fill_finished(&u, history)).await?;
    let svc = service(url).await?;
    fill(&svc, ops).await?;
    settle(url).await;
    reset_peak_rss();
    let mut out = drain(&svc, Scenario::Drain1History, ops, 1).await?;
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

pub(super) async fn http_roundtrip(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    const CLIENTS: usize = 16;
    against_child(url, Scenario::HttpRoundtrip, ops, |base| async move {
        in_parallel(ops, CLIENTS, |c, n| {
            let base = base.clone();
            async move {
                let mut http = Conn::open(&base, BENCH_TOKEN).await?;
                let worker = format!("client-{c}");
                let job_type = format!("rt-{c}");
                for i in 0..n {
                    let body = json!({ "type": job_type, "input": { "i": i } });
                    http.post("enqueue", "/v1/worker/jobs", body.to_string().into())
                        .await?;
                    let body = json!({ "worker_id": worker, "job_types": [job_type] });
                    let r = http
                        .post("lease", "/v1/worker/jobs/lease", body.to_string().into())
                        .await?;
                    let r: Leased<'_> = serde_json::from_slice(&r)?;
                    let job = r.jobs.first().context("leased nothing")?;
                    let body = json!({ "worker_id": worker, "lease_token": job.lease_token,
                                       "result": {} });
                    let path = format!("/v1/worker/jobs/{}/complete", job.job_id);
                    http.post("complete", &path, body.to_string().into())
                        .await?;
                }
                Ok(())
            }
        })
        .await
    })
    .await
}

/// What the HTTP scenarios read of a lease answer.
#[derive(serde::Deserialize)]
struct Leased<'a> {
    #[serde(borrow)]
    jobs: Vec<LeasedJob<'a>>,
}

#[derive(serde::Deserialize)]
struct LeasedJob<'a> {
    #[serde(borrow)]
    job_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    lease_token: std::borrow::Cow<'a, str>,
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

/// Runs an HTTP scenario's client against a fresh `serve` child and fills in the figures:
/// throughput, the server's peak RSS and how much of the machine each side used.
async fn against_child<F, Fut>(
    url: &str,
    scenario: Scenario,
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
    let mut out = Outcome::new(scenario, ops, elapsed);
    out.peak_rss_mb = served.peak_rss_mb();
    out.server_cpu_percent = Some((served.cpu_seconds() - server0) / machine * 100.0);
    out.client_cpu_percent = Some((cpu_seconds("/proc/self/stat") - client0) / machine * 100.0);
    Ok(out)
}

/// 16 HTTP clients, each job-type of its own: enqueue 100 jobs in one batch call, lease
/// them with one long-poll call (`limit` 100, `wait_ms`), finish them with one `ack`.
pub(super) async fn http_batch(url: &str, ops: usize) -> anyhow::Result<Outcome> {
    const CLIENTS: usize = 16;
    const BATCH: usize = 100;
    against_child(url, Scenario::HttpBatch, ops, |base| async move {
        in_parallel(ops, CLIENTS, |c, n| {
            let base = base.clone();
            async move {
                let mut http = Conn::open(&base, BENCH_TOKEN).await?;
                let worker = format!("client-{c}");
                let job_type = format!("hb-{c}");
                let mut left = n;
                while left > 0 {
                    let k = left.min(BATCH);
                    let jobs: Vec<_> = (0..k)
                        .map(|i| json!({ "type": job_type, "input": { "i": i } }))
                        .collect();
                    let body = json!({ "jobs": jobs }).to_string();
                    http.post("batch", "/v1/worker/jobs/batch", body.into())
                        .await?;
                    let mut pending = k;
                    while pending > 0 {
                        let body = json!({ "worker_id": worker, "job_types": [job_type],
                                           "limit": BATCH, "wait_ms": 1000 });
                        let r = http
                            .post("lease", "/v1/worker/jobs/lease", body.to_string().into())
                            .await?;
                        let r: Leased<'_> = serde_json::from_slice(&r)?;
                        let items: Vec<_> = r
                            .jobs
                            .iter()
                            .map(|j| {
                                json!({ "job_id": j.job_id, "lease_token": j.lease_token,
                                        "outcome": "complete", "result": {} })
                            })
                            .collect();
                        anyhow::ensure!(!items.is_empty(), "leased nothing");
                        let got = items.len();
                        let body = json!({ "worker_id": worker, "items": items }).to_string();
                        let r = http.post("ack", "/v1/worker/jobs/ack", body.into()).await?;
                        let r: serde_json::Value = serde_json::from_slice(&r)?;
                        let ok = r["items"]
                            .as_array()
                            .map_or(0, |a| a.iter().filter(|i| i["ok"] == true).count());
                        anyhow::ensure!(ok == got, "ack: {ok} of {got} ok");
                        pending -= got;
                    }
                    left -= k;
                }
                Ok(())
            }
        })
        .await
    })
    .await
}

/// A long-poll leaser waits over HTTP; each job is enqueued over HTTP only after the
/// previous one arrived, and the time from sending the enqueue to the lease answer is kept.
pub(super) async fn pickup_latency(url: &str, ops: usize) -> anyhow::Result<Outcome> {
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
    let mut out = Outcome::new(Scenario::PickupLatency, ops, start.elapsed());
    lat.sort_by(|a, b| a.total_cmp(b));
    out.p50_ms = percentile(&lat, 0.50);
    out.p99_ms = percentile(&lat, 0.99);
    if let Some(b) = other {
        b.stop().await?;
    }
    app.stop().await?;
    Ok(out)
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

pub(super) async fn raw_insert_select(url: &str, users: usize) -> anyhow::Result<Outcome> {
    users_db(url, users).await?;
    reset_peak_rss();
    let u = url.to_string();
    let (n, elapsed) = crate::storage::blocking::run(move || raw::insert_select(&u)).await?;
    anyhow::ensure!(n == users, "raw-insert-select inserted {n} of {users}");
    Ok(Outcome::new(Scenario::RawInsertSelect, n, elapsed))
}

/// One `all_users` broadcast to every user, sent now and delivered by the
/// `notifications.broadcast` worker's tick, timed until it is `sent`.
pub(super) async fn broadcast_fanout(url: &str, users: usize) -> anyhow::Result<Outcome> {
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
    Ok(Outcome::new(Scenario::BroadcastFanout, users, elapsed))
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
pub(super) async fn stream_fanout(
    scenario: Scenario,
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
    let mut out = Outcome::new(scenario, lags.len(), elapsed);
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
pub(super) async fn inbox_list(
    url: &str,
    scenario: Scenario,
    items: usize,
    ops: usize,
) -> anyhow::Result<Outcome> {
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
    let mut out = Outcome::new(scenario, ops, start.elapsed());
    lat.sort_by(|a, b| a.total_cmp(b));
    out.p50_ms = percentile(&lat, 0.50);
    out.p99_ms = percentile(&lat, 0.99);
    Ok(out)
}

/// One raw database limit (`f`, off the async runtime): the time it takes for `ops` operations.
pub(super) async fn raw_scenario(
    url: &str,
    scenario: Scenario,
    ops: usize,
    f: fn(&str, usize) -> anyhow::Result<Duration>,
) -> anyhow::Result<Outcome> {
    let u = url.to_string();
    let elapsed = crate::storage::blocking::run(move || f(&u, ops)).await?;
    Ok(Outcome::new(scenario, ops, elapsed))
}
