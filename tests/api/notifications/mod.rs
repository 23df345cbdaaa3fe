//! Notifications (end-user JWTs, broadcasts, the inbox): users, broadcasts under both
//! prefixes with every status guard, every audience type end to end, counters while
//! sending, cancel while sending, resume after a dead worker, `notifications.send` jobs,
//! the inbox with user JWTs, and the bad-input table of every new route: one file per
//! feature below, and here the helpers they share.
//!
//! Delivery is stepped: apps that must control it run with `WorkerSelection::None` and
//! drive `BroadcastWorker::run_tick()` or the store's `deliver_broadcast_chunk` directly.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;
use wp_lite::config::WorkerSelection;
use wp_lite::domain::notify::{ChunkOutcome, DirectNotification, UserId};

const P1: &str = "/v1/admin/notifications/broadcasts";
const P2: &str = "/v1/notifications/admin/broadcasts";
const PREFIXES: [&str; 2] = [P1, P2];
const CHUNK: usize = wp_lite::worker::broadcast::CHUNK;

/// An app whose delivery the test steps itself.
async fn quiet_app() -> TestApp {
    spawn_with(Opts {
        workers: WorkerSelection::None,
        ..Default::default()
    })
    .await
}

/// Percent-encodes one path segment (everything but the unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn user_path(id: &str) -> String {
    format!("/v1/admin/users/{}", enc(id))
}

fn draft(title: &str, audience: Value) -> Value {
    json!({ "title": title, "body": format!("body of {title}"), "audience": audience })
}

fn all_users() -> Value {
    json!({ "type": "all_users" })
}

/// Creates a broadcast under `P1` (201) and returns its view.
async fn create(app: &TestApp, body: Value) -> Value {
    let r = app.admin(Method::POST, P1, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// Creates a broadcast that is due now and returns its id.
async fn create_due(app: &TestApp, title: &str, audience: Value) -> String {
    let mut body = draft(title, audience);
    body["scheduled_at"] = json!(app.now().to_rfc3339());
    let b = create(app, body).await;
    assert_eq!(b["status"], "scheduled", "{b}");
    s(&b["id"])
}

async fn get_b(app: &TestApp, id: &str) -> Value {
    let r = app.admin(Method::GET, &format!("{P1}/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn action(app: &TestApp, prefix: &str, id: &str, name: &str, body: Option<Value>) -> Resp {
    app.admin(
        Method::POST,
        &format!("{prefix}/{id}/actions/{name}"),
        Some(body.unwrap_or(json!({}))),
    )
    .await
}

async fn list_b(app: &TestApp, query: &str) -> Value {
    let r = app.admin(Method::GET, &format!("{P1}?{query}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    r.body
}

/// The admin view of a user's inbox (one page of up to 200).
async fn inbox_of(app: &TestApp, user: &str) -> Value {
    let r = app
        .admin(
            Method::GET,
            &format!("{}/notifications?limit=200", user_path(user)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// The broadcast ids in a user's inbox.
async fn broadcasts_of(app: &TestApp, user: &str) -> Vec<String> {
    inbox_of(app, user).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["broadcast_id"].as_str().map(String::from))
        .collect()
}

/// The inbox sizes of users `{prefix}{i}`, i in `range`, read through the store API.
async fn inbox_totals(app: &TestApp, prefix: &str, range: std::ops::Range<usize>) -> Vec<i64> {
    let prefix = prefix.to_string();
    app.db()
        .call(move |s| {
            range
                .map(|i| {
                    let u = UserId::trusted(format!("{prefix}{i}"));
                    s.inbox_page(&u, 1, 0).map(|p| p.total)
                })
                .collect()
        })
        .await
        .unwrap()
}

fn ended_consistently(b: &Value) {
    let n = |k: &str| b[k].as_i64().unwrap_or_else(|| panic!("{k} in {b}"));
    assert_eq!(
        n("sent") + n("failed") + n("skipped"),
        n("total"),
        "sent + failed + skipped == total: {b}"
    );
}

/// Claims every due broadcast for `owner` through the store (so they stay `sending`).
async fn claim(app: &TestApp, owner: &str) -> Vec<String> {
    let (owner, now) = (owner.to_string(), app.now());
    app.db()
        .call(move |s| s.claim_due_broadcasts(&owner, 10, now + chrono::Duration::seconds(60), now))
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id.to_string())
        .collect()
}

/// Delivers the next chunk of `id` as `owner` through the store.
async fn chunk(app: &TestApp, id: &str, owner: &str) -> ChunkOutcome {
    let (id, owner, now) = (Uuid::parse_str(id).unwrap(), owner.to_string(), app.now());
    app.db()
        .call(move |s| {
            s.deliver_broadcast_chunk(id, &owner, CHUNK, now + chrono::Duration::seconds(60), now)
        })
        .await
        .unwrap()
}

/// Delivers one direct notification to `user` through the store.
async fn direct(app: &TestApp, user: &str, title: &str, meta: Option<Value>, event: Option<&str>) {
    let n = DirectNotification {
        user_id: UserId::parse("user_id", user).unwrap(),
        title: title.into(),
        body: format!("message of {title}"),
        meta,
        event_id: event.map(String::from),
    };
    let now = app.now();
    let d = app
        .db()
        .call(move |s| s.deliver_direct(&n, now))
        .await
        .unwrap();
    assert!(d.created);
}

mod admin_input;
mod broadcasts;
mod delivery;
mod inbox;
mod users;
