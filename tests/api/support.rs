//! `spawn_app()` and typed helpers.

#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use wp_lite::app::App;
use wp_lite::clock::ManualClock;
use wp_lite::config::{Config, Secret, WorkerSelection};
use wp_lite::storage::Db;
use wp_lite::worker::broadcast::{BroadcastWorker, Settings};
use wp_lite::worker::{WorkerEnv, WorkerOptions};

pub const ADMIN: &str = "admin-token-for-tests-0123456789abcdef";
pub const WORKER: &str = "worker-token-for-tests-0123456789abcdef";
/// The HS256 secret end-user JWTs are signed with (`Opts::jwt_secret` by default).
pub const JWT_SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";

pub struct TestApp {
    pub app: Option<App>,
    pub base: String,
    pub client: Client,
    pub clock: ManualClock,
    pub db_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Options for `spawn_with`.
pub struct Opts {
    pub max_body_bytes: usize,
    pub worker_token: bool,
    /// `--jwt-secret` (None = not configured).
    pub jwt_secret: Option<&'static str>,
    /// Which workers run in the process besides jobs.maintenance. Tests that step
    /// delivery themselves use `WorkerSelection::None`.
    pub workers: WorkerSelection,
    /// `--secure-cookies`.
    pub secure_cookies: bool,
    /// `--jwt-audience`.
    pub jwt_audience: Option<&'static str>,
    /// `--max-long-polls`.
    pub max_long_polls: usize,
    /// `--max-streams`.
    pub max_streams: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            max_body_bytes: 1_048_576,
            worker_token: true,
            jwt_secret: Some(JWT_SECRET),
            workers: WorkerSelection::Default,
            max_long_polls: 1024,
            max_streams: 10_000,
            jwt_audience: None,
            secure_cookies: false,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Opts::default()).await
}

pub async fn spawn_with(opts: Opts) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("wp.db");
    let mut config = Config::for_database(format!("sqlite://{}", db_path.display()));
    config.admin_token = Some(Secret::new(ADMIN));
    config.worker_token = opts.worker_token.then(|| Secret::new(WORKER));
    config.max_body_bytes = opts.max_body_bytes;
    config.jwt_secret = opts.jwt_secret.map(Secret::new);
    config.workers = opts.workers;
    config.max_long_polls = opts.max_long_polls;
    config.max_streams = opts.max_streams;
    config.jwt_audience = opts.jwt_audience.map(String::from);
    config.secure_cookies = opts.secure_cookies;
    // The tests step maintenance themselves through the service; keep the loop quiet.
    config.worker_options.maintenance_interval = std::time::Duration::from_secs(3600);
    // No pass at start-up either: one running late would race the test's clock steps.
    config.worker_options.maintenance_at_start = false;
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap());
    let app = App::start(config, Arc::new(clock.clone()))
        .await
        .expect("app starts");
    let base = format!("http://{}", app.addr());
    TestApp {
        app: Some(app),
        base,
        client: Client::builder().no_proxy().build().unwrap(),
        clock,
        db_path,
        _dir: dir,
    }
}

