//! Telemetry through the real binary: a `wp-lite serve` with `--metrics-bind`, a broadcast
//! delivered by a separate `wp-lite run` process and jobs run over HTTP. The JSON summary,
//! the workers summary and the Prometheus text (admin route, `/v1/metrics` and the plain
//! `/metrics` listener) must count exactly what the test did, pass `promtool check
//! metrics`, and never go backwards when `serve` restarts on the same database. Also:
//! `promtool check rules` on the alert rules, and the Grafana dashboard and the alert
//! rules only use metric names the Prometheus text can contain.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/run` installs it). Without it
//! the promtool checks fail, unless `WP_LITE_SKIP_PROMTOOL=1` is set.

mod common;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");
const ADMIN: &str = "telemetry-admin-token-0123456789abcdef";
/// The original metric names that keep their `_ms` unit for existing dashboards; promtool's
/// unit-name lint on them is the one complaint allowed.
const MS_NAMES: [&str; 2] = ["ai_worker_stage_avg_ms", "ai_worker_job_duration_ms_avg"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("wp.db").display())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `wp-lite --database-url … ARGS` to completion, with a clean environment.
fn wp(dir: &Path, args: &[&str]) -> Output {
    let url = db_url(dir);
    Command::new(BIN)
        .current_dir(dir)
        .args(["--database-url", &url])
        .args(args)
        .env_remove("WP_LITE_DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("WORKER_NAME")
        .env_remove("NOTIFICATIONS_BROADCAST_IMMEDIATE")
        .env_remove("NOTIFICATIONS_BROADCAST_INTERVAL")
        .env("WP_LITE_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run wp-lite")
}

/// A port nothing listens on right now (bound to port 0, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `wp-lite serve --workers none --metrics-bind …` child; its address is read from its
/// JSON log (the metrics listener is bound before that line is written).
struct Server {
    child: Child,
    base: String,
    metrics: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let url = db_url(dir);
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .args(["--database-url", &url, "--log-format", "json", "serve"])
            .args(["--bind", "127.0.0.1:0", "--workers", "none"])
            .args(["--metrics-bind", &metrics_addr])
            .env_remove("WP_LITE_DATABASE_URL")
            .env_remove("WP_LITE_WORKERS")
            .env_remove("RUST_LOG")
            .env("WP_LITE_ADMIN_TOKEN", ADMIN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wp-lite serve");
        let base = common::serving_base(&mut child);
        Server {
            child,
            base,
            metrics: format!("http://{metrics_addr}"),
        }
    }

    fn pid(&self) -> i64 {
        self.child.id() as i64
    }

    /// SIGTERM, then waits for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        common::signal(self.child.id(), "TERM");
        common::wait_bounded(&mut self.child, 60, "serve after SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test must not leave the child running.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP client for one server, with the admin token.
struct Http {
    c: reqwest::Client,
    base: String,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            c: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: base.to_string(),
        }
    }

    /// Sends with the admin token; returns (status, JSON body or Null).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .c
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} → {status}: {v}"
        );
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::POST, path, Some(body)).await
    }

    /// The summary, once this server's own jobs.maintenance process has registered
    /// (it does so shortly after start; a bounded poll, as there is no event to wait for).
    async fn summary_with_maintenance_of(&self, pid: i64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let s = self.get("/v1/admin/telemetry/summary").await;
            let registered = s["workers"]["processes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "jobs.maintenance" && p["pid"] == pid && p["alive"] == true);
            if registered {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve (pid {pid}) never showed a live jobs.maintenance process: {s:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// GET of a Prometheus text: (status, content type, body); `auth` adds the admin token.
    async fn text(&self, path: &str, auth: bool) -> (u16, String, String) {
        let mut rb = self.c.get(format!("{}{path}", self.base));
        if auth {
            rb = rb.bearer_auth(ADMIN);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, r.text().await.unwrap())
    }

    async fn enqueue(&self, job_type: &str) -> String {
        let v = self
            .post(
                "/v1/worker/jobs",
                json!({ "type": job_type, "input": {}, "max_attempts": 3 }),
            )
            .await;
        v["job_id"].as_str().unwrap().to_string()
    }

    /// Leases exactly `n` jobs of `job_type`; returns (job_id, lease_token) pairs.
    async fn lease(&self, job_type: &str, n: usize) -> Vec<(String, String)> {
        let v = self
            .post(
                "/v1/worker/jobs/lease",
                json!({ "worker_id": "telemetry-test", "job_types": [job_type], "limit": n, "lease_seconds": 600 }),
            )
            .await;
        let jobs = v["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), n, "leased {job_type}: {v}");
        jobs.iter()
            .map(|j| {
                (
                    j["job_id"].as_str().unwrap().to_string(),
                    j["lease_token"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn complete(&self, (id, token): &(String, String)) {
        self.post(
            &format!("/v1/worker/jobs/{id}/complete"),
            json!({ "worker_id": "telemetry-test", "lease_token": token, "result": { "ok": true } }),
        )
        .await;
    }

    async fn fail(&self, (id, token): &(String, String), retryable: bool) -> Value {
        self.post(
            &format!("/v1/worker/jobs/{id}/fail"),
            json!({ "worker_id": "telemetry-test", "lease_token": token, "error": "boom", "retryable": retryable }),
        )
        .await
    }
}

// ---- the Prometheus text ----

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples and the `# TYPE` of every family of a Prometheus text (format 0.0.4).
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('='), "bad labels: {s}");
        assert_eq!(chars.next(), Some('"'), "bad labels: {s}");
        let mut value = String::new();
        loop {
            match chars.next().unwrap_or_else(|| panic!("bad labels: {s}")) {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("bad labels: {s}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name.trim().to_string(), value);
    }
}

fn parse_exposition(t: &str) -> Exposition {
    let mut e = Exposition {
        samples: Vec::new(),
        types: BTreeMap::new(),
        helps: BTreeSet::new(),
    };
    for line in t.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            e.types.insert(name.to_string(), kind.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            e.helps.insert(rest.split(' ').next().unwrap().to_string());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.strip_suffix('}').unwrap())),
                None => (head, BTreeMap::new()),
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            e.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    e
}

impl Exposition {
    /// The value of the one sample with this name and exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert!(found.len() <= 1, "{name}{labels:?} appears twice");
        found.first().map(|s| s.value)
    }

    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in the Prometheus text"))
    }

    /// The family a sample belongs to (`x_bucket` → `x` for histograms).
    fn family_of(&self, sample: &str) -> String {
        if self.types.contains_key(sample) {
            return sample.to_string();
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                if self.types.contains_key(base) {
                    return base.to_string();
                }
            }
        }
        panic!("sample {sample} has no # TYPE line")
    }

    /// Every name a query could select: sample names and family names.
    fn names(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .map(|s| s.name.clone())
            .chain(self.types.keys().cloned())
            .collect()
    }

    /// The counters whose values come from the store (every process); the HTTP counters
    /// are this process's own and start again at zero with it.
    fn store_counters(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                let fam = self.family_of(&s.name);
                !fam.starts_with("wp_lite_http_")
                    && matches!(self.types[&fam].as_str(), "counter" | "histogram")
                    && !s.name.ends_with("_sum")
            })
            .collect()
    }
}

/// Checks the structure every text must have: HELP and TYPE for every family, the
/// original names with the right types.
fn assert_well_formed(e: &Exposition, t: &str) {
    for s in &e.samples {
        let fam = e.family_of(&s.name);
        assert!(e.helps.contains(&fam), "{fam} has no HELP line:\n{t}");
    }
    for (name, kind) in [
        ("ai_worker_jobs_total", "counter"),
        ("ai_worker_stage_avg_ms", "gauge"),
        ("ai_worker_stage_total", "counter"),
        ("ai_worker_job_duration_ms_avg", "gauge"),
        ("wp_lite_stage_duration_seconds", "histogram"),
    ] {
        assert_eq!(
            e.types.get(name).map(String::as_str),
            Some(kind),
            "# TYPE {name} {kind} missing:\n{t}"
        );
    }
}

// ---- promtool ----

fn promtool_skipped() -> bool {
    std::env::var("WP_LITE_SKIP_PROMTOOL").is_ok_and(|v| v == "1")
}

/// Runs promtool with `args` and `stdin`; None only when promtool is missing and
/// `WP_LITE_SKIP_PROMTOOL=1` (otherwise a missing promtool fails the test).
fn promtool(args: &[&str], stdin: &str) -> Option<Output> {
    let child = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && promtool_skipped() => {
            eprintln!("promtool is not installed; WP_LITE_SKIP_PROMTOOL=1 skips its checks");
            return None;
        }
        Err(e) => panic!(
            "promtool could not be run ({e}). Install Debian's `prometheus` package \
             (apt-get install prometheus), or set WP_LITE_SKIP_PROMTOOL=1 to skip these checks"
        ),
    };
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    Some(child.wait_with_output().unwrap())
}

/// `promtool check metrics` on `t`: nothing but the unit-name lint of the original `_ms`
/// names is allowed.
fn assert_promtool_accepts(t: &str, what: &str) {
    let Some(o) = promtool(&["check", "metrics"], t) else {
        return;
    };
    let out = text(&o);
    let complaints: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !MS_NAMES.iter().any(|n| {
                l.starts_with(&format!("{n} "))
                    && l.contains("should not contain abbreviated units")
            })
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "promtool check metrics complains about the text of {what}:\n{}\n--- the text:\n{t}",
        complaints.join("\n")
    );
    // 0 = clean, 3 = lint problems only (the allowed ones above); 1 = a parse error.
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "promtool check metrics exited {:?} on {what}: {out}",
        o.status
    );
}

