//! The real binary: help, migrate, bad URLs, exit codes, tokens, serve and signals, two
//! OS processes writing one database file, and the workers: `wp-lite workers`, `wp-lite
//! run` (unknown names, `--once`, SIGTERM, a second SIGTERM, two processes draining one
//! database) and liveness of a killed process.

mod common;
use common::Served as Server;

use chrono::Utc;
use common::signal;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wp_lite::domain::{Claim, Enqueued, JobId, JobMeta, JobStatus, JobType, NewJob};
use wp_lite::storage::{self, OpenOptions, Store};

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");

fn wp(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("WP_LITE_DATABASE_URL")
        .env_remove("WP_LITE_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run wp-lite")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_lists_commands_and_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let o = wp(dir.path(), &["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for cmd in ["serve", "migrate", "workers", "admin-token", "bench"] {
        assert!(t.contains(cmd), "--help lacks {cmd}: {t}");
    }
    let o = wp(dir.path(), &["serve", "--help"]);
    let t = text(&o);
    for var in [
        "WP_LITE_DATABASE_URL",
        "WP_LITE_BIND",
        "WP_LITE_ADMIN_TOKEN",
        "WP_LITE_WORKER_TOKEN",
        "WP_LITE_MAX_BODY_BYTES",
        "WP_LITE_JOB_RETENTION",
        "WP_LITE_LOG_LEVEL",
    ] {
        assert!(t.contains(var), "serve --help lacks {var}");
    }
}

#[test]
fn migrate_twice_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let first = wp(dir.path(), &["migrate"]);
    assert!(first.status.success(), "{}", text(&first));
    let v1 = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(v1.starts_with("schema version "), "{v1}");
    let second = wp(dir.path(), &["migrate"]);
    assert!(second.status.success());
    assert_eq!(String::from_utf8_lossy(&second.stdout), v1);
    assert!(dir.path().join("wp-lite.db").exists());
}

