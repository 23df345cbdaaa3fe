//! Notifications through the real binary: the README's broadcast scenario end to end
//! (`users import`, `serve --workers none`, an admin session with CSRF, send-now, and
//! `run --name notifications.broadcast --once` as a separate process), crash safety under
//! SIGKILL, two worker processes on one database, `users import` errors and JSON Lines,
//! and invalid `NOTIFICATIONS_BROADCAST_*` values.
//!
//! Nothing here waits a fixed time for something to happen: processes are stepped with
//! `--once`, and what must be observed is polled with a deadline.

mod common;
use common::Served as Server;

use common::{signal, wait_bounded};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;
use wp_lite::clock::SystemClock;
use wp_lite::domain::notify::{Audience, BroadcastDraft, BroadcastStatus, UserId};
use wp_lite::service::broadcasts::BroadcastService;
use wp_lite::storage::{Db, OpenOptions, Store};

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");
const ADMIN: &str = "admin-token-for-notification-cli-tests-0123456789";
const JWT_SECRET: &str = "jwt-secret-for-notification-cli-tests-0123456789";
const CHUNK: i64 = wp_lite::worker::broadcast::CHUNK as i64;

/// Variables of the environment the tests run in that would change what a child does.
const SCRUBBED: &[&str] = &[
    "WP_LITE_DATABASE_URL",
    "WP_LITE_ADMIN_TOKEN",
    "WP_LITE_JWT_SECRET",
    "WP_LITE_WORKERS",
    "WP_LITE_LOG_LEVEL",
    "WP_LITE_LOG_FORMAT",
    "WP_LITE_NO_MIGRATE",
    "RUST_LOG",
    "WORKER_NAME",
    "WORKER_LOG_LEVEL",
    "NOTIFICATIONS_BROADCAST_INTERVAL",
    "NOTIFICATIONS_BROADCAST_JITTER",
    "NOTIFICATIONS_BROADCAST_BATCH_LIMIT",
    "NOTIFICATIONS_BROADCAST_IMMEDIATE",
    "NOTIFICATIONS_BROADCAST_LEASE",
];

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("wp.db").display())
}

/// `wp-lite --database-url <dir>/wp.db ARGS…` in `dir`, with a clean environment.
fn wp(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .args(["--database-url", &db_url(dir)])
        .args(args);
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

fn import(dir: &Path, file: &str, extra: &[&str]) -> Output {
    let mut args = vec!["users", "import", file];
    args.extend_from_slice(extra);
    wp(dir, &args).output().expect("run users import")
}

fn import_ok(dir: &Path, file: &str, n: usize) {
    let o = import(dir, file, &[]);
    assert!(o.status.success(), "import {file}: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("{n} users")),
        "the summary line counts them: {out}"
    );
}

/// Writes `users.csv` with `n` active users `user-{i}` and returns their ids.
fn generated_csv(dir: &Path, name: &str, n: usize) -> Vec<String> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(name)).unwrap());
    writeln!(f, "id,email,plan").unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("user-{i:06}")).collect();
    for id in &ids {
        writeln!(f, "{id},{id}@example.com,pro").unwrap();
    }
    f.flush().unwrap();
    ids
}

/// Opens the test's own handle on the database the processes share.
fn open_store(dir: &Path) -> Arc<dyn Store> {
    wp_lite::storage::open(&db_url(dir), &OpenOptions { migrate: true }).expect("open the store")
}

/// Creates an `all_users` broadcast and sends it now, through the service the API uses.
fn sent_now(store: &Arc<dyn Store>, title: &str) -> Uuid {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let svc = BroadcastService::new(
            Db::new(store.clone()),
            Arc::new(SystemClock),
            Arc::new(tokio::sync::Notify::new()),
        );
        let b = svc
            .create(
                BroadcastDraft {
                    title: title.into(),
                    body: format!("{title}!"),
                    audience: Audience::AllUsers,
                    scheduled_at: None,
                },
                "ops".into(),
            )
            .await
            .unwrap();
        assert_eq!(b.status, BroadcastStatus::Draft);
        let b = svc.send_now(b.id).await.unwrap();
        assert_eq!(b.status, BroadcastStatus::Scheduled);
        b.id
    })
}

