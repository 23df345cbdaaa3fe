//! `wp-lite copy` through the real binary: data made through the API on SQLite
//! (jobs in every state, an idempotency key, users, broadcasts sent by a worker process,
//! a direct notification, a read mark, an admin session), copied into a fresh PostgreSQL
//! schema while `serve` keeps running on the SQLite file, then served from PostgreSQL:
//! every API answer must be the same. A second copy into the same schema is refused
//! (exit 2), and new rows get fresh ids (the sequences were moved past the copied ones).
//!
//! Needs `WP_LITE_TEST_POSTGRES_URL`; without it the test says so and passes.

mod common;
use common::{PgSchema, Served as Server};

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");
const ADMIN: &str = "admin-token-for-copy-tests-0123456789abcdef";
const JWT_SECRET: &str = "jwt-secret-for-copy-tests-0123456789abcdef";

/// Variables of the environment the tests run in that would change what a child does.
const SCRUBBED: &[&str] = &[
    "WP_LITE_DATABASE_URL",
    "WP_LITE_ADMIN_TOKEN",
    "WP_LITE_JWT_SECRET",
    "WP_LITE_WORKERS",
    "WP_LITE_LOG_LEVEL",
    "WP_LITE_LOG_FORMAT",
    "WP_LITE_NO_MIGRATE",
    "WP_LITE_COPY_FROM",
    "WP_LITE_COPY_TO",
    "RUST_LOG",
    "WORKER_NAME",
    "WORKER_LOG_LEVEL",
    "NOTIFICATIONS_BROADCAST_INTERVAL",
    "NOTIFICATIONS_BROADCAST_JITTER",
    "NOTIFICATIONS_BROADCAST_BATCH_LIMIT",
    "NOTIFICATIONS_BROADCAST_IMMEDIATE",
    "NOTIFICATIONS_BROADCAST_LEASE",
];