#[test]
fn bad_database_urls_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (url, needle) in [
        ("sqlite::memory:", "memory"),
        ("mysql://root@localhost/x", "unsupported"),
    ] {
        let o = wp(dir.path(), &["--database-url", url, "migrate"]);
        assert_eq!(o.status.code(), Some(2), "{url}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains(needle), "{url}: {t}");
        assert!(!t.contains("hunter2"), "the password leaked: {t}");
    }
    // A PostgreSQL server that does not answer is a runtime failure (exit 1) with the
    // cause, and the password stays out of the output.
    let o = wp(
        dir.path(),
        &[
            "--database-url",
            "postgres://user:hunter2@127.0.0.1:1/db",
            "migrate",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("cannot connect to PostgreSQL"), "{t}");
    assert!(!t.contains("hunter2"), "the password leaked: {t}");
}

#[test]
fn usage_errors_exit_2_and_log_level_ignores_case() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(wp(dir.path(), &["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        wp(dir.path(), &["--log-level", "loud", "workers"])
            .status
            .code(),
        Some(2)
    );
    let o = wp(dir.path(), &["--log-level=INFO", "workers"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("jobs.maintenance"));
    let o = wp(dir.path(), &["bench", "--scenario", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Every option value that cannot work is a usage error: exit 2 with a one-line reason,
/// before anything is opened or bound.
#[test]
fn bad_option_values_exit_2_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[
        &["serve", "--bind", "not-an-address"],
        &["serve", "--bind", "127.0.0.1:99999"],
        &["serve", "--metrics-bind", "nowhere"],
        &["serve", "--max-body-bytes", "0"],
        &["serve", "--max-body-bytes", "-1"],
        &["serve", "--max-body-bytes", "99999999999999999999999"],
        &["serve", "--session-ttl", "0"],
        &["serve", "--idle-timeout", "0"],
        &["serve", "--idle-timeout", "forever"],
        &["serve", "--session-ttl", "soon"],
        &["serve", "--shutdown-timeout", "-3s"],
        &["serve", "--job-retention", "200y"],
        &["serve", "--maintenance-interval", "1ms"],
        &["serve", "--worker-heartbeat", "0"],
        &["serve", "--inbox-retention-days", "0"],
        &["serve", "--inbox-max-per-user", "-4"],
        &["serve", "--admin-token", "   "],
        &["serve", "--admin-token", "ok-token", "--worker-token", " "],
        &["serve", "--admin-token", "ok-token", "--jwt-secret", ""],
        &[
            "run",
            "--name",
            "jobs.maintenance",
            "--shutdown-timeout",
            "1e400",
        ],
        &["bench", "--ops", "0"],
        &["admin-token", "--admin-token", ""],
    ];
    for args in cases {
        let o = wp(dir.path(), args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error:"), "{args:?}: {err}");
    }
    // Nothing was created by a refused command.
    assert!(!dir.path().join("wp-lite.db").exists());
}

/// Every job scenario of `wp-lite bench` runs to its end at the smallest scale, on SQLite and
/// (when a test database is given) on PostgreSQL. Their fills write straight into the real
/// schema, so a fill that a migration broke fails here instead of in `make bench`.
#[test]
fn the_job_benchmarks_run_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = [
        "drain-1",
        "drain-1-history",
        "drain-4",
        "enqueue-batch",
        "enqueue-single",
        "http-batch",
        "http-roundtrip",
    ];
    let mut urls = vec![None];
    if let Ok(pg) = std::env::var("WP_LITE_TEST_POSTGRES_URL") {
        urls.push(Some(pg));
    }
    for url in urls {
        let mut args: Vec<&str> = Vec::new();
        if let Some(u) = &url {
            args.extend(["--database-url", u.as_str()]);
        }
        args.extend(["--log-level", "warn", "bench", "--ops", "100", "--json"]);
        for s in scenarios {
            args.extend(["--scenario", s]);
        }
        let o = wp(dir.path(), &args);
        assert!(o.status.success(), "{url:?}: {}", text(&o));
        let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("a JSON array");
        let mut names: Vec<&str> = rows
            .iter()
            .map(|r| r["scenario"].as_str().expect("a scenario name"))
            .collect();
        names.sort_unstable();
        assert_eq!(names, scenarios, "{url:?}");
        for r in &rows {
            assert_eq!(r["ops"], 100, "{url:?}: {r}");
            assert!(r["ops_per_s"].as_f64().unwrap() > 0.0, "{url:?}: {r}");
        }
    }
}

/// Several processes starting at once on a new data directory agree on one token, and
/// none of them ever takes an empty one.
#[test]
fn processes_racing_on_a_new_data_directory_agree_on_one_token() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..8)
            .map(|_| {
                Command::new(BIN)
                    .current_dir(dir.path())
                    .args(["admin-token"])
                    .env_remove("WP_LITE_DATABASE_URL")
                    .env_remove("WP_LITE_ADMIN_TOKEN")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let tokens: std::collections::BTreeSet<String> = children
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                assert!(o.status.success(), "{}", text(&o));
                String::from_utf8_lossy(&o.stdout).trim().to_string()
            })
            .collect();
        assert_eq!(tokens.len(), 1, "{tokens:?}");
        assert!(tokens.iter().all(|t| t.len() >= 43), "{tokens:?}");
    }
    // An empty token file is refused, not taken as the token.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wp-lite.db.admin-token"), " \n").unwrap();
    let o = wp(dir.path(), &["admin-token"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn admin_token_is_generated_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let a = wp(dir.path(), &["admin-token"]);
    assert!(a.status.success());
    let b = wp(dir.path(), &["admin-token"]);
    assert_eq!(a.stdout, b.stdout);
    let token = String::from_utf8_lossy(&a.stdout).trim().to_string();
    assert!(token.len() >= 43, "too short: {token}");
    let path = dir.path().join("wp-lite.db.admin-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let o = wp(dir.path(), &["admin-token", "--admin-token", "configured"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "configured");
}

impl Server {
    fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        Server::start_args(dir, &[], &[], extra_env)
    }

    /// `wp-lite --log-format json <global> serve --bind 127.0.0.1:0 <serve>` in `dir`.
    fn start_args(
        dir: &Path,
        global: &[&str],
        serve: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir)
            .args(["--log-format", "json"])
            .args(global)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(serve)
            .env_remove("WP_LITE_DATABASE_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Server::spawn(&mut cmd)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_uses_the_generated_token_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let token = std::fs::read_to_string(dir.path().join("wp-lite.db.admin-token")).unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/v1/worker/queues", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/worker/queues", server.base))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A stop waits for requests in flight, not for connections that have said nothing (an
/// HTTP client's spare pooled connection, a browser's preconnect) or that sit idle between
/// requests: with a minute of idle and shutdown timeout, serve still exits at once.
#[test]
fn sigterm_does_not_wait_for_silent_or_idle_connections() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut served = Server::start_args(
        dir.path(),
        &[],
        &[
            "--idle-timeout",
            "60s",
            "--shutdown-timeout",
            "60s",
            "--workers",
            "none",
        ],
        &[],
    );
    let addr = served.base.trim_start_matches("http://").to_string();
    let _silent = std::net::TcpStream::connect(&addr).unwrap();
    // Accepted after the silent one: once it is answered, both are in the server's hands.
    let mut kept = std::net::TcpStream::connect(&addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    signal(served.child.id(), "TERM");
    let status = common::wait_bounded(&mut served.child, 10, "serve after SIGTERM");
    assert!(status.success(), "{status}");
}

/// `serve --no-migrate` on a database that is behind starts: `/healthz` 200, `/readyz` and
/// the API 503 `unavailable` naming the pending migrations (unauthenticated callers too);
/// `wp-lite migrate` in another process opens it within a few seconds, no restart, and
/// the workers start (a job is leased and completed by the queue worker in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_no_migrate_waits_for_another_process_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("WP_LITE_ADMIN_TOKEN", "no-migrate-admin-token")];
    let served = Server::start_args(dir.path(), &["--no-migrate"], &[], &env);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("{}{path}", served.base));
        async move {
            let r = http
                .get(url)
                .bearer_auth("no-migrate-admin-token")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            (
                status,
                retry,
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    let (status, retry, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(retry);
    assert!(
        body["pending_migrations"][0]
            .as_str()
            .unwrap()
            .starts_with("V1__"),
        "{body}"
    );
    for path in [
        "/v1/worker/jobs",
        "/v1/worker/queues",
        "/v1/admin/users",
        "/v1/metrics",
    ] {
        let (status, retry, body) = get(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(retry, "{path}");
        assert_eq!(body["error"]["code"], "unavailable", "{path}: {body}");
        assert!(
            s(&body["error"]["message"]).contains("migrations pending"),
            "{body}"
        );
    }
    // Unauthenticated: still 503 (nothing is revealed), unknown routes still 404.
    let r = http
        .get(format!("{}/v1/worker/jobs", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = http
        .get(format!("{}/v1/nope", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let o = wp(dir.path(), &["migrate"]);
    assert!(o.status.success(), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = get("/readyz").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r: Value = http
        .post(format!("{}/v1/worker/jobs", served.base))
        .bearer_auth("no-migrate-admin-token")
        .json(&json!({ "type": "notifications.send", "input": { "user_id": "u1", "title": "t", "body": "b" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = s(&r["job_id"]);
    // The queue worker started once the schema was current, and runs the job.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, job) = get(&format!("/v1/worker/jobs/{id}")).await;
        if job["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the job was not run: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Two OS processes write one database file while one of them is under load: no client
/// ever sees an error, and every job is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_write_one_database_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("WP_LITE_ADMIN_TOKEN", "two-process-admin-token")];
    let a = Server::start(dir.path(), &env);
    let b = Server::start(dir.path(), &env);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    const PER_CLIENT: usize = 150;
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (http, base_a, base_b) = (http.clone(), a.base.clone(), b.base.clone());
        tasks.push(tokio::spawn(async move {
            // Even clients run enqueue → lease → complete on A; odd ones enqueue on B.
            let base = if c % 2 == 0 { base_a } else { base_b };
            for i in 0..PER_CLIENT {
                let r = http
                    .post(format!("{base}/v1/worker/jobs"))
                    .bearer_auth("two-process-admin-token")
                    .json(&json!({ "type": format!("t{c}"), "input": { "i": i } }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
                if c % 2 == 0 {
                    let r: Value = http
                        .post(format!("{base}/v1/worker/jobs/lease"))
                        .bearer_auth("two-process-admin-token")
                        .json(&json!({ "worker_id": format!("w{c}"), "job_types": [format!("t{c}")] }))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let job = &r["jobs"][0];
                    let r = http
                        .post(format!("{base}/v1/worker/jobs/{}/complete", job["job_id"].as_str().unwrap()))
                        .bearer_auth("two-process-admin-token")
                        .json(&json!({ "worker_id": format!("w{c}"), "lease_token": job["lease_token"] }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q: Value = http
        .get(format!("{}/v1/worker/queues", a.base))
        .bearer_auth("two-process-admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    for item in items {
        let c: usize = item["type"].as_str().unwrap()[1..].parse().unwrap();
        let counts = &item["counts"];
        if c.is_multiple_of(2) {
            assert_eq!(counts["succeeded"], PER_CLIENT as i64, "{item}");
        } else {
            assert_eq!(counts["queued"], PER_CLIENT as i64, "{item}");
        }
    }
    let (sa, sb) = tokio::task::spawn_blocking(move || (a.terminate(), b.terminate()))
        .await
        .unwrap();
    assert_eq!(sa.code(), Some(0));
    assert_eq!(sb.code(), Some(0));
}

// ---- workers and `wp-lite run` ----

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("wp.db").display())
}

/// Opens (and migrates) the test's database through the library.
fn open_store(dir: &Path) -> Arc<dyn Store> {
    storage::open(&db_url(dir), &OpenOptions { migrate: true }).expect("open the database")
}

fn new_job(job_type: &str, input: Value) -> NewJob {
    NewJob {
        id: None,
        job_type: JobType::parse("type", job_type).unwrap(),
        priority: 5,
        max_attempts: 3,
        available_at: None,
        meta: JobMeta::default(),
        input,
    }
}

/// Enqueues `demo.sleep` jobs with these inputs; returns their ids in order.
fn enqueue_demo(store: &Arc<dyn Store>, inputs: Vec<Value>) -> Vec<JobId> {
    let jobs = inputs
        .into_iter()
        .map(|i| new_job("demo.sleep", i))
        .collect();
    store
        .enqueue_jobs(jobs, Utc::now())
        .unwrap()
        .into_iter()
        .map(|e| match e {
            Enqueued::Created(j) => j.id,
            Enqueued::Replayed(_) => panic!("replayed"),
        })
        .collect()
}

fn event_names(store: &Arc<dyn Store>, id: JobId) -> Vec<String> {
    store
        .job_events(id)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// A `wp-lite run` child with a JSON debug log read line by line on a thread.
struct Runner {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Runner {
    fn start(dir: &Path, args: &[&str]) -> Runner {
        let url = db_url(dir);
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .args([
                "--database-url",
                &url,
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "run",
            ])
            .args(args)
            .env_remove("WP_LITE_DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("WORKER_NAME")
            .env_remove("WORKER_LOG_LEVEL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wp-lite run");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Runner {
            child,
            log,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for a log line whose message starts with `prefix`.
    fn wait_for_log(&mut self, prefix: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["message"].as_str().is_some_and(|m| m.starts_with(prefix)) {
                            return v;
                        }
                    }
                }
                Err(e) => panic!(
                    "no log line '{prefix}…' within {within:?} ({e}); the log so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits (bounded) for the child to exit.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line, including what is still buffered (call after the child exited).
    fn full_log(&mut self) -> String {
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // A failed test must not leave the child running.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn workers_lists_the_built_in_workers_with_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let o = wp(dir.path(), &["workers"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for (name, description) in [
        (
            "jobs.maintenance",
            wp_lite::worker::maintenance::DESCRIPTION,
        ),
        ("demo.sleep", wp_lite::worker::demo::DESCRIPTION),
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("`wp-lite workers` does not list {name}:\n{out}"));
        let rest = line[name.len()..].trim();
        assert!(!rest.is_empty(), "{name} has no description: {line}");
        assert_eq!(rest, description, "{line}");
    }
    assert!(
        out.contains("lease"),
        "jobs.maintenance says what it does: {out}"
    );
    assert!(
        out.contains("sleeps"),
        "demo.sleep says what it does: {out}"
    );
}

#[test]
fn run_with_an_unknown_name_exits_2_and_lists_the_known_names() {
    let dir = tempfile::tempdir().unwrap();
    let o = wp(dir.path(), &["run", "--name", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    for needle in ["nope", "jobs.maintenance", "demo.sleep"] {
        assert!(err.contains(needle), "stderr lacks {needle}: {err}");
    }
    // The same through WORKER_NAME.
    let o = Command::new(BIN)
        .current_dir(dir.path())
        .arg("run")
        .env("WORKER_NAME", "nope.either")
        .env_remove("WP_LITE_DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("nope.either") && err.contains("demo.sleep"),
        "{err}"
    );
}

#[test]
fn run_maintenance_once_reclaims_an_expired_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // A job leased an hour ago for a minute, by a worker that has gone.
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    let created = store
        .enqueue_jobs(vec![new_job("email.send", json!({}))], an_hour_ago)
        .unwrap();
    let id = created[0].job().id;
    let claim = Claim {
        worker_id: wp_lite::domain::WorkerId::local("gone-worker"),
        types: vec![],
        limit: 1,
        lease: chrono::Duration::seconds(60),
    };
    let leased = store.claim_jobs(&claim, an_hour_ago).unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(store.get_job(id).unwrap().status, JobStatus::Leased);
    store.close();
    drop(store);

    let url = db_url(dir.path());
    let o = wp(
        dir.path(),
        &[
            "--database-url",
            &url,
            "run",
            "--name",
            "jobs.maintenance",
            "--once",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let store = open_store(dir.path());
    let job = store.get_job(id).unwrap();
    assert_eq!(job.status, JobStatus::Queued, "{job:?}");
    assert_eq!(job.last_error.as_deref(), Some("lease_expired"));
    assert_eq!(job.lease_owner, None);
    let events = event_names(&store, id);
    assert_eq!(
        events.last().map(String::as_str),
        Some("expired"),
        "{events:?}"
    );
    store.close();
}

#[test]
fn sigterm_stops_run_within_the_shutdown_timeout_and_releases_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let id = enqueue_demo(&store, vec![json!({ "ms": 600_000 })])[0];
    store.close();
    drop(store);

    let mut runner = Runner::start(
        dir.path(),
        &["--name", "demo.sleep", "--shutdown-timeout", "1s"],
    );
    let started = runner.wait_for_log("job started", Duration::from_secs(60));
    assert_eq!(started["job.id"], id.to_string(), "{started}");
    let asked = Instant::now();
    signal(runner.pid(), "TERM");
    let status = runner
        .wait_exit(Duration::from_secs(20))
        .expect("wp-lite run did not stop after SIGTERM");
    let took = asked.elapsed();
    let log = runner.full_log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        took < Duration::from_secs(10),
        "stopping took {took:?} with --shutdown-timeout 1s"
    );
    assert!(log.contains("starting worker 'demo.sleep'"), "{log}");
    assert!(log.contains("stopping worker 'demo.sleep'"), "{log}");

    let store = open_store(dir.path());
    let job = store.get_job(id).unwrap();
    assert_eq!(
        job.status,
        JobStatus::Queued,
        "the lease was not given back: {job:?}"
    );
    assert_eq!(job.lease_owner, None);
    assert!(
        job.available_at <= Utc::now(),
        "released jobs are available at once"
    );
    let events = event_names(&store, id);
    assert_eq!(events, ["queued", "leased", "released"]);
    store.close();
}

#[test]
fn a_second_sigterm_during_a_stuck_job_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    enqueue_demo(&store, vec![json!({ "ms": 600_000 })]);
    store.close();
    drop(store);

    let mut runner = Runner::start(
        dir.path(),
        &["--name", "demo.sleep", "--shutdown-timeout", "120s"],
    );
    runner.wait_for_log("job started", Duration::from_secs(60));
    signal(runner.pid(), "TERM");
    runner.wait_for_log("stop requested", Duration::from_secs(10));
    let asked = Instant::now();
    signal(runner.pid(), "TERM");
    let status = runner
        .wait_exit(Duration::from_secs(10))
        .expect("a second SIGTERM did not end wp-lite run at once (the shutdown timeout is 120 s)");
    assert!(asked.elapsed() < Duration::from_secs(10));
    let log = runner.full_log();
    assert_eq!(status.code(), Some(130), "{log}");
}

#[test]
fn two_run_processes_drain_one_database_and_never_run_a_job_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let ids = enqueue_demo(&store, (0..300).map(|i| json!({ "ms": i % 4 })).collect());
    store.close();
    drop(store);

    let mut a = Runner::start(dir.path(), &["--name", "demo.sleep", "--once"]);
    let mut b = Runner::start(dir.path(), &["--name", "demo.sleep", "--once"]);
    for r in [&mut a, &mut b] {
        let status = r
            .wait_exit(Duration::from_secs(180))
            .expect("wp-lite run --once did not finish");
        let log = r.full_log();
        assert_eq!(status.code(), Some(0), "{log}");
    }

    let store = open_store(dir.path());
    let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let job = store.get_job(*id).unwrap();
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
        assert_eq!(job.attempts, 1, "{job:?}");
        let events = store.job_events(*id).unwrap();
        let leases: Vec<_> = events.iter().filter(|e| e.event == "leased").collect();
        assert_eq!(
            leases.len(),
            1,
            "job {id} was leased {} times: {events:?}",
            leases.len()
        );
        let worker = leases[0]
            .details
            .as_ref()
            .and_then(|d| d["worker_id"].as_str())
            .unwrap_or("?")
            .to_string();
        *by_worker.entry(worker).or_default() += 1;
    }
    eprintln!("jobs per worker process: {by_worker:?}");
    store.close();
}

#[test]
fn a_killed_run_process_turns_not_alive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut runner = Runner::start(
        dir.path(),
        &["--name", "demo.sleep", "--worker-heartbeat", "200ms"],
    );
    let pid = runner.pid() as i64;
    let row = |store: &Arc<dyn Store>| {
        store
            .list_worker_processes(Utc::now() - chrono::Duration::hours(1))
            .unwrap()
            .into_iter()
            .find(|p| p.pid == pid)
    };

    // Bounded polls: liveness has no event to wait for but the row itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    let alive = loop {
        if let Some(p) = row(&store).filter(|p| p.alive(Utc::now())) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "wp-lite run never showed as alive"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(alive.name, "demo.sleep");
    assert_eq!(alive.state, "running");
    assert_eq!(alive.heartbeat_ms, 200);
    // Still alive a few beats later: it keeps reporting.
    std::thread::sleep(Duration::from_millis(1_000));
    let p = row(&store).unwrap();
    assert!(p.alive(Utc::now()), "a running process went silent: {p:?}");
    assert!(p.last_heartbeat_at > alive.last_heartbeat_at, "{p:?}");

    signal(runner.pid(), "KILL");
    let _ = runner
        .wait_exit(Duration::from_secs(10))
        .expect("SIGKILL ends it");
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let p = row(&store).unwrap();
        if !p.alive(Utc::now()) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "a killed process still shows as alive: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Not a clean stop: it is the missed heartbeats that tell.
    assert_eq!(dead.state, "running", "{dead:?}");
    store.close();
}

// ---- backup ----

/// `wp-lite backup` while four threads enqueue and complete jobs on the same file: the copy
/// opens, passes `PRAGMA integrity_check` (the command checks it too) and holds every job
/// committed before the backup started, in the state it had then or later.
#[test]
fn backup_copies_a_live_database_consistently() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // Enough rows that the copy takes many steps.
    let big = json!({ "pad": "x".repeat(400) });
    for _ in 0..20 {
        enqueue_demo(&store, vec![big.clone(); 1000]);
    }
    let committed: Arc<Mutex<Vec<(JobId, JobStatus)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, committed, stop) = (store.clone(), committed.clone(), stop.clone());
            std::thread::spawn(move || {
                let job_type = format!("backup.t{w}");
                while !stop.load(Ordering::Relaxed) {
                    let now = Utc::now();
                    let e = store
                        .enqueue_jobs(vec![new_job(&job_type, json!({ "w": w }))], now)
                        .unwrap();
                    let id = e[0].job().id;
                    committed.lock().unwrap().push((id, JobStatus::Queued));
                    let claim = Claim {
                        worker_id: wp_lite::domain::WorkerId::local(format!("w{w}")),
                        types: vec![JobType::parse("type", &job_type).unwrap()],
                        limit: 1,
                        lease: chrono::Duration::seconds(60),
                    };
                    let got = store.claim_jobs(&claim, now).unwrap();
                    let fence = wp_lite::domain::Fence {
                        worker_id: wp_lite::domain::WorkerId::local(format!("w{w}")),
                        lease_token: None,
                    };
                    store.complete_job(got[0].id, &fence, None, now).unwrap();
                    committed.lock().unwrap().push((id, JobStatus::Succeeded));
                }
            })
        })
        .collect();
    // Let the writers get going, then note what is committed and start the backup.
    while committed.lock().unwrap().len() < 200 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before: Vec<(JobId, JobStatus)> = committed.lock().unwrap().clone();
    let target = dir.path().join("copy.db");
    let o = Command::new(BIN)
        .args(["--database-url", &db_url(dir.path()), "backup", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    let during = committed.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("integrity check ok"), "{}", text(&o));
    assert!(
        during > before.len(),
        "the writers kept committing while the backup ran"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Nothing but the copy was left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("copy.db"))
        .collect();
    assert_eq!(names, ["copy.db"]);

    let copy = storage::open(
        &format!("sqlite://{}", target.display()),
        &OpenOptions { migrate: false },
    )
    .unwrap();
    assert_eq!(
        copy.schema_version().unwrap(),
        store.schema_version().unwrap()
    );
    for (id, status) in &before {
        let j = copy
            .get_job(*id)
            .unwrap_or_else(|e| panic!("{id} is missing: {e}"));
        if *status == JobStatus::Succeeded {
            assert_eq!(j.status, JobStatus::Succeeded, "{id}");
        }
    }
    copy.close();
    store.close();

    // An existing file is never overwritten; PostgreSQL points to pg_dump.
    let o = Command::new(BIN)
        .args(["--database-url", &db_url(dir.path()), "backup", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("refusing to overwrite"), "{}", text(&o));
    let o = Command::new(BIN)
        .args([
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
            "backup",
            "--to",
            "x.db",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pg_dump"), "{}", text(&o));
}

// ---- storage faults ----

/// A small tmpfs, unmounted when dropped (None where mounting is not allowed).
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size: &str) -> Option<TinyDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyDisk { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// One enqueue while a storage fault may be in force: the job's id (201), or None for 503
/// `unavailable` with `Retry-After`; any other answer fails the test.
async fn enqueue_during_fault(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    input: Value,
) -> Option<String> {
    let r = http
        .post(format!("{base}/v1/worker/jobs"))
        .bearer_auth(token)
        .json(&json!({ "type": "fault", "input": input }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").is_some();
    let body: Value = r.json().await.unwrap();
    match status {
        201 => Some(s(&body["job_id"])),
        503 => {
            assert!(retry, "503 without Retry-After: {body}");
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            None
        }
        other => panic!("an enqueue during a storage fault answered {other}: {body}"),
    }
}

/// Polls `GET path` until it answers `want`; meanwhile only 200 or 503 are allowed.
async fn wait_for_status(http: &reqwest::Client, base: &str, token: &str, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 200 || status == 503, "{path} answered {status}");
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Enqueues until one is acknowledged again (the fault has cleared); returns its id.
async fn enqueue_until_accepted(http: &reqwest::Client, base: &str, token: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(id) = enqueue_during_fault(http, base, token, json!({ "after": true })).await {
            return id;
        }
        assert!(Instant::now() < deadline, "service did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every acknowledged job reads back.
async fn assert_jobs_kept(http: &reqwest::Client, base: &str, token: &str, ids: &[String]) {
    for id in ids {
        let r = http
            .get(format!("{base}/v1/worker/jobs/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged job {id} is missing");
    }
}

/// A full disk under a live `serve`: enqueues answer 201 or 503 `unavailable` with
/// `Retry-After` (never a 500), `/readyz` turns 503, and once space is freed service
/// comes back by itself; every job that was acknowledged reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_and_service_resumes_when_space_is_freed() {
    const TOKEN: &str = "full-disk-admin-token";
    let Some(disk) = TinyDisk::mount("6m") else {
        eprintln!("storage faults: SKIPPED (cannot mount a tmpfs here; needs root)");
        return;
    };
    let dir = disk.path().to_path_buf();
    let served = Server::start_args(
        &dir,
        &[],
        &["--workers", "none"],
        &[("WP_LITE_ADMIN_TOKEN", TOKEN)],
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = served.base.clone();
    // Leave about 1 MB free.
    let free = {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; free.saturating_sub(1 << 20) as usize]).unwrap();

    let pad = "x".repeat(20_000);
    let (mut acked, mut unavailable) = (Vec::new(), 0);
    for i in 0..400 {
        match enqueue_during_fault(&http, &base, TOKEN, json!({ "i": i, "pad": pad })).await {
            Some(id) => acked.push(id),
            None => {
                unavailable += 1;
                if unavailable >= 5 {
                    break;
                }
            }
        }
    }
    assert!(
        unavailable >= 5,
        "the disk never filled ({} jobs acknowledged)",
        acked.len()
    );
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Reads still work while writes cannot.
    assert_jobs_kept(&http, &base, TOKEN, &acked[..1]).await;

    std::fs::remove_file(&filler).unwrap();
    enqueue_until_accepted(&http, &base, TOKEN).await;
    wait_for_status(&http, &base, TOKEN, "/readyz", 200).await;
    assert_jobs_kept(&http, &base, TOKEN, &acked).await;
    let status = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    drop(disk);
}

/// Reads from `tcp` until the server closes the connection (or 20 s pass, which fails).
fn read_until_closed(tcp: &mut std::net::TcpStream, what: &str) -> Vec<u8> {
    use std::io::Read;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("{what}: the server kept the connection open ({e})"),
        }
    }
}

#[test]
fn slow_and_idle_clients_are_disconnected_after_the_idle_timeout() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let served = Server::start_args(
        dir.path(),
        &[],
        &["--idle-timeout", "1s", "--workers", "none"],
        &[("WP_LITE_ADMIN_TOKEN", "idle-admin-token-0123456789")],
    );
    let addr = served.base.trim_start_matches("http://").to_string();
    let connect = || std::net::TcpStream::connect(&addr).unwrap();

    // Connects and says nothing.
    let mut silent = connect();
    assert!(read_until_closed(&mut silent, "a silent client").is_empty());

    // Sends half a request head and stalls.
    let mut half = connect();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(read_until_closed(&mut half, "half a header").is_empty());

    // One request answered, then the kept-alive connection stays silent.
    let mut kept = connect();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer =
        String::from_utf8_lossy(&read_until_closed(&mut kept, "an idle keep-alive")).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A body that stops arriving: the handler's read gives up with a 400, nothing is enqueued.
    let mut slow = connect();
    slow.write_all(
        b"POST /v1/worker/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer idle-admin-token-0123456789\r\n\
          Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"type\": \"a\",",
    )
    .unwrap();
    let answer =
        String::from_utf8_lossy(&read_until_closed(&mut slow, "a stalled body")).to_string();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_payload"), "{answer}");

    // A client that talks in time is served as before.
    let mut prompt = connect();
    prompt
        .write_all(
            b"GET /v1/worker/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
              Authorization: Bearer idle-admin-token-0123456789\r\n\r\n",
        )
        .unwrap();
    let answer =
        String::from_utf8_lossy(&read_until_closed(&mut prompt, "a closing request")).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""items":[]"#), "{answer}");
}

#[test]
fn a_nul_byte_in_a_header_is_a_400_before_any_handler() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let served = Server::start_args(
        dir.path(),
        &[],
        &["--workers", "none"],
        &[("WP_LITE_ADMIN_TOKEN", "nul-admin-token-0123456789")],
    );
    let addr = served.base.trim_start_matches("http://").to_string();
    for header in [
        &b"Authorization: Bearer nul-admin-token\x000123456789"[..],
        b"X-Request-Id: abc\x00def",
        b"X-Admin-Key: \x00",
        b"Content-Type: application/json\x00",
    ] {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        let mut req = b"GET /v1/worker/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
        req.extend_from_slice(header);
        req.extend_from_slice(b"\r\n\r\n");
        tcp.write_all(&req).unwrap();
        let answer =
            String::from_utf8_lossy(&read_until_closed(&mut tcp, "a NUL header")).to_string();
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{:?}: {answer}",
            String::from_utf8_lossy(header)
        );
    }
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, on a free
/// port), so it can be stopped and started under load without touching the machine's.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// None where no PostgreSQL server binaries are installed.
    fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())?;
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let pg = PrivatePostgres { dir, bin, port };
        // initdb refuses to run as root: the cluster belongs to the postgres user there.
        if pg.as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(pg.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
        }
        let data = pg.data();
        let ok = pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        (ok && pg.ctl("start")).then_some(pg)
    }

    fn as_root(&self) -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of the server's programs (as postgres when we are root).
    fn run(&self, program: &str, args: &[&str]) -> bool {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `pg_ctl start` (waiting until it accepts connections) or `pg_ctl stop -m fast`.
    fn ctl(&self, action: &str) -> bool {
        let data = self.data();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        match action {
            "start" => self.run(
                "pg_ctl",
                &[
                    "-D", &data, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
                ],
            ),
            _ => self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// PostgreSQL stopped under load: while it is down every request answers 503
/// `unavailable` with `Retry-After` (never a 500) and `/readyz` is 503; when it is back,
/// service resumes by itself without a restart, and every job that was acknowledged reads
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_is_503_and_service_resumes_when_it_is_back() {
    let Some(pg) = PrivatePostgres::start() else {
        eprintln!(
            "PostgreSQL stopped under load: SKIPPED (no PostgreSQL server binaries to start a private server)"
        );
        return;
    };
    const TOKEN: &str = "pg-down-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let served = Server::start_args(
        dir.path(),
        &["--database-url", &pg.url()],
        &["--workers", "none"],
        &[("WP_LITE_ADMIN_TOKEN", TOKEN)],
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = served.base.clone();

    // Four producers enqueue until told to stop; each answer is 201 or 503.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..4 {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let (mut acked, mut unavailable, mut i) = (Vec::new(), 0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                match enqueue_during_fault(&http, &base, TOKEN, json!({ "p": p, "i": i })).await {
                    Some(id) => acked.push(id),
                    None => {
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acked, unavailable)
        }));
    }
    wait_for_status(&http, &base, TOKEN, "/v1/worker/jobs?limit=1", 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(
        tokio::task::block_in_place(|| pg.ctl("stop")),
        "pg_ctl stop"
    );
    wait_for_status(&http, &base, TOKEN, "/readyz", 503).await;
    // Reads fail the same way as writes.
    let r = http
        .get(format!("{base}/v1/worker/queues"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());

    assert!(
        tokio::task::block_in_place(|| pg.ctl("start")),
        "pg_ctl start"
    );
    wait_for_status(&http, &base, TOKEN, "/readyz", 200).await;
    wait_for_status(&http, &base, TOKEN, "/v1/worker/queues", 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut unavailable) = (Vec::new(), 0);
    for p in producers {
        let (a, u) = p.await.unwrap();
        acked.extend(a);
        unavailable += u;
    }
    assert!(unavailable > 0, "no request noticed PostgreSQL was down");
    assert_jobs_kept(&http, &base, TOKEN, &acked).await;
    // Enqueues after the restart went through again.
    enqueue_until_accepted(&http, &base, TOKEN).await;
    let status = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    drop(pg);
}

/// A database file that is read-only (a restore with the wrong owner, a mount gone
/// read-only): `serve` starts, reads work, every write is 503 `unavailable` with
/// `Retry-After` and `/readyz` is 503; once the file is writable again the writer opens it
/// anew and service resumes without a restart, with nothing lost. (As root, which file
/// modes do not stop, the server runs as `nobody`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_file_is_503_and_service_resumes_when_it_is_writable() {
    use std::os::unix::fs::PermissionsExt;
    const TOKEN: &str = "read-only-admin-token-0123456789";
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let dir = tempfile::tempdir().unwrap();
    // A copy of the binary the server's user can run, in a directory it owns.
    let bin = dir.path().join("wp-lite");
    std::fs::copy(BIN, &bin).unwrap();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(dir.path(), 0o777);
    let serve = || {
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        cmd.current_dir(dir.path())
            .args(["--log-format", "json", "serve", "--bind", "127.0.0.1:0"])
            .args(["--workers", "none"])
            .env_remove("WP_LITE_DATABASE_URL")
            .env_remove("RUST_LOG")
            .env("WP_LITE_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Server::spawn(&mut cmd)
    };
    if root
        && !Command::new("setpriv")
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        eprintln!("read-only database: SKIPPED (running as root without setpriv)");
        return;
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // A database with one job in it, then made read-only.
    let first = serve();
    let first_id = enqueue_during_fault(&http, &first.base, TOKEN, json!({ "n": 1 }))
        .await
        .expect("a writable database takes a job");
    assert_eq!(
        tokio::task::spawn_blocking(move || first.terminate())
            .await
            .unwrap()
            .code(),
        Some(0)
    );
    let db = dir.path().join("wp-lite.db");
    chmod(&db, 0o444);

    let served = serve();
    let base = served.base.clone();
    for n in 0..3 {
        let got = enqueue_during_fault(&http, &base, TOKEN, json!({ "n": 100 + n })).await;
        assert_eq!(got, None, "a write to a read-only file was acknowledged");
    }
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Reads still work.
    assert_jobs_kept(&http, &base, TOKEN, std::slice::from_ref(&first_id)).await;

    chmod(&db, 0o644);
    let recovered = enqueue_until_accepted(&http, &base, TOKEN).await;
    wait_for_status(&http, &base, TOKEN, "/readyz", 200).await;
    assert_jobs_kept(&http, &base, TOKEN, &[first_id, recovered]).await;
    let queues: Value = http
        .get(format!("{base}/v1/worker/queues"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queues["items"][0]["counts"]["queued"], 2, "{queues}");
    assert_eq!(
        tokio::task::spawn_blocking(move || served.terminate())
            .await
            .unwrap()
            .code(),
        Some(0)
    );
}