/// A response read whole: status, headers and JSON body (Null when empty or not JSON).
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The answer to a `method` request, held against `/openapi.json` (`contract`).
    pub async fn of(method: &Method, r: Response) -> Self {
        let path = r.url().path().to_string();
        let resp = Self::from(r).await;
        let content_type = resp
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        crate::contract::check(method, &path, resp.status, &content_type, &resp.body);
        resp
    }

    pub async fn from(r: Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        // A stream (Server-Sent Events) does not end: its body is not read.
        let streaming = headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = if streaming {
            Default::default()
        } else {
            r.bytes().await.unwrap_or_default()
        };
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    /// Asserts the error shape (docs/api.md) and returns the code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["detail"], code, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(
            self.body["error"]["message"].is_string(),
            "body: {}",
            self.body
        );
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with the given bearer token (None = no credentials).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.client.request(method.clone(), self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Resp::of(&method, rb.send().await.expect("request")).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.send(method, path, Some(ADMIN), body).await
    }

    pub async fn worker(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.send(method, path, Some(WORKER), body).await
    }

    /// Enqueues one job of `job_type` and returns its view.
    pub async fn enqueue(&self, body: Value) -> Value {
        let r = self
            .worker(Method::POST, "/v1/worker/jobs", Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    pub async fn enqueue_type(&self, job_type: &str) -> Value {
        self.enqueue(json!({ "type": job_type, "input": {} })).await
    }

    /// Leases with the given body fields merged over `{"worker_id": worker}`.
    pub async fn lease(&self, worker: &str, extra: Value) -> Vec<Value> {
        let mut body = json!({ "worker_id": worker });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let r = self
            .worker(Method::POST, "/v1/worker/jobs/lease", Some(body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["jobs"].as_array().cloned().unwrap_or_default()
    }

    pub async fn job(&self, id: &str) -> Value {
        let r = self
            .worker(Method::GET, &format!("/v1/worker/jobs/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    pub async fn events(&self, id: &str) -> Vec<String> {
        let r = self
            .admin(Method::GET, &format!("/v1/worker/jobs/{id}/events"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    }

    /// Runs one maintenance pass (lease reclaim) now, at the test clock's time.
    pub async fn reclaim(&self) -> usize {
        self.app
            .as_ref()
            .unwrap()
            .state()
            .jobs
            .reclaim_expired()
            .await
            .unwrap()
    }

    /// Moves the clock.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    /// Logs in with the admin token; returns (cookie header value, csrf token).
    pub async fn login(&self) -> (String, String) {
        let r = self
            .client
            .post(self.url("/v1/auth/login"))
            .json(&json!({ "token": ADMIN }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .collect();
        let body: Value = r.json().await.unwrap();
        (
            cookies.join("; "),
            body["csrf_token"].as_str().unwrap().to_string(),
        )
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.unwrap();
        }
    }
}

/// Parses an API timestamp.
pub fn ts(v: &Value) -> chrono::DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    assert!(s.ends_with('Z'), "timestamps are UTC with a Z: {s}");
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&Utc)
}

/// The string of a JSON field (panics when it is not one).
pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

impl TestApp {
    /// The test clock's time.
    pub fn now(&self) -> chrono::DateTime<Utc> {
        use wp_lite::clock::Clock;
        self.clock.now()
    }

    /// Sends a request with arbitrary headers (no token unless one is in `headers`).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.client.request(method.clone(), self.url(path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Resp::of(&method, rb.send().await.expect("request")).await
    }

    /// The Prometheus text of `/v1/metrics` (admin token).
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/v1/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends raw bytes with the given content type (None = no Content-Type header).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method.clone(), self.url(path))
            .body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        Resp::of(&method, rb.send().await.expect("request")).await
    }

    /// Leases exactly one job of `job_type` for `worker`; returns (job_id, lease_token).
    pub async fn lease_one(
        &self,
        worker: &str,
        job_type: &str,
        lease_seconds: i64,
    ) -> (String, String) {
        let jobs = self
            .lease(
                worker,
                json!({ "job_types": [job_type], "lease_seconds": lease_seconds }),
            )
            .await;
        assert_eq!(jobs.len(), 1, "expected one job of {job_type}: {jobs:?}");
        (s(&jobs[0]["job_id"]), s(&jobs[0]["lease_token"]))
    }

    pub async fn heartbeat(
        &self,
        id: &str,
        worker: &str,
        token: Option<&str>,
        lease_seconds: i64,
    ) -> Resp {
        let mut body = json!({ "worker_id": worker, "lease_seconds": lease_seconds });
        if let Some(t) = token {
            body["lease_token"] = json!(t);
        }
        self.worker(
            Method::POST,
            &format!("/v1/worker/jobs/{id}/heartbeat"),
            Some(body),
        )
        .await
    }

    pub async fn complete(
        &self,
        id: &str,
        worker: &str,
        token: Option<&str>,
        result: Value,
    ) -> Resp {
        let mut body = json!({ "worker_id": worker, "result": result });
        if let Some(t) = token {
            body["lease_token"] = json!(t);
        }
        self.worker(
            Method::POST,
            &format!("/v1/worker/jobs/{id}/complete"),
            Some(body),
        )
        .await
    }

    pub async fn fail(
        &self,
        id: &str,
        worker: &str,
        token: Option<&str>,
        error: &str,
        retryable: bool,
        details: Value,
    ) -> Resp {
        let mut body = json!({ "worker_id": worker, "error": error, "retryable": retryable, "details": details });
        if let Some(t) = token {
            body["lease_token"] = json!(t);
        }
        self.worker(
            Method::POST,
            &format!("/v1/worker/jobs/{id}/fail"),
            Some(body),
        )
        .await
    }

    pub async fn cancel(&self, id: &str) -> Resp {
        self.admin(Method::POST, &format!("/v1/worker/jobs/{id}/cancel"), None)
            .await
    }

    pub async fn retry(&self, id: &str) -> Resp {
        self.admin(Method::POST, &format!("/v1/worker/jobs/{id}/retry"), None)
            .await
    }

    /// The full event rows of a job.
    pub async fn event_items(&self, id: &str) -> Vec<Value> {
        let r = self
            .admin(Method::GET, &format!("/v1/worker/jobs/{id}/events"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["items"].as_array().cloned().unwrap()
    }

    /// The `/v1/worker/queues` item of one type.
    pub async fn queue(&self, job_type: &str) -> Value {
        let r = self.admin(Method::GET, "/v1/worker/queues", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["type"] == job_type)
            .cloned()
            .unwrap_or_else(|| panic!("no queue {job_type} in {}", r.body))
    }

    /// `/healthz` answers 200 and a plain enqueue still works (after abuse).
    pub async fn assert_still_healthy(&self) {
        let r = self.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        let j = self
            .enqueue(json!({ "type": "health.check", "input": { "ok": true } }))
            .await;
        assert_eq!(j["status"], "queued");
    }
}

impl TestApp {
    /// The application's store.
    pub fn db(&self) -> Db {
        self.app.as_ref().unwrap().state().db.clone()
    }

    /// A `notifications.broadcast` worker on this app's store and clock, to be stepped
    /// with `run_tick()` (spawn the app with `WorkerSelection::None` so that no in-process
    /// worker races it).
    pub fn broadcast_worker(&self) -> BroadcastWorker {
        let st = self.app.as_ref().unwrap().state();
        let env = WorkerEnv {
            jobs: st.jobs.clone(),
            db: st.db.clone(),
            clock: st.clock.clone(),
            options: WorkerOptions::default(),
            broadcast_wake: Arc::new(tokio::sync::Notify::new()),
            hub: Some(st.streams.clone()),
        };
        let settings = Settings {
            interval: std::time::Duration::from_secs(30),
            jitter: std::time::Duration::ZERO,
            batch_limit: 5,
            immediate: false,
            lease: std::time::Duration::from_secs(60),
        };
        BroadcastWorker::new(&env, settings)
    }

    /// One tick of a fresh broadcast worker: delivers every due broadcast to the end.
    pub async fn deliver_due(&self) {
        self.broadcast_worker()
            .run_tick()
            .await
            .expect("broadcast tick");
    }

    /// An HS256 user JWT for `sub` that expires `exp_in` seconds after the test clock.
    pub fn user_jwt(&self, sub: &str, exp_in: i64) -> String {
        jwt(JWT_SECRET, sub, self.now().timestamp() + exp_in)
    }

    /// Upserts users through `POST /v1/admin/users/batch`, 10 000 at a time.
    pub async fn put_users(&self, users: Vec<Value>) {
        for chunk in users.chunks(10_000) {
            let r = self
                .admin(
                    Method::POST,
                    "/v1/admin/users/batch",
                    Some(json!({ "users": chunk })),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            assert_eq!(r.body["upserted"], chunk.len());
        }
    }

    /// `n` active users `{prefix}{i}` (i from 0) with no attributes.
    pub async fn put_plain_users(&self, prefix: &str, n: usize) {
        let users = (0..n)
            .map(|i| json!({ "id": format!("{prefix}{i}") }))
            .collect();
        self.put_users(users).await;
    }
}

/// An HS256 JWT with `sub` and `exp` signed with `secret`.
pub fn jwt(secret: &str, sub: &str, exp: i64) -> String {
    jwt_claims(
        jsonwebtoken::Algorithm::HS256,
        secret,
        json!({ "sub": sub, "exp": exp }),
    )
}

/// A JWT with arbitrary claims, signed with `alg` (an HMAC algorithm) and `secret`.
pub fn jwt_claims(alg: jsonwebtoken::Algorithm, secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("an HMAC key"),
    )
    .expect("encode a JWT")
}

/// Base64url without padding (a JWT's parts).
pub fn b64url(data: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A JWT with `alg: none` and no signature (which must never be accepted).
pub fn unsigned_jwt(sub: &str, exp: i64) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(json!({ "sub": sub, "exp": exp }).to_string())
    )
}

/// Polls `f` every 20 ms until it returns Some, for at most `secs` seconds: for what the
/// server does on its own time (a worker delivering, a long poll parking), never a fixed
/// sleep.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
