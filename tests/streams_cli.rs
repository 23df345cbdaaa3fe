//! The real-time inbox through the real binary: a `serve` with open SSE and WebSocket
//! streams receives a broadcast delivered by a separate `wp-lite run --name
//! notifications.broadcast` process (found through the store, not pushed in-process), a
//! token given in the query string appears in no log line and no metric, and a graceful
//! stop ends the open streams.

mod common;
#[path = "common/live.rs"]
mod live;

use common::{serving_base_logged, signal, wait_bounded_logged};
use live::{Ended, Events, Sse, Ws};
use serde_json::{json, Value};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");
const ADMIN: &str = "admin-token-for-stream-tests-0123456789abcdef";
const JWT_SECRET: &str = "jwt-secret-for-stream-tests-0123456789abcdef";

fn wp(url: &str) -> Command {
    let mut c = Command::new(BIN);
    for v in [
        "WP_LITE_DATABASE_URL",
        "WP_LITE_WORKERS",
        "RUST_LOG",
        "WP_LITE_LOG_LEVEL",
    ] {
        c.env_remove(v);
    }
    c.args(["--database-url", url])
        .env("WP_LITE_ADMIN_TOKEN", ADMIN)
        .env("WP_LITE_JWT_SECRET", JWT_SECRET);
    c
}

fn user_jwt(sub: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": sub, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn admin(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_receive_what_another_process_delivers_and_tokens_stay_out_of_logs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wp.db").display());
    let mut child = wp(&url)
        .args(["--log-format", "json", "--log-level", "debug"])
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (base, log) = serving_base_logged(&mut child);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    admin(
        &http,
        &base,
        "/v1/admin/users/batch",
        json!({ "users": [{ "id": "u1" }, { "id": "u2" }] }),
    )
    .await;

    let token = user_jwt("u1");
    let mut sse = Sse::open(&base, &token, None).await;
    let mut ws = Ws::open(&base, &format!("?token={token}")).await;
    assert_eq!(sse.unread().await, 0);
    assert_eq!(ws.unread().await, 0);

    let b = admin(
        &http,
        &base,
        "/v1/admin/notifications/broadcasts",
        json!({ "title": "From elsewhere", "body": "b",
                "audience": { "type": "explicit_users", "user_ids": ["u1", "u2"] } }),
    )
    .await;
    let id = b["id"].as_str().unwrap();
    admin(
        &http,
        &base,
        &format!("/v1/admin/notifications/broadcasts/{id}/actions/send-now"),
        json!({}),
    )
    .await;
    // Delivered by another process: this serve learns of it from the store.
    let out = wp(&url)
        .args(["run", "--name", "notifications.broadcast", "--once"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = std::time::Instant::now();
    let e = sse.item().await;
    assert_eq!(e.title(), "From elsewhere");
    assert_eq!(ws.item().await.title(), "From elsewhere");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(sse.unread().await, 1);

    let metrics = http
        .get(format!("{base}/v1/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wp_lite_inbox_streams_open 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/v1/notifications/stream\""),
        "{metrics}"
    );
    assert!(!metrics.contains(&token));

    // A graceful stop ends the open streams, and serve exits in time.
    signal(child.id(), "TERM");
    while sse.next().await.is_some() {} // what was sent before the stop, then the end
    let ended = loop {
        if let Err(e) = ws.next().await {
            break e;
        }
    };
    assert_eq!(ended, Ended::Closed(1001));
    let status = wait_bounded_logged(&mut child, 30, "serve after SIGTERM", &log);
    assert!(status.success(), "{status}");

    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("wp-lite serving"), "the log was captured");
    assert!(!log.contains(&token), "a token reached the log");
    assert!(!log.contains("token="), "a query string reached the log");
}