/// `wp-lite --database-url URL ARGS…` in `dir`, with a clean environment.
fn wp(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir).args(["--database-url", url]).args(args);
    for v in SCRUBBED {
        c.env_remove(v);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `wp-lite run --name NAME --once` against `url`; must succeed.
fn run_once(dir: &Path, url: &str, name: &str) {
    let o = wp(dir, url, &["run", "--name", name, "--once"])
        .output()
        .expect("run wp-lite run --once");
    assert!(o.status.success(), "run {name} --once: {}", text(&o));
}

/// `wp-lite copy --from FROM --to TO`.
fn copy(dir: &Path, from: &str, to: &str) -> Output {
    wp(
        dir,
        "sqlite://unused.db",
        &["copy", "--from", from, "--to", to],
    )
    .output()
    .expect("run wp-lite copy")
}

impl Server {
    fn start(dir: &Path, url: &str) -> Server {
        let mut cmd = wp(
            dir,
            url,
            &[
                "--log-format",
                "json",
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "none",
            ],
        );
        cmd.env("WP_LITE_ADMIN_TOKEN", ADMIN)
            .env("WP_LITE_JWT_SECRET", JWT_SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Server::spawn(&mut cmd)
    }
}

/// Sends a request; returns (status, JSON body or Null).
async fn call(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A JSON answer that must be 200 (or `want`).
async fn ok(rb: reqwest::RequestBuilder, want: u16) -> Value {
    let (st, body) = call(rb).await;
    assert_eq!(st, want, "{body}");
    body
}

fn jwt(user: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Removes what depends on the moment of asking (ages, liveness), so two snapshots of the
/// same data compare equal.
fn timeless(mut v: Value) -> Value {
    fn strip_ages(queues: &mut Value) {
        if let Some(items) = queues.as_array_mut() {
            for q in items {
                if let Some(o) = q.as_object_mut() {
                    o.remove("oldest_queued_age_seconds");
                }
            }
        }
    }
    if let Some(items) = v.get_mut("items") {
        strip_ages(items);
    }
    if let Some(queues) = v.get_mut("queues") {
        strip_ages(queues);
    }
    if let Some(w) = v.get_mut("workers").and_then(Value::as_object_mut) {
        w.remove("processes");
    }
    v
}

/// Everything the API says about the data, keyed by the request that said it.
async fn snapshot(http: &reqwest::Client, base: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let admin = |path: &str| http.get(format!("{base}{path}")).bearer_auth(ADMIN);

    let jobs = ok(admin("/v1/worker/jobs?limit=200"), 200).await;
    assert!(jobs["next_cursor"].is_null(), "one page holds every job");
    for j in jobs["items"].as_array().unwrap() {
        let id = j["job_id"].as_str().unwrap();
        for path in [
            format!("/v1/worker/jobs/{id}"),
            format!("/v1/worker/jobs/{id}/events"),
        ] {
            out.insert(path.clone(), ok(admin(&path), 200).await);
        }
    }
    out.insert("/v1/worker/jobs".into(), jobs);
    out.insert(
        "/v1/worker/queues".into(),
        timeless(ok(admin("/v1/worker/queues"), 200).await),
    );
    let schedules = ok(admin("/v1/worker/schedules"), 200).await;
    assert_eq!(
        schedules["items"].as_array().unwrap().len(),
        2,
        "{schedules}"
    );
    out.insert("/v1/worker/schedules".into(), schedules);

    let users = ok(admin("/v1/admin/users?limit=200"), 200).await;
    for u in users["items"].as_array().unwrap() {
        let id = u["id"].as_str().unwrap();
        for path in [
            format!("/v1/admin/users/{id}"),
            format!("/v1/admin/users/{id}/notifications?limit=200"),
        ] {
            out.insert(path.clone(), ok(admin(&path), 200).await);
        }
        let token = jwt(id);
        for path in [
            "/v1/notifications?limit=200",
            "/v1/notifications/unread-count",
        ] {
            let v = ok(http.get(format!("{base}{path}")).bearer_auth(&token), 200).await;
            out.insert(format!("{path} as {id}"), v);
        }
    }
    out.insert("/v1/admin/users".into(), users);

    let bc = "/v1/admin/notifications/broadcasts";
    let list = ok(admin(&format!("{bc}?limit=200")), 200).await;
    for b in list["items"].as_array().unwrap() {
        let path = format!("{bc}/{}", b["id"].as_str().unwrap());
        out.insert(path.clone(), ok(admin(&path), 200).await);
    }
    out.insert(bc.into(), list);

    out.insert(
        "/v1/admin/telemetry/summary".into(),
        timeless(ok(admin("/v1/admin/telemetry/summary"), 200).await),
    );
    out
}

/// The largest `id` of any item of any array under `key` in the snapshot's answers.
fn max_id(snap: &BTreeMap<String, Value>, prefix: &str) -> i64 {
    snap.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .flat_map(|(_, v)| v["items"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["id"].as_i64())
        .max()
        .unwrap_or(0)
}

/// Text that COPY must escape (tab, newline, CR, backslash, `\N`), quotes, non-ASCII.
const TRICKY: &str = "tab\there\nnew line\r\\back\\slash \\N \"quoted\" ünïcödé € 😀";

/// The job with an idempotency key (enqueued again, it is replayed).
fn keyed_job() -> Value {
    json!({
        "type": "copy.ok", "input": { "text": TRICKY, "n": 1 }, "idempotency_key": "key-1",
        "priority": 3, "code_version": "v1", "budget_tag": "b", "cost_cap_eur": "10.50",
    })
}

/// Makes the data on SQLite through the API and two worker processes. Returns the
/// leased job's (id, lease token) and the admin session cookie.
async fn make_data(
    dir: &Path,
    sqlite: &str,
    http: &reqwest::Client,
    base: &str,
) -> ((String, String), String) {
    let post = |path: &str| http.post(format!("{base}{path}")).bearer_auth(ADMIN);
    let put = |path: &str| http.put(format!("{base}{path}")).bearer_auth(ADMIN);

    // Users, one with text COPY must escape.
    let tricky = TRICKY;
    for (id, body) in [
        (
            "u1",
            json!({ "email": "u1@example.com", "attributes": { "plan": "pro", "note": tricky } }),
        ),
        (
            "u2",
            json!({ "email": "u2@example.com", "attributes": { "plan": "free" } }),
        ),
        ("u3", json!({ "attributes": {} })),
        (
            "u4",
            json!({ "email": "u4@example.com", "is_active": false }),
        ),
        ("u5", json!({ "email": "u5@example.com" })),
    ] {
        ok(put(&format!("/v1/admin/users/{id}")).json(&body), 200).await;
    }
    let (st, _) = call(
        http.delete(format!("{base}/v1/admin/users/u5"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(st, 204);

    // Schedules (one disabled) and queue controls.
    for (name, enabled) in [("copy.yearly", true), ("copy.off", false)] {
        ok(
            put(&format!("/v1/worker/schedules/{name}")).json(&json!({
                "cron": "@yearly", "timezone": "Europe/Berlin", "enabled": enabled,
                "job": { "type": "copy.sched", "input": { "note": tricky } },
            })),
            200,
        )
        .await;
    }
    ok(post("/v1/worker/queues/copy.paused/pause"), 200).await;
    ok(
        put("/v1/worker/queues/copy.limited/limits").json(&json!({ "max_leased": 4 })),
        200,
    )
    .await;

    // Jobs: succeeded (with a result and an idempotency key), failed, queued for later,
    // queued again after a retryable failure, canceled, and one still leased.
    let enqueue = |body: Value| post("/v1/worker/jobs").json(&body);
    let a = ok(enqueue(keyed_job()), 201).await;
    let (st, replay) = call(enqueue(keyed_job())).await;
    assert_eq!((st, &replay["job_id"]), (200, &a["job_id"]));
    let b = ok(
        enqueue(json!({ "type": "copy.fail", "input": {}, "max_attempts": 1 })),
        201,
    )
    .await;
    ok(
        enqueue(json!({ "type": "copy.later", "input": {}, "delay_seconds": 3600 })),
        201,
    )
    .await;
    let d = ok(enqueue(json!({ "type": "copy.cancel", "input": {} })), 201).await;
    let e = ok(enqueue(json!({ "type": "copy.retry", "input": {} })), 201).await;
    let f = ok(enqueue(json!({ "type": "copy.leased", "input": {} })), 201).await;

    let lease = |types: &[&str], secs: i64| {
        post("/v1/worker/jobs/lease").json(&json!({
            "worker_id": "w-ext", "job_types": types, "limit": 10, "lease_seconds": secs,
        }))
    };
    let leased = ok(lease(&["copy.ok", "copy.fail", "copy.retry"], 600), 200).await;
    assert_eq!(leased["jobs"].as_array().unwrap().len(), 3, "{leased}");
    let token_of = |id: &Value| {
        leased["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_id"] == *id)
            .unwrap()["lease_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let job = |j: &Value| j["job_id"].as_str().unwrap().to_string();
    let done = ok(
        post(&format!("/v1/worker/jobs/{}/complete", job(&a))).json(&json!({
            "worker_id": "w-ext", "lease_token": token_of(&a["job_id"]),
            "result": { "ok": true, "text": tricky, "score": 0.125 },
        })),
        200,
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    let failed = ok(
        post(&format!("/v1/worker/jobs/{}/fail", job(&b))).json(&json!({
            "worker_id": "w-ext", "lease_token": token_of(&b["job_id"]),
            "error": "boom\twith\ttabs", "retryable": true, "details": { "line": 7 },
        })),
        200,
    )
    .await;
    assert_eq!(failed["status"], "failed", "max_attempts 1: no retry");
    let retried = ok(
        post(&format!("/v1/worker/jobs/{}/fail", job(&e))).json(&json!({
            "worker_id": "w-ext", "lease_token": token_of(&e["job_id"]),
            "error": "try again", "retryable": true,
        })),
        200,
    )
    .await;
    assert_eq!(retried["status"], "queued");
    let canceled = ok(post(&format!("/v1/worker/jobs/{}/cancel", job(&d))), 200).await;
    assert_eq!(canceled["status"], "canceled");
    let leased = ok(lease(&["copy.leased"], 3600), 200).await;
    let held = &leased["jobs"][0];
    assert_eq!(held["job_id"], f["job_id"]);
    let held = (job(held), held["lease_token"].as_str().unwrap().to_string());

    // A direct notification (a notifications.send job run by a worker process) and two
    // broadcasts sent by another: all users, and an explicit list; one left as a draft.
    ok(
        enqueue(json!({
            "type": "notifications.send",
            "input": {
                "user_id": "u2", "title": "Direct", "body": tricky, "event_id": "evt-1",
                "meta": { "k": "v" },
            },
        })),
        201,
    )
    .await;
    run_once(dir, sqlite, "notifications.send");
    let bc = "/v1/admin/notifications/broadcasts";
    let mut sending = Vec::new();
    for (title, audience) in [
        ("To all", json!({ "type": "all_users" })),
        (
            "To some",
            json!({ "type": "explicit_users", "user_ids": ["u3", "u1", "nobody"] }),
        ),
    ] {
        let b = ok(
            post(bc).json(&json!({
                "title": title, "body": format!("{title}: {tricky}"), "audience": audience,
                "created_by": "ops",
            })),
            201,
        )
        .await;
        let id = b["id"].as_str().unwrap().to_string();
        ok(post(&format!("{bc}/{id}/actions/send-now")), 200).await;
        sending.push(id);
    }
    ok(
        post(bc).json(&json!({
            "title": "Draft", "body": "later", "audience": { "type": "all_users" },
        })),
        201,
    )
    .await;
    for round in 0.. {
        run_once(dir, sqlite, "notifications.broadcast");
        let mut all_sent = true;
        for id in &sending {
            let b = ok(http.get(format!("{base}{bc}/{id}")).bearer_auth(ADMIN), 200).await;
            all_sent &= b["status"] == "sent";
        }
        if all_sent {
            break;
        }
        assert!(round < 10, "the broadcasts were not sent");
    }

    // u1 reads one item; the others stay unread.
    let token = jwt("u1");
    let inbox = ok(
        http.get(format!("{base}/v1/notifications"))
            .bearer_auth(&token),
        200,
    )
    .await;
    assert_eq!(inbox["total"], 2, "{inbox}");
    let item = inbox["items"][0]["id"].as_str().unwrap().to_string();
    ok(
        http.post(format!("{base}/v1/notifications/read/{item}"))
            .bearer_auth(&token),
        200,
    )
    .await;

    // An admin browser session (kept in the sessions table).
    let r = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({ "token": ADMIN }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    (held, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_sqlite_to_postgres_keeps_everything() {
    let Some(pg) = std::env::var("WP_LITE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!(
            "copy_sqlite_to_postgres_keeps_everything SKIPPED: WP_LITE_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let schema = PgSchema::new(&pg, "copy");
    let target = schema.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sqlite = format!("sqlite://{}", d.join("wp.db").display());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // The data, made on SQLite; the copy runs while `serve` keeps running on the file.
    let server = Server::start(d, &sqlite);
    let base = server.base.clone();
    let ((held_id, held_token), cookie) = make_data(d, &sqlite, &http, &base).await;
    let before = snapshot(&http, &base).await;
    let statuses = |path: &str| {
        let mut s: Vec<String> = before[path]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["status"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    assert_eq!(
        statuses("/v1/worker/jobs"),
        [
            "canceled",
            "failed",
            "leased",
            "queued",
            "queued",
            "succeeded",
            "succeeded"
        ],
        "every job state is copied"
    );
    assert_eq!(
        statuses("/v1/admin/notifications/broadcasts"),
        ["draft", "sent", "sent"]
    );
    assert_eq!(before["/v1/admin/users"]["total"], 5);
    let u1 = &before["/v1/notifications?limit=200 as u1"];
    assert_eq!(
        (&u1["total"], &u1["unread"]),
        (&json!(2), &json!(1)),
        "{u1}"
    );
    let u2 = &before["/v1/admin/users/u2/notifications?limit=200"];
    assert_eq!(
        u2["total"], 2,
        "a broadcast and a direct notification: {u2}"
    );
    let summary = &before["/v1/admin/telemetry/summary"];
    assert!(
        summary["workers"]["jobs"]["completed"].as_i64() > Some(0),
        "{summary}"
    );
    let o = copy(d, &sqlite, &target);
    assert!(o.status.success(), "copy: {}", text(&o));
    let summary = String::from_utf8_lossy(&o.stdout).to_string();
    for line in ["jobs", "job_events", "users", "broadcasts", "inbox_items"] {
        assert!(
            summary.contains(line),
            "the summary lists {line}: {summary}"
        );
    }
    assert!(
        summary.contains(&format!("{} rows", before["/v1/admin/users"]["total"])),
        "the summary counts the users: {summary}"
    );
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // Served from PostgreSQL, the API says the same.
    let server = Server::start(d, &target);
    let base = server.base.clone();
    let after = snapshot(&http, &base).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, want) in &before {
        assert_eq!(&after[path], want, "{path} differs after the copy");
    }

    // A second copy into the same schema is refused, and changes nothing.
    let o = copy(d, &sqlite, &target);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already holds data"), "{}", text(&o));

    // What was there keeps working: the session, the idempotency key, the lease token.
    let (st, _) = call(
        http.get(format!("{base}/v1/admin/users"))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(st, 200, "the admin session was copied");
    let jobs_before = &before["/v1/worker/jobs"]["items"];
    let first_ok = jobs_before
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["type"] == "copy.ok")
        .unwrap();
    let r = http
        .post(format!("{base}/v1/worker/jobs"))
        .bearer_auth(ADMIN)
        .json(&keyed_job())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let replay: Value = r.json().await.unwrap();
    assert_eq!(replay["job_id"], first_ok["job_id"]);
    let done = ok(
        http.post(format!("{base}/v1/worker/jobs/{held_id}/complete"))
            .bearer_auth(ADMIN)
            .json(&json!({ "worker_id": "w-ext", "lease_token": held_token })),
        200,
    )
    .await;
    assert_eq!(done["status"], "succeeded");

    // New rows get fresh ids: every sequence was moved past the copied rows.
    let new_job = ok(
        http.post(format!("{base}/v1/worker/jobs"))
            .bearer_auth(ADMIN)
            .json(&json!({ "type": "copy.after", "input": {} })),
        201,
    )
    .await;
    let newest = ok(
        http.get(format!("{base}/v1/worker/jobs?limit=1"))
            .bearer_auth(ADMIN),
        200,
    )
    .await;
    assert_eq!(
        newest["items"][0]["job_id"], new_job["job_id"],
        "the new job sorts after every copied one"
    );
    // Its first stored event (canceling it; the `queued` entry is read from the job row).
    let new_id = new_job["job_id"].as_str().unwrap();
    ok(
        http.post(format!("{base}/v1/worker/jobs/{new_id}/cancel"))
            .bearer_auth(ADMIN),
        200,
    )
    .await;
    let events = ok(
        http.get(format!("{base}/v1/worker/jobs/{new_id}/events"))
            .bearer_auth(ADMIN),
        200,
    )
    .await;
    let max_event = max_id(&before, "/v1/worker/jobs/");
    assert!(max_event > 0);
    assert_eq!(events["items"][1]["event"], "canceled", "{events}");
    assert!(
        events["items"][1]["id"].as_i64().unwrap() > max_event,
        "{events} after event {max_event}"
    );
    ok(
        http.put(format!("{base}/v1/admin/users/u9"))
            .bearer_auth(ADMIN)
            .json(&json!({ "email": "u9@example.com" })),
        200,
    )
    .await;
    let users = ok(
        http.get(format!("{base}/v1/admin/users?limit=200"))
            .bearer_auth(ADMIN),
        200,
    )
    .await;
    let ids: Vec<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.last(), Some(&"u9"), "a new user comes last: {ids:?}");
    ok(
        http.post(format!("{base}/v1/admin/notifications/broadcasts"))
            .bearer_auth(ADMIN)
            .json(&json!({
                "title": "After", "body": "copy", "audience": { "type": "all_users" },
            })),
        201,
    )
    .await;
    ok(
        http.post(format!("{base}/v1/worker/jobs"))
            .bearer_auth(ADMIN)
            .json(&json!({
                "type": "notifications.send",
                "input": { "user_id": "u2", "title": "Again", "body": "x", "event_id": "evt-2" },
            })),
        201,
    )
    .await;
    run_once(d, &target, "notifications.send");
    let inbox = ok(
        http.get(format!("{base}/v1/notifications"))
            .bearer_auth(jwt("u2")),
        200,
    )
    .await;
    // Delivered after the copy (the items' internal sequence was moved past the copied
    // rows, or this insert would have collided), under a new UUID.
    assert_eq!(inbox["items"][0]["title"], "Again", "{inbox}");
    let ids: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(ids[1..].iter().all(|id| *id != ids[0]), "{inbox}");
    assert!(uuid::Uuid::parse_str(ids[0]).is_ok(), "{inbox}");

    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    drop(schema);
}