/// Asserts, through the store API, that each of `users` has exactly one item of each of
/// `broadcasts` and nothing else.
fn assert_one_receipt_each(store: &Arc<dyn Store>, users: &[String], broadcasts: &[Uuid]) {
    let want: BTreeSet<String> = broadcasts.iter().map(Uuid::to_string).collect();
    let limit = broadcasts.len() + 1;
    for u in users {
        let page = store
            .inbox_page(&UserId::trusted(u.clone()), limit, 0)
            .unwrap();
        let got: Vec<String> = page
            .items
            .iter()
            .map(|i| i.broadcast_id.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            page.total as usize,
            broadcasts.len(),
            "{u} has {} items: {got:?}",
            page.total
        );
        assert_eq!(
            got.iter().cloned().collect::<BTreeSet<_>>(),
            want,
            "{u}: one item per broadcast"
        );
    }
}

impl Server {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = wp(
            dir,
            &["--log-format", "json", "serve", "--bind", "127.0.0.1:0"],
        );
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server::spawn(&mut cmd)
    }
}

/// The session cookies and the CSRF token of an admin login.
struct Session {
    cookie: String,
    csrf: String,
}

async fn login(http: &reqwest::Client, base: &str) -> Session {
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
    assert!(cookie.contains("access_token="), "{cookie}");
    let body: Value = r.json().await.unwrap();
    Session {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_through_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("users.csv"),
        "id,email,is_active,plan,country\n\
         u1,u1@example.com,true,pro,DE\n\
         u2,u2@example.com,1,free,AT\n\
         u3,,true,pro,FR\n\
         u4,u4@example.com,false,pro,DE\n\
         u5,u5@example.com,0,free,DE\n\
         u6,u6@example.com,true,pro,DE\n\
         u7,u7@example.com,,free,\n",
    )
    .unwrap();
    import_ok(d, "users.csv", 7);
    let active = ["u1", "u2", "u3", "u7"];
    let untouched = ["u4", "u5", "u6"];

    let server = Server::start(
        d,
        &["--workers", "none"],
        &[
            ("WP_LITE_ADMIN_TOKEN", ADMIN),
            ("WP_LITE_JWT_SECRET", JWT_SECRET),
        ],
    );
    let base = server.base.clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // What the import made, and a soft delete through the API.
    let (st, u1) = call(
        http.get(format!("{base}/v1/admin/users/u1"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(u1["attributes"], json!({ "plan": "pro", "country": "DE" }));
    assert_eq!(u1["is_active"], true);
    let (_, u4) = call(
        http.get(format!("{base}/v1/admin/users/u4"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(u4["is_active"], false);
    let (st, _) = call(
        http.delete(format!("{base}/v1/admin/users/u6"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(st, 204);

    // The operator's browser session: login, then every change with X-CSRF-Token.
    let s = login(&http, &base).await;
    let seed = json!({
        "title": "Feature launch", "body": "We are live!", "created_by": "ops",
        "audience": { "type": "all_users" }, "scheduled_at": "2025-09-26T12:00:00Z",
    });
    let bc = format!("{base}/v1/admin/notifications/broadcasts");
    let (st, body) = call(http.post(&bc).header("cookie", &s.cookie).json(&seed)).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("csrf_failed"))
    );
    let (st, b) = call(
        http.post(&bc)
            .header("cookie", &s.cookie)
            .header("x-csrf-token", &s.csrf)
            .json(&seed),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(
        b["status"], "scheduled",
        "a past scheduled_at is stored as now"
    );
    assert_eq!(b["created_by"], "ops");
    let (st, b) = call(
        http.post(format!("{bc}/{id}/actions/send-now"))
            .header("cookie", &s.cookie)
            .header("x-csrf-token", &s.csrf),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["status"], "scheduled");

    // `serve --workers none` delivers nothing by itself; a separate process does.
    let (_, b) = call(http.get(format!("{bc}/{id}")).header("cookie", &s.cookie)).await;
    assert_eq!(b["status"], "scheduled");
    let mut run = tokio::process::Command::new(BIN);
    run.current_dir(d).args([
        "--database-url",
        &db_url(d),
        "run",
        "--name",
        "notifications.broadcast",
        "--once",
    ]);
    for v in SCRUBBED {
        run.env_remove(v);
    }
    let o = run.output().await.unwrap();
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "run --once: {}", text(&o));
    let line = format!("broadcast {id} completed status=sent total=4 sent=4 failed=0");
    assert!(
        log.contains(&line),
        "the completion line {line:?} is logged: {log}"
    );

    let (st, b) = call(http.get(format!("{bc}/{id}")).header("cookie", &s.cookie)).await;
    assert_eq!(st, 200);
    assert_eq!(b["status"], "sent", "{b}");
    assert_eq!(
        (
            b["total"].as_i64(),
            b["sent"].as_i64(),
            b["failed"].as_i64(),
            b["skipped"].as_i64()
        ),
        (Some(4), Some(4), Some(0), Some(0)),
        "{b}"
    );
    assert!(
        b["started_at"].is_string() && b["finished_at"].is_string(),
        "{b}"
    );
    let (_, alias) = call(
        http.get(format!("{base}/v1/notifications/admin/broadcasts/{id}"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(alias, b);

    for u in active {
        let (st, inbox) = call(
            http.get(format!("{base}/v1/admin/users/{u}/notifications"))
                .header("cookie", &s.cookie),
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(inbox["total"], 1, "{u}: {inbox}");
        let item = &inbox["items"][0];
        assert_eq!(item["title"], "Feature launch");
        assert_eq!(item["message"], "We are live!");
        assert_eq!(item["broadcast_id"], id.as_str());
        assert_eq!(item["event_id"], format!("broadcast:{id}:{u}"));
    }
    for u in untouched {
        let (_, inbox) = call(
            http.get(format!("{base}/v1/admin/users/{u}/notifications"))
                .bearer_auth(ADMIN),
        )
        .await;
        assert_eq!(inbox["total"], 0, "{u} is inactive or deleted: {inbox}");
    }

    // The end user reads it with a JWT signed by the host application.
    let exp = chrono::Utc::now().timestamp() + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "u1", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let (st, inbox) = call(
        http.get(format!("{base}/v1/notifications"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(st, 200, "{inbox}");
    assert_eq!(
        (inbox["total"].as_i64(), inbox["unread"].as_i64()),
        (Some(1), Some(1))
    );
    let item_id = inbox["items"][0]["id"].as_str().unwrap().to_string();
    let (st, item) = call(
        http.post(format!("{base}/v1/notifications/read/{item_id}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(st, 200, "{item}");
    assert_eq!(item["is_read"], true);
    let (_, n) = call(
        http.get(format!("{base}/v1/notifications/unread-count"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(n, json!({ "unread": 0 }));

    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A `wp-lite run --name notifications.broadcast` child whose log goes to a file.
fn spawn_worker(dir: &Path, log: &Path, env: &[(&str, &str)], once: bool) -> Child {
    let mut args = vec!["run", "--name", "notifications.broadcast"];
    if once {
        args.push("--once");
    }
    let mut cmd = wp(dir, &args);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn wp-lite run")
}

#[test]
fn a_sigkilled_worker_is_resumed_and_nothing_is_delivered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 60_000;
    let users = generated_csv(d, "users.csv", n);
    import_ok(d, "users.csv", n);
    let store = open_store(d);
    let id = sent_now(&store, "Crash");
    let env = [
        ("NOTIFICATIONS_BROADCAST_LEASE", "1"),
        ("NOTIFICATIONS_BROADCAST_INTERVAL", "0.2"),
        ("NOTIFICATIONS_BROADCAST_JITTER", "0"),
    ];

    let mut kills_mid_way = 0;
    let mut last_sent = 0;
    let mut final_log = None;
    for round in 0..15 {
        let log: PathBuf = d.join(format!("worker-{round}.log"));
        let mut child = spawn_worker(d, &log, &env, false);
        // Watch the store; kill -9 as soon as this process has delivered a chunk.
        let deadline = Instant::now() + Duration::from_secs(60);
        let finished = loop {
            let b = store.get_broadcast(id).unwrap();
            if b.status == BroadcastStatus::Sent {
                break true;
            }
            if b.sent > last_sent {
                break false;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the worker exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            assert!(Instant::now() < deadline, "no progress in round {round}");
            std::thread::sleep(Duration::from_millis(2));
        };
        if finished {
            signal(child.id(), "TERM");
            let status = wait_bounded(&mut child, 60, "the worker after SIGTERM");
            assert_eq!(
                status.code(),
                Some(0),
                "{}",
                std::fs::read_to_string(&log).unwrap()
            );
            final_log = Some(std::fs::read_to_string(&log).unwrap());
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let b = store.get_broadcast(id).unwrap();
        if b.status == BroadcastStatus::Sent {
            // It finished between the look and the kill; the next round sees it sent.
            continue;
        }
        kills_mid_way += 1;
        assert_eq!(b.status, BroadcastStatus::Sending, "{b:?}");
        assert!(b.sent > last_sent && b.sent < n as i64, "{b:?}");
        // A chunk's receipts and counters commit together: never a part of a chunk.
        assert_eq!(b.sent % CHUNK, 0, "sent={} is whole chunks", b.sent);
        last_sent = b.sent;
        println!("round {round}: killed with sent={}", b.sent);
    }
    assert!(
        kills_mid_way >= 1,
        "the worker was never killed in the middle of the broadcast"
    );
    let log = final_log.expect("the broadcast reached sent within 15 rounds");

    let b = store.get_broadcast(id).unwrap();
    assert_eq!(b.status, BroadcastStatus::Sent, "{b:?}");
    assert_eq!(
        (b.total, b.sent, b.failed, b.skipped),
        (n as i64, n as i64, 0, 0),
        "{b:?}"
    );
    assert_eq!(b.sent + b.failed + b.skipped, b.total);
    let line = format!("broadcast {id} completed status=sent total={n} sent={n} failed=0");
    assert!(
        log.contains(&line),
        "{line:?} in the last worker's log: {log}"
    );
    assert_one_receipt_each(&store, &users, &[id]);
    store.close();
}

#[test]
fn two_worker_processes_never_claim_the_same_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 15_000;
    let users = generated_csv(d, "users.csv", n);
    import_ok(d, "users.csv", n);
    let store = open_store(d);
    let ids: Vec<Uuid> = (0..3).map(|i| sent_now(&store, &format!("B{i}"))).collect();

    // Each process claims at most two per tick, so both have work whichever goes first.
    let env = [("NOTIFICATIONS_BROADCAST_BATCH_LIMIT", "2")];
    let (log_a, log_b) = (d.join("a.log"), d.join("b.log"));
    let mut a = spawn_worker(d, &log_a, &env, true);
    let mut b = spawn_worker(d, &log_b, &env, true);
    let sa = wait_bounded(&mut a, 120, "worker a");
    let sb = wait_bounded(&mut b, 120, "worker b");
    let (la, lb) = (
        std::fs::read_to_string(&log_a).unwrap(),
        std::fs::read_to_string(&log_b).unwrap(),
    );
    assert!(sa.success() && sb.success(), "a: {la}\nb: {lb}");

    let mut claims: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut per_process = Vec::new();
    for log in [&la, &lb] {
        let mut mine = 0;
        for id in &ids {
            let c = log.matches(&format!("broadcast {id} claimed")).count();
            *claims.entry(*id).or_default() += c;
            mine += c;
            if c == 1 {
                let done =
                    format!("broadcast {id} completed status=sent total={n} sent={n} failed=0");
                assert!(log.contains(&done), "{done:?}: {log}");
            }
        }
        per_process.push(mine);
    }
    for id in &ids {
        assert_eq!(
            claims[id], 1,
            "broadcast {id} was claimed {} times",
            claims[id]
        );
    }
    per_process.sort();
    assert_eq!(
        per_process,
        [1, 2],
        "one process took two, the other the third"
    );

    for id in &ids {
        let b = store.get_broadcast(*id).unwrap();
        assert_eq!(b.status, BroadcastStatus::Sent, "{b:?}");
        assert_eq!(
            (b.total, b.sent, b.failed, b.skipped),
            (n as i64, n as i64, 0, 0)
        );
    }
    assert_one_receipt_each(&store, &users, &ids);
    store.close();
}

#[test]
fn users_import_reports_bad_rows_by_line_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("bad.csv"),
        "id,email,is_active,plan\n\
         ok1,ok1@example.com,true,pro\n\
         ,missing@example.com,true,pro\n\
         ok2,not-an-email,1,free\n\
         ok3,ok3@example.com,maybe,pro\n\
         ok4,,0,free\n\
         ok5,ok5@example.com,true\n",
    )
    .unwrap();
    let o = import(d, "bad.csv", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    for line in [3, 4, 5, 7] {
        assert!(
            err.contains(&format!("line {line}")),
            "line {line} is reported: {err}"
        );
    }
    for line in [2, 6] {
        assert!(
            !err.contains(&format!("line {line}:")),
            "line {line} is fine: {err}"
        );
    }

    std::fs::write(
        d.join("bad.jsonl"),
        "{\"id\": \"j-ok\"}\n\
         {\"id\": \"j-bad\", \"attributes\": {\"plan\": {\"tier\": 1}}}\n\
         \n\
         not json\n\
         [\"j-array\"]\n\
         {\"id\": \"j-ok2\", \"is_active\": \"yes\"}\n",
    )
    .unwrap();
    let o = import(d, "bad.jsonl", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    for line in [2, 4, 5, 6] {
        assert!(
            err.contains(&format!("line {line}")),
            "line {line} is reported: {err}"
        );
    }
    assert!(!err.contains("line 1:"), "{err}");

    // Neither file left anything behind.
    let store = open_store(d);
    let (users, total) = store.list_users(None, 50, 0).unwrap();
    assert_eq!(total, 0, "nothing was imported: {users:?}");
    store.close();

    // A JSON Lines file with typed attributes imports.
    std::fs::write(
        d.join("users.jsonl"),
        "{\"id\": \"j1\", \"email\": \"j1@example.com\", \"attributes\": {\"plan\": \"pro\", \"seats\": 5, \"beta\": true}}\n\
         \n\
         {\"id\": \"j2\", \"is_active\": false, \"unknown\": 1}\n\
         {\"id\": \"j3 with spaces ü\", \"attributes\": {\"country\": \"DE\"}}\n",
    )
    .unwrap();
    import_ok(d, "users.jsonl", 3);
    // The format can be named when the extension does not say.
    std::fs::copy(d.join("users.jsonl"), d.join("users.txt")).unwrap();
    let o = import(d, "users.txt", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--format"), "{}", text(&o));
    let o = import(d, "users.txt", &["--format", "jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(d.join("more.csv"), "id,is_active,tier\nc1,0,gold\n").unwrap();
    import_ok(d, "more.csv", 1);

    let store = open_store(d);
    let (_, total) = store.list_users(None, 50, 0).unwrap();
    assert_eq!(total, 4);
    let j1 = store.get_user(&UserId::trusted("j1".into())).unwrap();
    assert_eq!(
        Value::Object(j1.attributes.0),
        json!({ "plan": "pro", "seats": 5, "beta": true })
    );
    assert_eq!(j1.email.as_deref(), Some("j1@example.com"));
    assert!(j1.is_active);
    let j2 = store.get_user(&UserId::trusted("j2".into())).unwrap();
    assert!(!j2.is_active);
    let j3 = store
        .get_user(&UserId::trusted("j3 with spaces ü".into()))
        .unwrap();
    assert_eq!(Value::Object(j3.attributes.0), json!({ "country": "DE" }));
    let c1 = store.get_user(&UserId::trusted("c1".into())).unwrap();
    assert!(!c1.is_active);
    assert_eq!(
        Value::Object(c1.attributes.0),
        json!({ "tier": "gold" }),
        "CSV columns are string attributes"
    );
    store.close();
}

#[test]
fn invalid_broadcast_settings_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (var, value) in [
        ("NOTIFICATIONS_BROADCAST_INTERVAL", "0.05"),
        ("NOTIFICATIONS_BROADCAST_INTERVAL", "soon"),
        ("NOTIFICATIONS_BROADCAST_INTERVAL", "-1"),
        ("NOTIFICATIONS_BROADCAST_JITTER", "-1"),
        ("NOTIFICATIONS_BROADCAST_JITTER", "a lot"),
        ("NOTIFICATIONS_BROADCAST_BATCH_LIMIT", "0"),
        ("NOTIFICATIONS_BROADCAST_BATCH_LIMIT", "2.5"),
        ("NOTIFICATIONS_BROADCAST_BATCH_LIMIT", "many"),
        ("NOTIFICATIONS_BROADCAST_IMMEDIATE", "yes"),
        ("NOTIFICATIONS_BROADCAST_IMMEDIATE", "2"),
        ("NOTIFICATIONS_BROADCAST_LEASE", "0"),
        ("NOTIFICATIONS_BROADCAST_LEASE", "forever"),
    ] {
        // --once, so that a value wrongly accepted ends the process instead of hanging.
        let mut child = wp(d, &["run", "--name", "notifications.broadcast", "--once"])
            .env(var, value)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, 60, "wp-lite run");
        let o = child.wait_with_output().unwrap();
        assert_eq!(status.code(), Some(2), "{var}={value}: {}", text(&o));
        let t = text(&o);
        assert!(
            t.contains(var),
            "{var}={value}: the reason names the variable: {t}"
        );
    }
    // Valid odd spellings are accepted.
    for (var, value) in [
        ("NOTIFICATIONS_BROADCAST_IMMEDIATE", "FALSE"),
        ("NOTIFICATIONS_BROADCAST_INTERVAL", "0.1"),
        ("NOTIFICATIONS_BROADCAST_JITTER", "0"),
    ] {
        let mut child = wp(d, &["run", "--name", "notifications.broadcast", "--once"])
            .env(var, value)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, 60, "wp-lite run");
        assert_eq!(status.code(), Some(0), "{var}={value}");
    }
    // serve runs the worker by default, so it refuses the same values.
    let mut child = wp(d, &["serve", "--bind", "127.0.0.1:0"])
        .env("WP_LITE_ADMIN_TOKEN", ADMIN)
        .env("NOTIFICATIONS_BROADCAST_BATCH_LIMIT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, 60, "wp-lite serve with a bad setting");
    let o = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("NOTIFICATIONS_BROADCAST_BATCH_LIMIT"),
        "{}",
        text(&o)
    );
}