// ---- PromQL ----

/// The metric names a PromQL expression selects (roughly: identifiers outside label
/// matchers, ranges, strings and grouping clauses that are not functions, aggregations or
/// keywords).
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const NOT_METRICS: [&str; 25] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "inf",
        "nan",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: char| {
        while *i < chars.len() && chars[*i] != close {
            *i += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => skip_to(&mut i, '}'),
            '[' => skip_to(&mut i, ']'),
            c if c.is_ascii_digit() || c == '.' || c == '$' => {
                // Numbers, durations and dashboard variables.
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "._$".contains(chars[i]))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let call = j < chars.len() && chars[j] == '(';
                if GROUPING.contains(&ident.as_str()) && call {
                    i = j;
                    skip_to(&mut i, ')');
                } else if !call && !NOT_METRICS.contains(&ident.to_ascii_lowercase().as_str()) {
                    names.insert(ident);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_names_are_extracted() {
    assert_eq!(
        promql_metric_names(
            r#"sum by (route, le) (rate(wp_lite_http_request_duration_seconds_bucket{route=~"/v1/.*"}[5m])) > bool 0.5 and on(type) x_total offset 5m"#
        ),
        BTreeSet::from([
            "wp_lite_http_request_duration_seconds_bucket".to_string(),
            "x_total".to_string()
        ])
    );
    assert_eq!(
        promql_metric_names(
            "histogram_quantile(0.95, sum without (instance) (rate(a_bucket[$__rate_interval])))"
        ),
        BTreeSet::from(["a_bucket".to_string()])
    );
}

// ---- the scenario ----

const USERS_CSV: &str = "id,email,is_active,plan\n\
    u1,u1@example.com,true,pro\n\
    u2,,true,free\n\
    u3,u3@example.com,1,pro\n\
    u4,,true,free\n\
    u5,,false,pro\n";

/// The counts of one queue item of `/v1/worker/queues` (or the summary's `queues`).
fn queue_counts(queues: &Value, job_type: &str) -> Value {
    queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["type"] == job_type)
        .unwrap_or_else(|| panic!("no queue {job_type} in {queues}"))["counts"]
        .clone()
}

fn counts(queued: i64, leased: i64, succeeded: i64, failed: i64, canceled: i64) -> Value {
    json!({ "queued": queued, "leased": leased, "succeeded": succeeded, "failed": failed, "canceled": canceled })
}

/// What the test has done so far, as the `workers.jobs` object must show it.
fn expected_jobs(started: i64, completed: i64, failed: i64, canceled: i64, retries: i64) -> Value {
    json!({ "started": started, "completed": completed, "failed": failed, "canceled": canceled, "tick_errors": 0, "retries": retries })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_and_prometheus_count_what_the_test_did_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), USERS_CSV).unwrap();
    let o = wp(dir.path(), &["users", "import", "users.csv"]);
    assert!(o.status.success(), "users import: {}", text(&o));

    let server = Server::start(dir.path());
    let api = Http::new(&server.base);

    // A broadcast to four active users, one inactive and one unknown, sent now; another
    // one stays a draft. `serve --workers none` does not deliver it: another process does.
    let bc = api
        .post(
            "/v1/admin/notifications/broadcasts",
            json!({ "title": "Maintenance", "body": "Tonight 22:00", "audience": { "type": "explicit_users", "user_ids": ["u1", "u2", "u3", "u4", "u5", "ghost"] } }),
        )
        .await;
    let bc_id = bc["id"].as_str().unwrap().to_string();
    api.post(
        "/v1/admin/notifications/broadcasts",
        json!({ "title": "Draft", "body": "Not yet", "audience": { "type": "all_users" } }),
    )
    .await;
    let v = api
        .post(
            &format!("/v1/admin/notifications/broadcasts/{bc_id}/actions/send-now"),
            json!({}),
        )
        .await;
    assert_eq!(v["status"], "scheduled", "{v}");

    let url = db_url(dir.path());
    let runner = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "--database-url",
            &url,
            "run",
            "--name",
            "notifications.broadcast",
            "--once",
        ])
        .env_remove("WP_LITE_DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("WORKER_NAME")
        .env_remove("NOTIFICATIONS_BROADCAST_IMMEDIATE")
        .env_remove("NOTIFICATIONS_BROADCAST_INTERVAL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wp-lite run");
    let runner_pid = runner.id() as i64;
    let o = runner.wait_with_output().unwrap();
    assert!(o.status.success(), "wp-lite run --once: {}", text(&o));
    let v = api
        .get(&format!("/v1/admin/notifications/broadcasts/{bc_id}"))
        .await;
    assert_eq!(v["status"], "sent", "{v}");
    assert_eq!(
        (
            v["total"].as_i64(),
            v["sent"].as_i64(),
            v["skipped"].as_i64()
        ),
        (Some(6), Some(4), Some(2)),
        "{v}"
    );

    // Jobs over HTTP: 4 completed, 1 failed for good, 1 failed and retried, 1 leased and
    // canceled, 2 never leased.
    for _ in 0..4 {
        api.enqueue("tele.ok").await;
    }
    for t in [
        "tele.fatal",
        "tele.retry",
        "tele.cancel",
        "tele.idle",
        "tele.idle",
    ] {
        api.enqueue(t).await;
    }
    let ok = api.lease("tele.ok", 4).await;
    for l in &ok {
        api.complete(l).await;
    }
    let fatal = api.lease("tele.fatal", 1).await;
    assert_eq!(api.fail(&fatal[0], false).await["status"], "failed");
    let retry = api.lease("tele.retry", 1).await;
    assert_eq!(api.fail(&retry[0], true).await["status"], "queued");
    let cancel = api.lease("tele.cancel", 1).await;
    let v = api
        .post(
            &format!("/v1/worker/jobs/{}/cancel", cancel[0].0),
            json!({}),
        )
        .await;
    assert_eq!(v["status"], "canceled", "{v}");
    // Queue controls on the idle type, and a schedule that will not run during the test.
    api.post("/v1/worker/queues/tele.idle/pause", json!({}))
        .await;
    api.ok(
        reqwest::Method::PUT,
        "/v1/worker/queues/tele.idle/limits",
        Some(json!({ "max_leased": 7 })),
    )
    .await;
    api.ok(
        reqwest::Method::PUT,
        "/v1/worker/schedules/tele.yearly",
        Some(json!({ "cron": "@yearly", "job": { "type": "tele.sched", "input": {} } })),
    )
    .await;
    let job_ids: Vec<String> = [&ok[..], &fatal, &retry, &cancel]
        .concat()
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    // A unit is a job attempt or a broadcast claim: 7 attempts + 1 claim started;
    // 4 jobs + the broadcast completed.
    let summary = api.summary_with_maintenance_of(server.pid()).await;
    let w = &summary["workers"];
    assert_eq!(w["jobs"], expected_jobs(8, 5, 2, 1, 1), "{summary:#}");
    let stages = w["stages"].as_object().unwrap();
    assert_eq!(
        stages.keys().collect::<Vec<_>>(),
        ["notifications.broadcast"],
        "only the other process's broadcast finished a unit of a stage: {summary:#}"
    );
    let stage = &stages["notifications.broadcast"];
    assert_eq!(stage["count"], 1, "{summary:#}");
    let avg = stage["avg_ms"].as_f64().expect("avg_ms is a number");
    assert!(avg >= 0.0, "{summary:#}");
    assert_eq!(
        w["job_avg_ms"].as_f64(),
        Some(avg),
        "one stage: the averages agree"
    );

    // Processes: this serve's jobs.maintenance (alive) and the `run` process (stopped).
    let procs = w["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{summary:#}");
    for p in procs {
        for key in [
            "id",
            "name",
            "pid",
            "host",
            "state",
            "started_at",
            "last_heartbeat_at",
            "last_tick_at",
            "last_tick_ms",
            "alive",
        ] {
            assert!(p.get(key).is_some(), "process lacks {key}: {p}");
        }
        assert!(
            p["id"].is_string()
                && p["host"].is_string()
                && p["started_at"].is_string()
                && p["last_heartbeat_at"].is_string(),
            "{p}"
        );
        assert!(p["alive"].is_boolean() && p["pid"].is_i64(), "{p}");
    }
    let proc_named = |procs: &[Value], name: &str, pid: i64| -> Value {
        procs
            .iter()
            .find(|p| p["name"] == name && p["pid"] == pid)
            .unwrap_or_else(|| panic!("no process {name} with pid {pid}: {procs:?}"))
            .clone()
    };
    let runner_proc = proc_named(procs, "notifications.broadcast", runner_pid);
    assert_eq!(runner_proc["state"], "stopped", "{runner_proc}");
    assert_eq!(runner_proc["alive"], false, "{runner_proc}");
    assert!(
        runner_proc["last_tick_at"].is_string(),
        "it ticked once: {runner_proc}"
    );
    assert!(runner_proc["last_tick_ms"].is_i64(), "{runner_proc}");
    let maint = proc_named(procs, "jobs.maintenance", server.pid());
    assert_eq!(maint["state"], "running", "{maint}");
    assert_eq!(maint["alive"], true, "{maint}");

    // Queues: the same items as /v1/worker/queues.
    let queues = &summary["queues"];
    assert_eq!(queue_counts(queues, "tele.ok"), counts(0, 0, 4, 0, 0));
    assert_eq!(queue_counts(queues, "tele.fatal"), counts(0, 0, 0, 1, 0));
    assert_eq!(queue_counts(queues, "tele.retry"), counts(1, 0, 0, 0, 0));
    assert_eq!(queue_counts(queues, "tele.cancel"), counts(0, 0, 0, 0, 1));
    assert_eq!(queue_counts(queues, "tele.idle"), counts(2, 0, 0, 0, 0));
    let idle = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["type"] == "tele.idle")
        .unwrap();
    assert_eq!(
        (&idle["paused"], &idle["max_leased"]),
        (&json!(true), &json!(7))
    );
    assert_eq!(queues.as_array().unwrap().len(), 5, "{queues}");
    let direct = api.get("/v1/worker/queues").await;
    for q in direct["items"].as_array().unwrap() {
        let t = q["type"].as_str().unwrap();
        assert_eq!(queue_counts(queues, t), q["counts"], "{t}");
        assert_eq!(
            queues
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["type"] == t)
                .unwrap()["leases_expired_total"],
            q["leases_expired_total"]
        );
    }

    // Broadcasts.
    assert_eq!(
        summary["broadcasts"],
        json!({
            "status_counts": { "draft": 1, "scheduled": 0, "sending": 0, "sent": 1, "failed": 0, "cancelled": 0 },
            "recipients": { "sent": 4, "failed": 0, "skipped": 2 },
        }),
        "{summary:#}"
    );

    // The workers summary is the `workers` object.
    let ws = api.get("/v1/admin/telemetry/workers/summary").await;
    for key in ["jobs", "job_avg_ms", "stages"] {
        assert_eq!(ws[key], w[key], "{key}: {ws:#}");
    }
    let ids = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&ws["processes"]), ids(&w["processes"]));
    assert_eq!(
        ws.as_object().unwrap().keys().collect::<BTreeSet<_>>(),
        w.as_object().unwrap().keys().collect::<BTreeSet<_>>()
    );

    // Authentication: the API's metrics need the admin token; the metrics listener not.
    let metrics = Http::new(&server.metrics);
    for path in [
        "/v1/metrics",
        "/v1/admin/telemetry/prometheus",
        "/v1/admin/telemetry/summary",
    ] {
        let (status, _, body) = api.text(path, false).await;
        assert_eq!(status, 401, "{path} without auth: {body}");
    }
    let (status, _, _) = metrics.text("/v1/admin/telemetry/summary", false).await;
    assert_eq!(status, 404, "the metrics listener serves /metrics only");

    // The Prometheus text, from the three places that serve it.
    let mut texts = Vec::new();
    for (http, path, auth) in [
        (&api, "/v1/admin/telemetry/prometheus", true),
        (&api, "/v1/metrics", true),
        (&metrics, "/metrics", false),
    ] {
        let (status, ct, t) = http.text(path, auth).await;
        assert_eq!(status, 200, "{path}: {t}");
        assert!(
            ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
            "{path}: content type {ct}"
        );
        texts.push((path, t));
    }
    let mut store_samples = Vec::new();
    for (path, t) in &texts {
        let e = parse_exposition(t);
        assert_well_formed(&e, t);
        for (status, n) in [
            ("started", 8.0),
            ("completed", 5.0),
            ("failed", 2.0),
            ("canceled", 1.0),
            ("tick_errors", 0.0),
        ] {
            assert_eq!(
                e.must("ai_worker_jobs_total", &[("status", status)]),
                n,
                "{path} status={status}:\n{t}"
            );
        }
        let stage = [("stage", "notifications.broadcast")];
        assert_eq!(e.must("ai_worker_stage_total", &stage), 1.0, "{path}:\n{t}");
        let avg_ms = e.must("ai_worker_stage_avg_ms", &stage);
        assert!(
            avg_ms >= 0.0 && (avg_ms - avg).abs() < 0.01,
            "{path}: {avg_ms} vs the summary's {avg}"
        );
        assert!(
            t.contains("ai_worker_stage_total{stage=\"notifications.broadcast\"} 1\n"),
            "{path}:\n{t}"
        );
        e.must("ai_worker_job_duration_ms_avg", &[]);
        let idle = [("type", "tele.idle")];
        assert_eq!(e.must("wp_lite_queue_paused", &idle), 1.0, "{path}");
        assert_eq!(e.must("wp_lite_queue_paused", &[("type", "tele.ok")]), 0.0);
        assert_eq!(e.must("wp_lite_queue_max_leased", &idle), 7.0);
        let yearly = [("schedule", "tele.yearly")];
        assert_eq!(
            e.must("wp_lite_schedule_runs_total", &yearly),
            0.0,
            "{path}"
        );
        assert_eq!(e.must("wp_lite_schedule_skipped_total", &yearly), 0.0);
        let period = e.must("wp_lite_schedule_period_seconds", &yearly);
        assert!(period >= 365.0 * 86400.0, "a year: {period}");
        e.must("wp_lite_schedule_next_run_timestamp_seconds", &yearly);
        assert_eq!(e.must("wp_lite_stage_duration_seconds_count", &stage), 1.0);
        assert_eq!(
            e.must(
                "wp_lite_stage_duration_seconds_bucket",
                &[("stage", "notifications.broadcast"), ("le", "+Inf")]
            ),
            1.0
        );
        // Queue depth per type and status, oldest age, leases expired, retries.
        assert_eq!(
            e.must(
                "wp_lite_jobs",
                &[("type", "tele.ok"), ("status", "succeeded")]
            ),
            4.0
        );
        assert_eq!(
            e.must(
                "wp_lite_jobs",
                &[("type", "tele.idle"), ("status", "queued")]
            ),
            2.0
        );
        assert_eq!(
            e.must(
                "wp_lite_jobs",
                &[("type", "tele.cancel"), ("status", "canceled")]
            ),
            1.0
        );
        assert!(e.must("wp_lite_queue_oldest_age_seconds", &[("type", "tele.idle")]) >= 0.0);
        assert_eq!(
            e.must("wp_lite_leases_expired_total", &[("type", "tele.ok")]),
            0.0
        );
        assert_eq!(
            e.must("wp_lite_job_retries_total", &[("type", "tele.retry")]),
            1.0
        );
        for (result, n) in [("sent", 4.0), ("failed", 0.0), ("skipped", 2.0)] {
            assert_eq!(
                e.must("wp_lite_broadcast_recipients_total", &[("result", result)]),
                n
            );
        }
        assert_eq!(e.must("wp_lite_broadcasts", &[("status", "sent")]), 1.0);
        assert_eq!(
            e.must(
                "wp_lite_worker_processes_alive",
                &[("worker", "jobs.maintenance")]
            ),
            1.0
        );
        assert_eq!(
            e.must(
                "wp_lite_worker_processes_alive",
                &[("worker", "notifications.broadcast")]
            ),
            0.0
        );
        assert_eq!(
            e.must(
                "wp_lite_worker_processes_silent",
                &[("worker", "notifications.broadcast")]
            ),
            0.0,
            "a clean stop is not silence"
        );
        // HTTP requests by route template, never the raw path.
        assert_eq!(
            e.must(
                "wp_lite_http_requests_total",
                &[
                    ("route", "/v1/worker/jobs/{job_id}/complete"),
                    ("method", "POST"),
                    ("status", "200")
                ]
            ),
            4.0,
            "{path}:\n{t}"
        );
        assert!(e
            .value(
                "wp_lite_http_request_duration_seconds_count",
                &[("route", "/v1/worker/jobs/lease"), ("method", "POST")]
            )
            .is_some_and(|n| n >= 4.0));
        for s in e
            .samples
            .iter()
            .filter(|s| s.name.starts_with("wp_lite_http_"))
        {
            let route = &s.labels["route"];
            assert!(
                !job_ids.iter().any(|id| route.contains(id.as_str())) && !route.contains(&bc_id),
                "a raw path as a label: {s:?}"
            );
        }
        assert_promtool_accepts(t, path);
        store_samples.push(
            e.samples
                .into_iter()
                .filter(|s| s.name.starts_with("ai_worker_"))
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        store_samples.windows(2).all(|w| w[0] == w[1]),
        "the three texts disagree on the original metrics: {store_samples:#?}"
    );

    // The Grafana dashboard and the alert rules only use names this text can contain.
    let e = parse_exposition(&texts[2].1);
    assert_dashboard_and_rules_use_known_names(&e.names());

    // Restart serve on the same database: nothing goes backwards.
    let before = parse_exposition(&texts[2].1);
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let server = Server::start(dir.path());
    let api = Http::new(&server.base);
    let summary = api.summary_with_maintenance_of(server.pid()).await;
    let w = &summary["workers"];
    assert_eq!(
        w["jobs"],
        expected_jobs(8, 5, 2, 1, 1),
        "after a restart: {summary:#}"
    );
    assert_eq!(
        w["stages"]["notifications.broadcast"]["count"], 1,
        "{summary:#}"
    );
    let procs = w["processes"].as_array().unwrap();
    let old = proc_named(procs, "jobs.maintenance", maint["pid"].as_i64().unwrap());
    assert_eq!(
        (old["state"].as_str(), old["alive"].as_bool()),
        (Some("stopped"), Some(false)),
        "{old}"
    );
    let new = proc_named(procs, "jobs.maintenance", server.pid());
    assert_eq!(new["alive"], true, "{new}");
    let (status, _, t) = Http::new(&server.metrics).text("/metrics", false).await;
    assert_eq!(status, 200);
    let after = parse_exposition(&t);
    for s in before.store_counters() {
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let now = after
            .value(&s.name, &labels)
            .unwrap_or_else(|| panic!("{s:?} is gone after a restart:\n{t}"));
        assert!(
            now >= s.value,
            "{} {:?} went back from {} to {now} after a restart",
            s.name,
            s.labels,
            s.value
        );
    }
    assert_promtool_accepts(&t, "/metrics after a restart");

    // Counting goes on from there.
    let id = api.enqueue("tele.ok").await;
    let l = api.lease("tele.ok", 1).await;
    assert_eq!(l[0].0, id);
    api.complete(&l[0]).await;
    let summary = api.get("/v1/admin/telemetry/summary").await;
    assert_eq!(
        summary["workers"]["jobs"],
        expected_jobs(9, 6, 2, 1, 1),
        "{summary:#}"
    );
    let (_, _, t) = api.text("/v1/metrics", true).await;
    let e = parse_exposition(&t);
    assert_eq!(
        e.must("ai_worker_jobs_total", &[("status", "started")]),
        9.0
    );
    assert_eq!(
        e.must("ai_worker_jobs_total", &[("status", "completed")]),
        6.0
    );
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Every metric name in the Grafana dashboard's queries and in the alert rules is one the
/// Prometheus text contains (`up` is Prometheus's own).
fn assert_dashboard_and_rules_use_known_names(known: &BTreeSet<String>) {
    let raw =
        std::fs::read_to_string(repo().join("assets/grafana/wp-lite-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&raw).expect("the Grafana dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    assert!(exprs.len() >= 5, "the dashboard has queries: {exprs:?}");
    let rules = std::fs::read_to_string(repo().join("assets/prometheus/alerts.yml")).unwrap();
    let rule_exprs: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect();
    assert!(rule_exprs.len() >= 5, "alert rules: {rule_exprs:?}");
    // `up` is Prometheus's own, fine in an alert rule.
    for (what, list, extra) in [
        ("the Grafana dashboard", &exprs, &[][..]),
        ("the alert rules", &rule_exprs, &["up"][..]),
    ] {
        for expr in list {
            let names = promql_metric_names(expr);
            assert!(!names.is_empty(), "{what}: no metric in {expr}");
            for n in names {
                assert!(
                    known.contains(&n) || extra.contains(&n.as_str()),
                    "{what} queries {n}, which the Prometheus text does not contain (in {expr})"
                );
            }
        }
    }
}

#[test]
fn the_grafana_dashboard_is_json_with_panels() {
    let raw =
        std::fs::read_to_string(repo().join("assets/grafana/wp-lite-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&raw).expect("the Grafana dashboard is JSON");
    assert!(dash["title"].is_string(), "a dashboard has a title");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5, "{} panels", panels.len());
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let Some(o) = promtool(&["check", "rules", "assets/prometheus/alerts.yml"], "") else {
        return;
    };
    let out = text(&o);
    assert!(o.status.success(), "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    for alert in [
        "WpLiteWorkersDown",
        "WpLiteFailuresRising",
        "WpLiteLongTicks",
        "WpLiteQueueAgeGrowing",
        "WpLiteBroadcastStuckSending",
    ] {
        let rules = std::fs::read_to_string(repo().join("assets/prometheus/alerts.yml")).unwrap();
        assert!(
            rules.contains(&format!("alert: {alert}")),
            "no {alert} rule"
        );
    }
}

#[test]
fn the_promtool_check_rejects_what_it_must() {
    if promtool(&["--version"], "").is_none() {
        return;
    }
    // A family without HELP, and a parse error: both must fail the check.
    for bad in ["x_count 1\n", "foo{ 1\n"] {
        let r = std::panic::catch_unwind(|| assert_promtool_accepts(bad, "a bad text"));
        assert!(r.is_err(), "accepted: {bad:?}");
    }
    // The `_ms` lint of the original names alone passes.
    assert_promtool_accepts(
        "# HELP ai_worker_stage_avg_ms a\n# TYPE ai_worker_stage_avg_ms gauge\nai_worker_stage_avg_ms{stage=\"x\"} 1\n",
        "the original names",
    );
}
