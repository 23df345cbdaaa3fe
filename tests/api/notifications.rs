//! Notifications (end-user JWTs, broadcasts, the inbox): users, broadcasts under both
//! prefixes with every status guard, every audience type end to end, counters while
//! sending, cancel while sending, resume after a dead worker, `notifications.send` jobs,
//! the inbox with user JWTs, and the bad-input table of every new route.
//!
//! Delivery is stepped: apps that must control it run with `WorkerSelection::None` and
//! drive `BroadcastWorker::run_tick()` or the store's `deliver_broadcast_chunk` directly.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
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

/// Polls `f` every 20 ms until it returns Some, for at most `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_upsert_get_and_soft_delete() {
    let app = quiet_app().await;
    let t0 = app.now();
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/u1",
            Some(json!({
                "email": "u1@example.com",
                "attributes": { "plan": "pro", "seats": 3, "ratio": 0.5, "beta": true },
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let u = r.body;
    assert_eq!(u["id"], "u1");
    assert_eq!(u["email"], "u1@example.com");
    assert_eq!(
        u["attributes"],
        json!({ "plan": "pro", "seats": 3, "ratio": 0.5, "beta": true }),
        "attribute types are kept"
    );
    assert_eq!(u["is_active"], true, "is_active defaults to true");
    assert_eq!(u["deleted_at"], Value::Null);
    assert_eq!(ts(&u["created_at"]), t0);
    assert_eq!(ts(&u["updated_at"]), t0);

    // A second PUT replaces the user; created_at stays.
    app.advance(60);
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/u1",
            Some(json!({ "email": "new@example.com", "attributes": { "plan": "free" }, "is_active": false })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["email"], "new@example.com");
    assert_eq!(r.body["attributes"], json!({ "plan": "free" }));
    assert_eq!(r.body["is_active"], false);
    assert_eq!(ts(&r.body["created_at"]), t0);
    assert_eq!(ts(&r.body["updated_at"]), app.now());

    let r = app.admin(Method::GET, "/v1/admin/users/u1", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["email"], "new@example.com");

    // Soft delete: 204 with no body, and the user is still returned, with deleted_at.
    app.advance(60);
    let r = app.admin(Method::DELETE, "/v1/admin/users/u1", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.body, Value::Null);
    let r = app.admin(Method::GET, "/v1/admin/users/u1", None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a soft-deleted user is still returned"
    );
    assert_eq!(ts(&r.body["deleted_at"]), app.now());
    assert_eq!(r.body["id"], "u1");

    // Unknown users: 404 user_not_found on GET and DELETE.
    app.admin(Method::DELETE, "/v1/admin/users/nobody", None)
        .await
        .assert_error(404, "user_not_found");
    app.admin(Method::GET, "/v1/admin/users/nobody", None)
        .await
        .assert_error(404, "user_not_found");

    // An upsert of a deleted user brings it back.
    let r = app
        .admin(Method::PUT, "/v1/admin/users/u1", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["deleted_at"], Value::Null);
    assert_eq!(r.body["email"], Value::Null);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_upsert_takes_up_to_10000_users_all_or_nothing() {
    let app = quiet_app().await;
    let users: Vec<Value> = (0..10_000)
        .map(|i| json!({ "id": format!("b-{i}"), "email": format!("b{i}@example.com"), "attributes": { "n": i } }))
        .collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": users })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({ "upserted": 10_000 }));
    let r = app
        .admin(Method::GET, "/v1/admin/users?limit=1", None)
        .await;
    assert_eq!(r.body["total"], 10_000);
    let r = app.admin(Method::GET, "/v1/admin/users/b-9999", None).await;
    assert_eq!(r.body["attributes"], json!({ "n": 9999 }));

    // 10 001 is one too many, and none of them is written.
    let over: Vec<Value> = (0..10_001)
        .map(|i| json!({ "id": format!("c-{i}") }))
        .collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": over })),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert!(r.body.to_string().contains("users"), "{}", r.body);
    app.admin(Method::GET, "/v1/admin/users/c-0", None)
        .await
        .assert_error(404, "user_not_found");

    // Empty or missing lists are 400s.
    for body in [json!({ "users": [] }), json!({}), json!({ "users": null })] {
        app.admin(Method::POST, "/v1/admin/users/batch", Some(body))
            .await
            .assert_error(400, "invalid_payload");
    }

    // One bad user fails the whole batch, naming it; nothing is written.
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": [
                { "id": "d-0" }, { "id": "d-1" }, { "id": "d-2", "attributes": { "x": { "y": 1 } } }, { "id": "d-3" },
            ] })),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert!(
        r.body["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"].as_str().unwrap().starts_with("users[2]")),
        "the bad item is named: {}",
        r.body
    );
    app.admin(Method::GET, "/v1/admin/users/d-0", None)
        .await
        .assert_error(404, "user_not_found");

    // Upserting existing users counts them and adds no rows.
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": [{ "id": "b-0", "is_active": false }, { "id": "b-1" }] })),
        )
        .await;
    assert_eq!(r.body, json!({ "upserted": 2 }));
    let r = app
        .admin(Method::GET, "/v1/admin/users?limit=1", None)
        .await;
    assert_eq!(r.body["total"], 10_000);
    let r = app.admin(Method::GET, "/v1/admin/users/b-0", None).await;
    assert_eq!(r.body["is_active"], false);
    app.stop().await;
}

/// A user whose id is literally `batch` is reachable like any other: the batch upsert is
/// the only POST on that path, and a POST on any other user id is a 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_called_batch_can_be_read_replaced_and_deleted() {
    let app = quiet_app().await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/batch",
            Some(json!({ "email": "b@example.com" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], "batch");
    let r = app.admin(Method::GET, "/v1/admin/users/batch", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["email"], "b@example.com");
    // The batch upsert still works beside it, and can even write that user.
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": [{ "id": "batch", "email": "c@example.com" }] })),
        )
        .await;
    assert_eq!(r.body, json!({ "upserted": 1 }));
    let r = app
        .admin(Method::GET, "/v1/admin/users/batch/notifications", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .admin(Method::DELETE, "/v1/admin/users/batch", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app.admin(Method::GET, "/v1/admin/users/batch", None).await;
    assert!(r.body["deleted_at"].is_string(), "{}", r.body);
    assert_eq!(r.body["email"], "c@example.com", "{}", r.body);
    // POST on another user id: a known route, the wrong method, with or without a token.
    let r = app
        .admin(Method::POST, "/v1/admin/users/alice", Some(json!({})))
        .await;
    r.assert_error(405, "method_not_allowed");
    let r = app
        .send_with(Method::POST, "/v1/admin/users/alice", &[], Some(json!({})))
        .await;
    r.assert_error(405, "method_not_allowed");
    // And the batch route still needs the admin.
    let r = app
        .send_with(
            Method::POST,
            "/v1/admin/users/batch",
            &[],
            Some(json!({ "users": [] })),
        )
        .await;
    r.assert_error(401, "unauthorized");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_list_searches_id_and_email_and_pages() {
    let app = quiet_app().await;
    app.put_users(vec![
        json!({ "id": "alice", "email": "alice@example.com" }),
        json!({ "id": "bob", "email": "bob@corp.example" }),
        json!({ "id": "carol", "email": "carol@example.com" }),
        json!({ "id": "dave-ops" }),
        json!({ "id": "erin", "email": "ops@corp.example" }),
    ])
    .await;
    let ids = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| s(&u["id"]))
            .collect()
    };
    let list = |q: String| {
        let app = &app;
        async move {
            let r = app
                .admin(Method::GET, &format!("/v1/admin/users?{q}"), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
            r.body
        }
    };
    let all = list(String::new()).await;
    assert_eq!(all["total"], 5);
    assert_eq!(ids(&all), ["alice", "bob", "carol", "dave-ops", "erin"]);
    assert_eq!(all["limit"], 50);
    assert_eq!(all["offset"], 0);
    assert_eq!(all["has_next"], false);

    let r = list("q=corp".into()).await;
    assert_eq!(ids(&r), ["bob", "erin"], "email matches");
    assert_eq!(r["total"], 2);
    let r = list("q=ops".into()).await;
    assert_eq!(ids(&r), ["dave-ops", "erin"], "id and email matches");
    let r = list("q=arol".into()).await;
    assert_eq!(ids(&r), ["carol"]);
    for wild in ["%25", "_", "%5C"] {
        let r = list(format!("q={wild}")).await;
        assert_eq!(r["total"], 0, "q={wild} is a literal substring: {r}");
    }
    let r = list("q=nothing-like-this".into()).await;
    assert_eq!(r["total"], 0);
    assert_eq!(r["items"], json!([]));

    let r = list("limit=2".into()).await;
    assert_eq!(ids(&r), ["alice", "bob"]);
    assert_eq!(r["has_next"], true);
    assert_eq!(r["total"], 5);
    assert_eq!(r["limit"], 2);
    let r = list("limit=2&offset=2".into()).await;
    assert_eq!(ids(&r), ["carol", "dave-ops"]);
    assert_eq!(r["offset"], 2);
    assert_eq!(r["has_next"], true);
    let r = list("limit=2&offset=4".into()).await;
    assert_eq!(ids(&r), ["erin"]);
    assert_eq!(r["has_next"], false);
    let r = list("q=example&limit=1&offset=1".into()).await;
    assert_eq!(ids(&r), ["bob"]);
    assert_eq!(r["total"], 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_values_must_be_strings_numbers_or_booleans() {
    let app = quiet_app().await;
    for attrs in [
        json!({ "a": { "b": 1 } }),
        json!({ "a": [1, 2] }),
        json!({ "a": [] }),
        json!({ "a": null }),
        json!({ "ok": 1, "a": {} }),
        json!([1, 2]),
        json!("plan=pro"),
        json!(5),
        json!(true),
    ] {
        let r = app
            .admin(
                Method::PUT,
                "/v1/admin/users/attr",
                Some(json!({ "attributes": attrs })),
            )
            .await;
        r.assert_error(400, "invalid_payload");
        assert!(
            r.body["error"]["fields"][0]["field"]
                .as_str()
                .unwrap_or("")
                .starts_with("attributes"),
            "{attrs}: {}",
            r.body
        );
        let r = app
            .admin(
                Method::POST,
                "/v1/admin/users/batch",
                Some(json!({ "users": [{ "id": "attr", "attributes": attrs }] })),
            )
            .await;
        r.assert_error(400, "invalid_payload");
    }
    app.admin(Method::GET, "/v1/admin/users/attr", None)
        .await
        .assert_error(404, "user_not_found");
    // Scalars are fine.
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/attr",
            Some(json!({ "attributes": { "s": "x", "i": -3, "f": 2.5, "b": false } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_with_spaces_and_unicode_are_percent_encoded_in_paths() {
    let app = quiet_app().await;
    let long128 = "é".repeat(128);
    let ids = [
        "Jane Doe",
        "ünï cødé 用户 🚀",
        "a/b",
        "50%off",
        "q?x=1&y#z",
        "plus+sign",
        long128.as_str(),
    ];
    for id in ids {
        let r = app
            .admin(
                Method::PUT,
                &user_path(id),
                Some(json!({ "email": "x@example.com" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "PUT {id:?}: {}", r.body);
        assert_eq!(r.body["id"], id);
        let r = app.admin(Method::GET, &user_path(id), None).await;
        assert_eq!(r.status, StatusCode::OK, "GET {id:?}: {}", r.body);
        assert_eq!(r.body["id"], id);
    }
    let r = app
        .admin(Method::GET, "/v1/admin/users?limit=200", None)
        .await;
    let listed: BTreeSet<String> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| s(&u["id"]))
        .collect();
    assert_eq!(listed, ids.iter().map(|s| s.to_string()).collect());
    let r = app
        .admin(
            Method::GET,
            &format!("/v1/admin/users?q={}", enc("用户")),
            None,
        )
        .await;
    assert_eq!(r.body["total"], 1, "{}", r.body);

    // A broadcast to such ids reaches them; the admin view and the user's JWT agree.
    let id = create_due(
        &app,
        "unicode",
        json!({ "type": "explicit_users", "user_ids": ["Jane Doe", "ünï cødé 用户 🚀"] }),
    )
    .await;
    app.deliver_due().await;
    let b = get_b(&app, &id).await;
    assert_eq!(
        (b["sent"].as_i64(), b["skipped"].as_i64()),
        (Some(2), Some(0)),
        "{b}"
    );
    for u in ["Jane Doe", "ünï cødé 用户 🚀"] {
        assert_eq!(broadcasts_of(&app, u).await, [id.as_str()]);
        let r = app
            .send(
                Method::GET,
                "/v1/notifications",
                Some(&app.user_jwt(u, 600)),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["total"], 1);
        assert_eq!(
            r.body["items"][0]["event_id"],
            format!("broadcast:{id}:{u}")
        );
    }

    // 129 characters, or control characters, are a 400 in every user path.
    let long = "é".repeat(129);
    for bad in [long.as_str(), "tab\there", "nul\0", "line\nbreak"] {
        for (m, suffix) in [
            (Method::GET, ""),
            (Method::PUT, ""),
            (Method::DELETE, ""),
            (Method::GET, "/notifications"),
        ] {
            let body = (m == Method::PUT).then(|| json!({}));
            let r = app
                .admin(m.clone(), &format!("{}{suffix}", user_path(bad)), body)
                .await;
            r.assert_error(400, "invalid_payload");
        }
    }
    for id in ids {
        let r = app.admin(Method::DELETE, &user_path(id), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "DELETE {id:?}");
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Broadcasts: routes, statuses and guards
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broadcast_route_works_under_both_prefixes() {
    let app = quiet_app().await;
    app.put_plain_users("u", 3).await;
    for (prefix, other) in [(P1, P2), (P2, P1)] {
        let r = app
            .admin(Method::POST, prefix, Some(draft("T", all_users())))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{prefix}: {}", r.body);
        let id = s(&r.body["id"]);
        assert_eq!(r.body["status"], "draft");
        for p in [prefix, other] {
            let r = app.admin(Method::GET, &format!("{p}/{id}"), None).await;
            assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.body);
            assert_eq!(r.body["id"], id.as_str());
            let r = app.admin(Method::GET, p, None).await;
            assert_eq!(r.status, StatusCode::OK);
            assert!(
                r.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["id"] == id.as_str()),
                "{p} lists {id}"
            );
        }
        let r = app
            .admin(
                Method::PUT,
                &format!("{prefix}/{id}"),
                Some(draft("T2", all_users())),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["title"], "T2");
        let at = app.now() + chrono::Duration::hours(1);
        let r = action(
            &app,
            prefix,
            &id,
            "schedule",
            Some(json!({ "scheduled_at": at.to_rfc3339() })),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "scheduled");
        assert_eq!(ts(&r.body["scheduled_at"]), at);
        let r = action(&app, prefix, &id, "send-now", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "scheduled");
        assert_eq!(ts(&r.body["scheduled_at"]), app.now());
        let r = action(&app, prefix, &id, "cancel", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "cancelled");
        let r = app
            .admin(Method::DELETE, &format!("{prefix}/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        for p in [prefix, other] {
            app.admin(Method::GET, &format!("{p}/{id}"), None)
                .await
                .assert_error(404, "broadcast_not_found");
        }

        // And one delivered end to end, driven through this prefix.
        let r = app
            .admin(Method::POST, prefix, Some(draft("go", all_users())))
            .await;
        let id = s(&r.body["id"]);
        let r = action(&app, prefix, &id, "send-now", None).await;
        assert_eq!(r.status, StatusCode::OK);
        app.deliver_due().await;
        let r = app
            .admin(Method::GET, &format!("{prefix}/{id}"), None)
            .await;
        assert_eq!(r.body["status"], "sent", "{}", r.body);
        assert_eq!(r.body["sent"], 3);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_makes_a_draft_or_a_scheduled_broadcast() {
    let app = quiet_app().await;
    app.put_plain_users("u", 2).await;
    let now = app.now();

    let d = create(&app, draft("Draft", all_users())).await;
    assert_eq!(d["status"], "draft");
    assert_eq!(d["title"], "Draft");
    assert_eq!(d["body"], "body of Draft");
    assert_eq!(d["audience"], all_users());
    assert_eq!(d["created_by"], "admin", "defaults to the principal");
    assert_eq!(ts(&d["created_at"]), now);
    assert_eq!(ts(&d["updated_at"]), now);
    for k in ["scheduled_at", "started_at", "finished_at"] {
        assert_eq!(d[k], Value::Null, "{k}");
    }
    for k in ["total", "sent", "failed", "skipped"] {
        assert_eq!(d[k], 0, "{k}");
    }
    Uuid::parse_str(d["id"].as_str().unwrap()).expect("the id is a UUID");
    let mut with_null = draft("Null", all_users());
    with_null["scheduled_at"] = Value::Null;
    assert_eq!(create(&app, with_null).await["status"], "draft");

    // A future time with an offset is kept (in UTC).
    let mut body = draft("Later", all_users());
    body["scheduled_at"] = json!("2026-01-02T14:00:00+02:00");
    body["created_by"] = json!("ops");
    let later = create(&app, body).await;
    assert_eq!(later["status"], "scheduled");
    assert_eq!(
        ts(&later["scheduled_at"]),
        "2026-01-02T12:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );
    assert_eq!(later["created_by"], "ops");

    // A past time is stored as now.
    let mut body = draft("Feature launch", all_users());
    body["scheduled_at"] = json!("2025-09-26T12:00:00Z");
    let past = create(&app, body).await;
    assert_eq!(past["status"], "scheduled");
    assert_eq!(ts(&past["scheduled_at"]), now);

    // A tick delivers what is due, not what is later, nor drafts.
    app.deliver_due().await;
    assert_eq!(
        get_b(&app, past["id"].as_str().unwrap()).await["status"],
        "sent"
    );
    assert_eq!(
        get_b(&app, later["id"].as_str().unwrap()).await["status"],
        "scheduled"
    );
    assert_eq!(
        get_b(&app, d["id"].as_str().unwrap()).await["status"],
        "draft"
    );
    app.clock.set("2026-01-02T12:00:00Z".parse().unwrap());
    app.deliver_due().await;
    let b = get_b(&app, later["id"].as_str().unwrap()).await;
    assert_eq!(b["status"], "sent");
    assert_eq!(ts(&b["started_at"]), app.now());
    assert_eq!(ts(&b["finished_at"]), app.now());
    assert_eq!(
        get_b(&app, d["id"].as_str().unwrap()).await["status"],
        "draft"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_errors_are_400s_that_name_the_problem() {
    let app = quiet_app().await;
    let too_long = "x".repeat(129);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "type": "explicit_users" }),
            "explicit_users audience requires user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": null }),
            "explicit_users audience requires user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": [] }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": ["", "  "] }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": "u1" }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": [1] }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": [too_long] }),
            "user_ids",
        ),
        (json!({ "type": "segment" }), "filters"),
        (json!({ "type": "segment", "filters": {} }), "filters"),
        (json!({ "type": "segment", "filters": [] }), "filters"),
        (
            json!({ "type": "segment", "filters": { "plan": { "a": 1 } } }),
            "plan",
        ),
        (
            json!({ "type": "segment", "filters": { "plan": [] } }),
            "plan",
        ),
        (
            json!({ "type": "segment", "filters": { "plan": [["pro"]] } }),
            "plan",
        ),
        (
            json!({ "type": "segment", "filters": { "plan": null } }),
            "plan",
        ),
        (json!({ "type": "everyone" }), "unknown audience type"),
        (json!({ "type": 5 }), "type"),
        (json!({}), "type"),
        (json!("all_users"), "audience"),
        (json!(["all_users"]), "audience"),
    ];
    let target = s(&create(&app, draft("target", all_users())).await["id"]);
    for (audience, needle) in cases {
        let r = app
            .admin(Method::POST, P1, Some(draft("x", audience.clone())))
            .await;
        r.assert_error(400, "invalid_payload");
        let message = s(&r.body["error"]["message"]);
        assert!(
            message.contains(needle),
            "{audience}: message {message:?} should name {needle:?}"
        );
        assert!(
            r.body["error"]["fields"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{}",
            r.body
        );
        // The same rules on a replacement.
        let r = app
            .admin(
                Method::PUT,
                &format!("{P1}/{target}"),
                Some(draft("x", audience.clone())),
            )
            .await;
        r.assert_error(400, "invalid_payload");
    }
    // More than 100 000 distinct ids.
    let ids: Vec<String> = (0..100_001).map(|i| format!("{i:x}")).collect();
    let r = app
        .admin(
            Method::POST,
            P1,
            Some(draft(
                "x",
                json!({ "type": "explicit_users", "user_ids": ids }),
            )),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    let r = list_b(&app, "").await;
    assert_eq!(r["total"], 1, "nothing but the target was created");
    assert_eq!(get_b(&app, &target).await["title"], "target");
    app.stop().await;
}

/// One broadcast in each status; returns status → id.
async fn one_of_each_status(app: &TestApp) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    // sending: claimed by an owner that never delivers.
    let sending = create_due(app, "sending", all_users()).await;
    assert_eq!(claim(app, "stuck-owner").await, [sending.as_str()]);
    m.insert("sending", sending);
    // sent: delivered by a tick.
    let sent = create_due(app, "sent", all_users()).await;
    app.deliver_due().await;
    assert_eq!(get_b(app, &sent).await["status"], "sent");
    m.insert("sent", sent);
    // failed: claimed, then failed.
    let failed = create_due(app, "failed", all_users()).await;
    assert_eq!(claim(app, "failing-owner").await, [failed.as_str()]);
    let (fid, now) = (Uuid::parse_str(&failed).unwrap(), app.now());
    let f = app
        .db()
        .call(move |s| s.fail_broadcast(fid, "failing-owner", "boom", now))
        .await
        .unwrap();
    assert!(f.is_some());
    assert_eq!(get_b(app, &failed).await["status"], "failed");
    m.insert("failed", failed);
    // cancelled, draft, scheduled (later).
    let cancelled = s(&create(app, draft("cancelled", all_users())).await["id"]);
    assert_eq!(
        action(app, P1, &cancelled, "cancel", None).await.body["status"],
        "cancelled"
    );
    m.insert("cancelled", cancelled);
    m.insert(
        "draft",
        s(&create(app, draft("draft", all_users())).await["id"]),
    );
    let mut later = draft("scheduled", all_users());
    later["scheduled_at"] = json!((app.now() + chrono::Duration::days(1)).to_rfc3339());
    m.insert("scheduled", s(&create(app, later).await["id"]));
    for (status, id) in &m {
        assert_eq!(get_b(app, id).await["status"], *status);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_guard_is_a_409_invalid_status() {
    let app = quiet_app().await;
    app.put_plain_users("u", 2).await;
    let ids = one_of_each_status(&app).await;
    let later = json!({ "scheduled_at": (app.now() + chrono::Duration::hours(2)).to_rfc3339() });

    for p in PREFIXES {
        for status in ["sending", "sent", "failed", "cancelled"] {
            let id = &ids[status];
            app.admin(
                Method::PUT,
                &format!("{p}/{id}"),
                Some(draft("edited", all_users())),
            )
            .await
            .assert_error(409, "invalid_status");
            action(&app, p, id, "send-now", None)
                .await
                .assert_error(409, "invalid_status");
            action(&app, p, id, "schedule", Some(later.clone()))
                .await
                .assert_error(409, "invalid_status");
        }
        for status in ["sent", "failed", "cancelled"] {
            action(&app, p, &ids[status], "cancel", None)
                .await
                .assert_error(409, "invalid_status");
        }
        for status in ["scheduled", "sending", "sent", "failed"] {
            app.admin(Method::DELETE, &format!("{p}/{}", ids[status]), None)
                .await
                .assert_error(409, "invalid_status");
        }
    }
    // Nothing changed.
    for (status, id) in &ids {
        let b = get_b(&app, id).await;
        assert_eq!(b["status"], *status, "{b}");
        assert_ne!(b["title"], "edited");
    }

    // What the guards allow: edits and schedules of draft and scheduled.
    let r = app
        .admin(
            Method::PUT,
            &format!("{P1}/{}", ids["scheduled"]),
            Some(draft("now a draft", all_users())),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "draft", "no scheduled_at: back to draft");
    assert_eq!(r.body["scheduled_at"], Value::Null);
    let mut body = draft(
        "scheduled again",
        json!({ "type": "explicit_users", "user_ids": ["u0"] }),
    );
    body["scheduled_at"] = later["scheduled_at"].clone();
    let r = app
        .admin(Method::PUT, &format!("{P1}/{}", ids["draft"]), Some(body))
        .await;
    assert_eq!(r.body["status"], "scheduled", "{}", r.body);
    assert_eq!(r.body["audience"]["user_ids"], json!(["u0"]));
    let r = action(&app, P1, &ids["scheduled"], "schedule", Some(later.clone())).await;
    assert_eq!(r.body["status"], "scheduled", "{}", r.body);

    // Cancel from sending (the stuck one) is allowed.
    let r = action(&app, P1, &ids["sending"], "cancel", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");

    // Delete: draft and cancelled only, then 404 everywhere.
    let fresh_draft = s(&create(&app, draft("to delete", all_users())).await["id"]);
    for id in [&fresh_draft, &ids["cancelled"]] {
        let r = app.admin(Method::DELETE, &format!("{P2}/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        for p in PREFIXES {
            app.admin(Method::GET, &format!("{p}/{id}"), None)
                .await
                .assert_error(404, "broadcast_not_found");
            app.admin(Method::DELETE, &format!("{p}/{id}"), None)
                .await
                .assert_error(404, "broadcast_not_found");
            app.admin(
                Method::PUT,
                &format!("{p}/{id}"),
                Some(draft("x", all_users())),
            )
            .await
            .assert_error(404, "broadcast_not_found");
            for a in ["send-now", "cancel"] {
                action(&app, p, id, a, None)
                    .await
                    .assert_error(404, "broadcast_not_found");
            }
            action(&app, p, id, "schedule", Some(later.clone()))
                .await
                .assert_error(404, "broadcast_not_found");
        }
        let listed = list_b(&app, "limit=200").await;
        assert!(
            !listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["id"] == id.as_str()),
            "a deleted broadcast is not listed"
        );
    }
    // An unknown but well-formed id.
    let unknown = Uuid::now_v7().to_string();
    app.admin(Method::GET, &format!("{P1}/{unknown}"), None)
        .await
        .assert_error(404, "broadcast_not_found");
    action(&app, P1, &unknown, "cancel", None)
        .await
        .assert_error(404, "broadcast_not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_sending_broadcast_after_the_chunk_in_hand() {
    let app = quiet_app().await;
    let n = CHUNK + 5;
    app.put_plain_users("u", n).await;
    let id = create_due(&app, "big", all_users()).await;
    assert_eq!(claim(&app, "w1").await, [id.as_str()]);
    let b = get_b(&app, &id).await;
    assert_eq!(b["status"], "sending");
    assert_eq!(b["total"], n);
    match chunk(&app, &id, "w1").await {
        ChunkOutcome::Progress(b) => assert_eq!(b.sent, CHUNK as i64),
        other => panic!("expected progress, got {other:?}"),
    }
    app.advance(1);
    let r = action(&app, P1, &id, "cancel", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["sent"], CHUNK);
    assert_eq!(ts(&r.body["finished_at"]), app.now());

    // The worker's next chunk finds its claim gone.
    assert_eq!(chunk(&app, &id, "w1").await, ChunkOutcome::Stopped);
    // Nor does a later tick pick it up again.
    app.advance(120);
    app.deliver_due().await;
    let b = get_b(&app, &id).await;
    assert_eq!(b["status"], "cancelled");
    assert_eq!(b["sent"], CHUNK, "counters keep what was delivered: {b}");
    assert_eq!(b["total"], n);
    assert_eq!(b["failed"], 0);
    let totals = inbox_totals(&app, "u", 0..n).await;
    assert!(
        totals[..CHUNK].iter().all(|t| *t == 1),
        "the delivered chunk stays"
    );
    assert!(
        totals[CHUNK..].iter().all(|t| *t == 0),
        "no more after cancel"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_status_counts_and_recipients() {
    let app = quiet_app().await;
    app.put_plain_users("u", 3).await;
    // sending (total 3), then sent ×2 (3 and 2), failed (1), and the rest.
    let sending = create_due(&app, "Zeta", all_users()).await;
    claim(&app, "stuck").await;
    app.advance(1);
    let sent1 = create_due(&app, "Epsilon", all_users()).await;
    app.advance(1);
    let sent2 = create_due(
        &app,
        "Alpha sent",
        json!({ "type": "explicit_users", "user_ids": ["u0", "u1"] }),
    )
    .await;
    app.deliver_due().await;
    app.advance(1);
    let failed = create_due(
        &app,
        "Eta",
        json!({ "type": "explicit_users", "user_ids": ["u0"] }),
    )
    .await;
    claim(&app, "doomed").await;
    let (fid, now) = (Uuid::parse_str(&failed).unwrap(), app.now());
    app.db()
        .call(move |s| s.fail_broadcast(fid, "doomed", "boom", now))
        .await
        .unwrap();
    app.advance(1);
    let mut b = draft("Alpha launch", all_users());
    b["created_by"] = json!("ops");
    let d1 = s(&create(&app, b).await["id"]);
    app.advance(1);
    let mut b = draft("Beta", all_users());
    b["body"] = json!("the alpha inside the body");
    b["created_by"] = json!("marketing");
    let d2 = s(&create(&app, b).await["id"]);
    app.advance(1);
    let mut b = draft("Gamma", all_users());
    b["created_by"] = json!("alpha-team");
    b["scheduled_at"] = json!((app.now() + chrono::Duration::days(1)).to_rfc3339());
    let s1 = s(&create(&app, b).await["id"]);
    app.advance(1);
    let c1 = s(&create(&app, draft("Delta", all_users())).await["id"]);
    action(&app, P1, &c1, "cancel", None).await;

    let ids = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| s(&x["id"]))
            .collect()
    };
    let counts = |draft: i64,
                  scheduled: i64,
                  sending: i64,
                  sent: i64,
                  failed: i64,
                  cancelled: i64| {
        json!({ "draft": draft, "scheduled": scheduled, "sending": sending, "sent": sent, "failed": failed, "cancelled": cancelled })
    };

    let all = list_b(&app, "").await;
    assert_eq!(all["total"], 8);
    assert_eq!(
        ids(&all),
        [
            c1.as_str(),
            s1.as_str(),
            d2.as_str(),
            d1.as_str(),
            failed.as_str(),
            sent2.as_str(),
            sent1.as_str(),
            sending.as_str()
        ],
        "newest first"
    );
    assert_eq!(all["status_counts"], counts(2, 1, 1, 2, 1, 1));
    assert_eq!(all["recipients"], 3 + 3 + 2 + 1);
    assert_eq!(all["limit"], 50);
    assert_eq!(all["offset"], 0);
    assert_eq!(all["has_next"], false);
    let alias = app.admin(Method::GET, P2, None).await;
    assert_eq!(alias.body, all, "the alias lists the same");

    // statuses is repeatable; status_counts ignore it.
    let r = list_b(&app, "statuses=draft&statuses=sent").await;
    assert_eq!(
        ids(&r),
        [d2.as_str(), d1.as_str(), sent2.as_str(), sent1.as_str()]
    );
    assert_eq!(r["total"], 4);
    assert_eq!(r["status_counts"], counts(2, 1, 1, 2, 1, 1));
    assert_eq!(r["recipients"], 5);
    let r = list_b(&app, "statuses=sending").await;
    assert_eq!(ids(&r), [sending.as_str()]);
    assert_eq!(r["recipients"], 3);

    // q: a substring of title, body or created_by; counts under q.
    let r = list_b(&app, "q=lpha").await;
    assert_eq!(
        ids(&r),
        [s1.as_str(), d2.as_str(), d1.as_str(), sent2.as_str()],
        "title, body and created_by match"
    );
    assert_eq!(r["total"], 4);
    assert_eq!(r["status_counts"], counts(2, 1, 0, 1, 0, 0));
    assert_eq!(r["recipients"], 2);
    let r = list_b(&app, "q=lpha&statuses=sent&statuses=scheduled").await;
    assert_eq!(ids(&r), [s1.as_str(), sent2.as_str()]);
    assert_eq!(r["status_counts"], counts(2, 1, 0, 1, 0, 0));
    let r = list_b(&app, "q=marketing").await;
    assert_eq!(ids(&r), [d2.as_str()]);
    for q in ["nothing-matches", "%25", "_"] {
        let r = list_b(&app, &format!("q={q}")).await;
        assert_eq!(r["total"], 0, "q={q}: {r}");
        assert_eq!(r["items"], json!([]));
        assert_eq!(r["status_counts"], counts(0, 0, 0, 0, 0, 0), "all six keys");
        assert_eq!(r["recipients"], 0);
    }

    // Paging.
    let r = list_b(&app, "limit=3").await;
    assert_eq!(ids(&r), [c1.as_str(), s1.as_str(), d2.as_str()]);
    assert_eq!(r["has_next"], true);
    assert_eq!(r["total"], 8);
    assert_eq!(r["limit"], 3);
    let r = list_b(&app, "limit=3&offset=6").await;
    assert_eq!(ids(&r), [sent1.as_str(), sending.as_str()]);
    assert_eq!(r["has_next"], false);
    assert_eq!(r["offset"], 6);
    let r = list_b(&app, "limit=3&offset=100").await;
    assert_eq!(r["items"], json!([]));
    assert_eq!(r["total"], 8);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audience_type_end_to_end() {
    let app = quiet_app().await;
    app.put_users(vec![
        json!({ "id": "a1", "attributes": { "plan": "pro", "country": "DE", "seats": 5, "beta": true } }),
        json!({ "id": "a2", "attributes": { "plan": "pro", "country": "AT", "seats": "5", "beta": "true" } }),
        json!({ "id": "a3", "attributes": { "plan": "pro", "country": "FR", "seats": 10, "beta": false } }),
        json!({ "id": "a4", "attributes": { "plan": "free", "country": "DE", "seats": 5 } }),
        json!({ "id": "a5", "is_active": false, "attributes": { "plan": "pro", "country": "DE", "seats": 5, "beta": true } }),
        json!({ "id": "a6", "attributes": { "plan": "pro", "country": "AT", "seats": 5, "beta": true } }),
        json!({ "id": "a7" }),
    ])
    .await;
    let r = app.admin(Method::DELETE, "/v1/admin/users/a6", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let seg = |filters: Value| json!({ "type": "segment", "filters": filters });
    // (audience, who receives it, total, skipped)
    let cases: Vec<(Value, Vec<&str>, i64, i64)> = vec![
        (all_users(), vec!["a1", "a2", "a3", "a4", "a7"], 5, 0),
        (
            json!({ "type": "explicit_users", "user_ids": ["a1", "a1", " ", "", "ghost", "a5", "a6", "a2", "a2"] }),
            vec!["a1", "a2"],
            5,
            3,
        ),
        (
            seg(json!({ "plan": "pro", "country": ["DE", "AT"] })),
            vec!["a1", "a2"],
            2,
            0,
        ),
        (
            seg(json!({ "plan": ["pro", "free"], "country": "DE" })),
            vec!["a1", "a4"],
            2,
            0,
        ),
        (seg(json!({ "seats": 5 })), vec!["a1", "a4"], 2, 0),
        (
            seg(json!({ "seats": [5, 10] })),
            vec!["a1", "a3", "a4"],
            3,
            0,
        ),
        (seg(json!({ "seats": "5" })), vec!["a2"], 1, 0),
        (seg(json!({ "seats": 5.0 })), vec!["a1", "a4"], 2, 0),
        (seg(json!({ "beta": true })), vec!["a1"], 1, 0),
        (seg(json!({ "beta": false })), vec!["a3"], 1, 0),
        (seg(json!({ "beta": "true" })), vec!["a2"], 1, 0),
        (seg(json!({ "country": ["FR", 5, true] })), vec!["a3"], 1, 0),
        (seg(json!({ "plan": "enterprise" })), vec![], 0, 0),
        (seg(json!({ "no_such_attribute": "x" })), vec![], 0, 0),
    ];
    let mut ids = Vec::new();
    for (i, (audience, ..)) in cases.iter().enumerate() {
        ids.push(create_due(&app, &format!("case {i}"), audience.clone()).await);
    }
    // The explicit audience is shown deduplicated, blanks dropped, in order.
    assert_eq!(
        get_b(&app, &ids[1]).await["audience"],
        json!({ "type": "explicit_users", "user_ids": ["a1", "ghost", "a5", "a6", "a2"] })
    );
    for _ in 0..cases.len() {
        app.deliver_due().await;
    }
    let mut inboxes = BTreeMap::new();
    for u in ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "ghost"] {
        inboxes.insert(u, broadcasts_of(&app, u).await);
    }
    for (i, (audience, receivers, total, skipped)) in cases.iter().enumerate() {
        let b = get_b(&app, &ids[i]).await;
        assert_eq!(b["status"], "sent", "{audience}: {b}");
        assert_eq!(b["total"], *total, "{audience}: {b}");
        assert_eq!(b["sent"], receivers.len(), "{audience}: {b}");
        assert_eq!(b["skipped"], *skipped, "{audience}: {b}");
        assert_eq!(b["failed"], 0, "{audience}: {b}");
        ended_consistently(&b);
        let got: Vec<&str> = inboxes
            .iter()
            .filter(|(_, bs)| bs.contains(&ids[i]))
            .map(|(u, _)| *u)
            .collect();
        assert_eq!(&got, receivers, "{audience}: who received it");
    }
    for u in ["a5", "a6", "ghost"] {
        assert!(inboxes[u].is_empty(), "{u} is inactive, deleted or unknown");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_grow_chunk_by_chunk_and_a_dead_worker_is_resumed_without_duplicates() {
    let app = quiet_app().await;
    let n = 25_000;
    app.put_plain_users("u", n).await;

    // Chunk by chunk, a client polling the broadcast sees sent grow.
    let id = create_due(&app, "big", all_users()).await;
    assert_eq!(claim(&app, "w1").await, [id.as_str()]);
    let mut seen = Vec::new();
    loop {
        let outcome = chunk(&app, &id, "w1").await;
        let b = get_b(&app, &id).await;
        assert_eq!(b["total"], n);
        seen.push(b["sent"].as_i64().unwrap());
        match outcome {
            ChunkOutcome::Progress(_) => assert_eq!(b["status"], "sending", "{b}"),
            ChunkOutcome::Finished(_) => {
                assert_eq!(b["status"], "sent", "{b}");
                ended_consistently(&b);
                break;
            }
            ChunkOutcome::Stopped => panic!("the claim was lost"),
        }
        assert!(seen.len() < 10, "too many chunks: {seen:?}");
    }
    assert_eq!(seen, [10_000, 20_000, 25_000]);

    // A worker that dies after one chunk: nobody else takes the broadcast while its
    // claim holds; once the claim has expired, a later tick resumes from the cursor.
    let id2 = create_due(&app, "resumed", all_users()).await;
    assert_eq!(claim(&app, "dies").await, [id2.as_str()]);
    assert!(matches!(
        chunk(&app, &id2, "dies").await,
        ChunkOutcome::Progress(_)
    ));
    app.advance(30);
    app.deliver_due().await;
    let b = get_b(&app, &id2).await;
    assert_eq!(b["status"], "sending", "the claim still holds: {b}");
    assert_eq!(b["sent"], CHUNK);
    app.advance(31);
    app.deliver_due().await;
    let b = get_b(&app, &id2).await;
    assert_eq!(b["status"], "sent", "{b}");
    assert_eq!(b["sent"], n);
    assert_eq!(b["total"], n);
    ended_consistently(&b);
    // The dead worker coming back finds its claim gone.
    assert_eq!(chunk(&app, &id2, "dies").await, ChunkOutcome::Stopped);
    let totals = inbox_totals(&app, "u", 0..n).await;
    assert!(
        totals.iter().all(|t| *t == 2),
        "every user has exactly one item per broadcast"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_now_wakes_the_in_process_worker_at_once() {
    assert!(
        std::env::var_os("NOTIFICATIONS_BROADCAST_INTERVAL").is_none(),
        "this test relies on the default 30 s interval"
    );
    // The default workers: notifications.broadcast runs in the process and ticks every 30 s.
    let app = spawn_app().await;
    app.put_plain_users("u", 3).await;
    let id = s(&create(&app, draft("now", all_users())).await["id"]);
    let r = action(&app, P1, &id, "send-now", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = eventually(10, "the broadcast to be sent", || async {
        let b = get_b(&app, &id).await;
        (b["status"] == "sent").then_some(b)
    })
    .await;
    assert_eq!(b["sent"], 3);
    ended_consistently(&b);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_now_during_a_long_delivery_still_starts_at_once() {
    // A send-now that arrives while the in-process worker is busy delivering another
    // broadcast must not be lost: the second one starts right after, not 30 s later.
    assert!(
        std::env::var_os("NOTIFICATIONS_BROADCAST_INTERVAL").is_none(),
        "this test relies on the default 30 s interval"
    );
    let app = spawn_app().await;
    let n = 100_000;
    app.put_plain_users("u", n).await;
    let second = s(&create(
        &app,
        draft(
            "second",
            json!({ "type": "explicit_users", "user_ids": ["u1"] }),
        ),
    )
    .await["id"]);
    let first = s(&create(&app, draft("first", all_users())).await["id"]);
    action(&app, P1, &first, "send-now", None).await;
    eventually(10, "the first broadcast to be sending", || async {
        (get_b(&app, &first).await["status"] == "sending").then_some(())
    })
    .await;
    let r = action(&app, P1, &second, "send-now", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let still = get_b(&app, &first).await;
    assert_eq!(
        still["status"], "sending",
        "the send-now must arrive while the first broadcast is being delivered"
    );
    // The next regular tick is at least 25 s after the busy one ends: 20 s tells them apart.
    eventually(20, "the second broadcast to be sent", || async {
        (get_b(&app, &second).await["status"] == "sent").then_some(())
    })
    .await;
    let b = get_b(&app, &first).await;
    assert_eq!(b["status"], "sent");
    assert_eq!(b["sent"], n);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// notifications.send
// ---------------------------------------------------------------------------------------

/// Polls a job until it is succeeded or failed.
async fn finished_job(app: &TestApp, id: &str) -> Value {
    eventually(10, "the job to finish", || async {
        let j = app.job(id).await;
        matches!(j["status"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_send_jobs_deliver_once_per_event_id() {
    let app = spawn_app().await;
    let input = json!({
        "user_id": "alice", "title": "Invoice ready", "body": "Your invoice #42 is ready",
        "meta": { "invoice": 42 }, "event_id": "invoice:42",
    });
    let j1 = app
        .enqueue(json!({ "type": "notifications.send", "input": input }))
        .await;
    let j1 = finished_job(&app, &s(&j1["job_id"])).await;
    assert_eq!(j1["status"], "succeeded", "{j1}");
    assert_eq!(j1["result"]["duplicate"], false, "{j1}");
    assert_eq!(j1["result"]["delivered"], true, "{j1}");

    let j2 = app
        .enqueue(json!({ "type": "notifications.send", "input": input }))
        .await;
    let j2 = finished_job(&app, &s(&j2["job_id"])).await;
    assert_eq!(j2["status"], "succeeded", "{j2}");
    assert_eq!(
        j2["result"]["duplicate"], true,
        "the second is a no-op that says so: {j2}"
    );
    assert_eq!(j2["result"]["item_id"], j1["result"]["item_id"]);

    let inbox = inbox_of(&app, "alice").await;
    assert_eq!(inbox["total"], 1, "{inbox}");
    let item = &inbox["items"][0];
    assert_eq!(item["title"], "Invoice ready");
    assert_eq!(item["message"], "Your invoice #42 is ready");
    assert_eq!(item["meta"], json!({ "invoice": 42 }));
    assert_eq!(item["event_id"], "invoice:42");
    assert_eq!(item["is_read"], false);
    assert_eq!(item["id"], j1["result"]["item_id"]);

    // Without an event_id nothing is deduplicated.
    for _ in 0..2 {
        let j = app
            .enqueue(json!({ "type": "notifications.send", "input": { "user_id": "alice", "title": "Ping", "body": "pong" } }))
            .await;
        assert_eq!(
            finished_job(&app, &s(&j["job_id"])).await["status"],
            "succeeded"
        );
    }
    assert_eq!(inbox_of(&app, "alice").await["total"], 3);

    // Bad input fails the job at once (not retried) and delivers nothing.
    for bad in [
        json!({ "title": "t", "body": "b" }),
        json!({ "user_id": 5, "title": "t", "body": "b" }),
        json!({ "user_id": "", "title": "t", "body": "b" }),
        json!({ "user_id": "x".repeat(129), "title": "t", "body": "b" }),
        json!({ "user_id": "bob", "body": "b" }),
        json!({ "user_id": "bob", "title": "", "body": "b" }),
        json!({ "user_id": "bob", "title": "t" }),
        json!({ "user_id": "bob", "title": "t", "body": "b", "meta": "m" }),
        json!({ "user_id": "bob", "title": "t", "body": "b", "event_id": 7 }),
        json!({ "user_id": "bob", "title": "x".repeat(100_000), "body": "b" }),
    ] {
        let j = app
            .enqueue(json!({ "type": "notifications.send", "input": bad }))
            .await;
        let j = finished_job(&app, &s(&j["job_id"])).await;
        assert_eq!(j["status"], "failed", "{bad}: {j}");
        assert_eq!(j["attempts"], 1, "not retried: {j}");
        assert!(j["last_error"].is_string(), "{j}");
    }
    assert_eq!(inbox_of(&app, "bob").await["total"], 0);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Inbox
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_routes_need_a_valid_unexpired_hs256_jwt() {
    use jsonwebtoken::Algorithm;
    let app = quiet_app().await;
    direct(&app, "alice", "hello", None, None).await;
    let now = app.now().timestamp();
    let good = app.user_jwt("alice", 600);
    let r = app
        .send(Method::GET, "/v1/notifications", Some(&good), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["total"], 1);

    let none_alg = unsigned_jwt("alice", now + 600);
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[1] = b64url(json!({ "sub": "bob", "exp": now + 600 }).to_string());
        parts.join(".")
    };
    let bad_tokens: Vec<(&str, String)> = vec![
        ("expired", app.user_jwt("alice", -1)),
        ("expiring this second", app.user_jwt("alice", 0)),
        ("wrong signature", jwt("another-secret", "alice", now + 600)),
        (
            "HS384",
            jwt_claims(
                Algorithm::HS384,
                JWT_SECRET,
                json!({ "sub": "alice", "exp": now + 600 }),
            ),
        ),
        (
            "HS512",
            jwt_claims(
                Algorithm::HS512,
                JWT_SECRET,
                json!({ "sub": "alice", "exp": now + 600 }),
            ),
        ),
        ("alg none", none_alg),
        ("tampered claims", tampered),
        (
            "no exp",
            jwt_claims(Algorithm::HS256, JWT_SECRET, json!({ "sub": "alice" })),
        ),
        (
            "no sub",
            jwt_claims(Algorithm::HS256, JWT_SECRET, json!({ "exp": now + 600 })),
        ),
        ("empty sub", jwt(JWT_SECRET, "", now + 600)),
        (
            "numeric sub",
            jwt_claims(
                Algorithm::HS256,
                JWT_SECRET,
                json!({ "sub": 5, "exp": now + 600 }),
            ),
        ),
        (
            "string exp",
            jwt_claims(
                Algorithm::HS256,
                JWT_SECRET,
                json!({ "sub": "alice", "exp": "later" }),
            ),
        ),
        (
            "not valid yet (nbf)",
            jwt_claims(
                Algorithm::HS256,
                JWT_SECRET,
                json!({ "sub": "alice", "exp": now + 600, "nbf": now + 60 }),
            ),
        ),
        (
            "an audience none is configured for",
            jwt_claims(
                Algorithm::HS256,
                JWT_SECRET,
                json!({ "sub": "alice", "exp": now + 600, "aud": "other-app" }),
            ),
        ),
        ("garbage", "not.a.jwt".into()),
        ("empty", String::new()),
        ("admin token", ADMIN.into()),
        ("worker token", WORKER.into()),
    ];
    let routes = [
        (Method::GET, "/v1/notifications"),
        (Method::GET, "/v1/notifications/unread-count"),
        (Method::POST, "/v1/notifications/read-all"),
        (Method::POST, "/v1/notifications/read/1"),
    ];
    for (m, path) in &routes {
        let r = app.send(m.clone(), path, None, None).await;
        r.assert_error(401, "unauthorized");
        for (name, token) in &bad_tokens {
            let header = format!("Bearer {token}");
            let r = app
                .send_with(m.clone(), path, &[("authorization", header.as_str())], None)
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{name} on {path}: {}",
                r.body
            );
            r.assert_error(401, "unauthorized");
        }
        let r = app
            .send_with(m.clone(), path, &[("x-admin-key", ADMIN)], None)
            .await;
        r.assert_error(401, "unauthorized");
    }
    let r = app
        .send(
            Method::GET,
            "/v1/notifications",
            Some(&app.user_jwt("alice", -1)),
            None,
        )
        .await;
    assert!(
        s(&r.body["error"]["message"]).contains("expired"),
        "{}",
        r.body
    );
    // Expiry is checked against the (injected) clock.
    let soon = app.user_jwt("alice", 60);
    app.advance(61);
    app.send(Method::GET, "/v1/notifications", Some(&soon), None)
        .await
        .assert_error(401, "unauthorized");
    // Nothing was marked read by the refused calls.
    assert_eq!(inbox_of(&app, "alice").await["unread"], 1);

    // A user JWT is no admin credential.
    let good = app.user_jwt("alice", 600);
    for (m, path) in [
        (Method::GET, "/v1/admin/users".to_string()),
        (
            Method::GET,
            "/v1/admin/users/alice/notifications".to_string(),
        ),
        (Method::GET, P1.to_string()),
        (Method::GET, P2.to_string()),
    ] {
        app.send(m, &path, Some(&good), None)
            .await
            .assert_error(401, "unauthorized");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_jwt_secret_user_routes_say_so() {
    let app = spawn_with(Opts {
        jwt_secret: None,
        workers: WorkerSelection::None,
        ..Default::default()
    })
    .await;
    let token = app.user_jwt("alice", 600);
    for (m, path) in [
        (Method::GET, "/v1/notifications"),
        (Method::GET, "/v1/notifications/unread-count"),
        (Method::POST, "/v1/notifications/read-all"),
        (Method::POST, "/v1/notifications/read/1"),
    ] {
        for t in [Some(token.as_str()), None] {
            let r = app.send(m.clone(), path, t, None).await;
            r.assert_error(401, "unauthorized");
            let msg = s(&r.body["error"]["message"]);
            assert!(
                msg.contains("jwt-secret"),
                "{path} (token: {}): the message says no secret is configured: {msg}",
                t.is_some()
            );
        }
    }
    // Admins still read any inbox.
    direct(&app, "alice", "hi", None, None).await;
    assert_eq!(inbox_of(&app, "alice").await["total"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_lists_newest_first_reads_idempotently_and_keeps_users_apart() {
    let app = quiet_app().await;
    app.put_users(vec![json!({ "id": "alice" }), json!({ "id": "bob" })])
        .await;
    let b1 = create_due(
        &app,
        "B1",
        json!({ "type": "explicit_users", "user_ids": ["alice", "bob"] }),
    )
    .await;
    app.deliver_due().await;
    app.advance(60);
    direct(&app, "alice", "D1", Some(json!({ "k": [1, "two"] })), None).await;
    app.advance(60);
    let b2 = create_due(
        &app,
        "B2",
        json!({ "type": "explicit_users", "user_ids": ["alice"] }),
    )
    .await;
    app.deliver_due().await;
    app.advance(60);
    direct(&app, "alice", "D2", None, Some("evt-d2")).await;
    let t_last = app.now();

    let alice = app.user_jwt("alice", 3600);
    let bob = app.user_jwt("bob", 3600);
    let get = |token: &str, path: &str| {
        let (app, token, path) = (&app, token.to_string(), path.to_string());
        async move {
            let r = app.send(Method::GET, &path, Some(&token), None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            r.body
        }
    };
    let titles = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| s(&i["title"]))
            .collect()
    };

    let page = get(&alice, "/v1/notifications").await;
    assert_eq!(titles(&page), ["D2", "B2", "D1", "B1"], "newest first");
    assert_eq!(page["unread"], 4);
    assert_eq!(page["total"], 4);
    assert_eq!(page["has_more"], false);
    assert_eq!(page["limit"], 50);
    assert_eq!(page["offset"], 0);
    let items = page["items"].as_array().unwrap().clone();
    let (d2, b2_item, d1, b1_item) = (&items[0], &items[1], &items[2], &items[3]);
    assert_eq!(ts(&d2["created_at"]), t_last);
    assert_eq!(d2["event_id"], "evt-d2");
    assert_eq!(d2["message"], "message of D2");
    assert_eq!(b2_item["type"], "broadcast");
    assert_eq!(b2_item["broadcast_id"], b2.as_str());
    assert_eq!(b2_item["event_id"], format!("broadcast:{b2}:alice"));
    assert_eq!(b2_item["message"], "body of B2");
    assert_eq!(b1_item["event_id"], format!("broadcast:{b1}:alice"));
    assert_eq!(d1["meta"], json!({ "k": [1, "two"] }));
    assert_ne!(d1["type"], "broadcast");
    for i in &items {
        assert_eq!(i["is_read"], false);
        assert_eq!(i["read_at"], Value::Null);
        assert!(uuid::Uuid::parse_str(&s(&i["id"])).is_ok(), "{i}");
    }

    let p = get(&alice, "/v1/notifications?limit=2").await;
    assert_eq!(titles(&p), ["D2", "B2"]);
    assert_eq!(
        (
            p["has_more"].as_bool(),
            p["limit"].as_i64(),
            p["total"].as_i64()
        ),
        (Some(true), Some(2), Some(4))
    );
    let p = get(&alice, "/v1/notifications?limit=2&offset=2").await;
    assert_eq!(titles(&p), ["D1", "B1"]);
    assert_eq!(
        (p["has_more"].as_bool(), p["offset"].as_i64()),
        (Some(false), Some(2))
    );
    let p = get(&alice, "/v1/notifications?offset=4").await;
    assert_eq!(p["items"], json!([]));
    assert_eq!(p["has_more"], false);
    assert_eq!(
        get(&alice, "/v1/notifications/unread-count").await,
        json!({ "unread": 4 })
    );
    let pb = get(&bob, "/v1/notifications").await;
    assert_eq!(titles(&pb), ["B1"]);
    let bob_b1 = pb["items"][0].clone();
    assert_eq!(bob_b1["event_id"], format!("broadcast:{b1}:bob"));

    // Read is idempotent: 200 twice, the same read_at.
    let d1_id = s(&d1["id"]);
    assert!(
        uuid::Uuid::parse_str(&d1_id).is_ok_and(|u| u.get_version_num() == 7),
        "{d1}"
    );
    app.advance(5);
    let t_read = app.now();
    let r = app
        .send(
            Method::POST,
            &format!("/v1/notifications/read/{d1_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], d1_id);
    assert_eq!(r.body["is_read"], true);
    assert_eq!(ts(&r.body["read_at"]), t_read);
    assert_eq!(r.body["title"], "D1");
    app.advance(60);
    let again = app
        .send(
            Method::POST,
            &format!("/v1/notifications/read/{d1_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body, r.body, "reading a read item changes nothing");
    assert_eq!(
        get(&alice, "/v1/notifications/unread-count").await,
        json!({ "unread": 3 })
    );

    // Another user's item is a 404, and is left alone.
    let unknown = uuid::Uuid::now_v7().to_string();
    for item in [d1_id.clone(), s(&b1_item["id"]), unknown] {
        app.send(
            Method::POST,
            &format!("/v1/notifications/read/{item}"),
            Some(&bob),
            None,
        )
        .await
        .assert_error(404, "not_found");
    }
    let after = get(&alice, "/v1/notifications").await;
    assert_eq!(
        after["items"][3]["is_read"], false,
        "alice's B1 is still unread"
    );
    let r = app
        .send(Method::POST, "/v1/notifications/read-all", Some(&bob), None)
        .await;
    assert_eq!(r.body, json!({ "updated": 1 }));
    assert_eq!(
        get(&alice, "/v1/notifications/unread-count").await,
        json!({ "unread": 3 })
    );

    // Read-all.
    let r = app
        .send(
            Method::POST,
            "/v1/notifications/read-all",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({ "updated": 3 }));
    let r = app
        .send(
            Method::POST,
            "/v1/notifications/read-all",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.body, json!({ "updated": 0 }));
    let page = get(&alice, "/v1/notifications").await;
    assert_eq!(page["unread"], 0);
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["is_read"] == true));
    assert_eq!(
        page["items"][2]["read_at"], again.body["read_at"],
        "read_at kept"
    );

    // The admin view shows the same, in the same shape.
    let admin = inbox_of(&app, "alice").await;
    assert_eq!(admin["items"], page["items"]);
    assert_eq!(
        (admin["total"].as_i64(), admin["unread"].as_i64()),
        (Some(4), Some(0))
    );
    let r = app
        .admin(
            Method::GET,
            "/v1/admin/users/alice/notifications?limit=1&offset=1",
            None,
        )
        .await;
    assert_eq!(titles(&r.body), ["B2"]);
    assert_eq!(
        (
            r.body["has_more"].as_bool(),
            r.body["limit"].as_i64(),
            r.body["offset"].as_i64()
        ),
        (Some(true), Some(1), Some(1))
    );

    // A sub that is not a mirrored user simply has an empty inbox.
    let stranger = get(&app.user_jwt("stranger", 60), "/v1/notifications").await;
    assert_eq!(
        stranger,
        json!({ "items": [], "unread": 0, "total": 0, "has_more": false, "limit": 50, "offset": 0 })
    );
    assert_eq!(inbox_of(&app, "stranger").await["total"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_of_10000_items_pages_correctly() {
    let app = quiet_app().await;
    let now = app.now();
    app.db()
        .call(move |s| {
            for i in 0..10_000 {
                s.deliver_direct(
                    &DirectNotification {
                        user_id: UserId::trusted("heavy".into()),
                        title: format!("n{i}"),
                        body: "b".into(),
                        meta: None,
                        event_id: Some(format!("heavy-{i}")),
                    },
                    now,
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    direct(&app, "light", "only", None, None).await;
    let heavy = app.user_jwt("heavy", 600);
    let r = app
        .send(Method::GET, "/v1/notifications", Some(&heavy), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 50);
    assert_eq!(items[0]["event_id"], "heavy-9999", "newest first");
    assert_eq!(items[49]["event_id"], "heavy-9950");
    assert_eq!(
        (r.body["total"].as_i64(), r.body["unread"].as_i64()),
        (Some(10_000), Some(10_000))
    );
    assert_eq!(r.body["has_more"], true);
    let r = app
        .send(
            Method::GET,
            "/v1/notifications?limit=200&offset=9900",
            Some(&heavy),
            None,
        )
        .await;
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 100);
    assert_eq!(items[0]["event_id"], "heavy-99");
    assert_eq!(items[99]["event_id"], "heavy-0");
    assert_eq!(r.body["has_more"], false);
    let r = app
        .send(
            Method::GET,
            "/v1/notifications/unread-count",
            Some(&heavy),
            None,
        )
        .await;
    assert_eq!(r.body, json!({ "unread": 10_000 }));
    let light = app
        .send(
            Method::GET,
            "/v1/notifications",
            Some(&app.user_jwt("light", 600)),
            None,
        )
        .await;
    assert_eq!(light.body["total"], 1);
    let r = app
        .send(
            Method::POST,
            "/v1/notifications/read-all",
            Some(&heavy),
            None,
        )
        .await;
    assert_eq!(r.body, json!({ "updated": 10_000 }));
    assert_eq!(inbox_of(&app, "light").await["unread"], 1);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Authentication of the new admin routes, and the bad-input table
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_admin_credentials_and_csrf_with_a_session() {
    let app = quiet_app().await;
    let id = s(&create(&app, draft("x", all_users())).await["id"]);
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/admin/users".into(), None),
        (
            Method::POST,
            "/v1/admin/users/batch".into(),
            Some(json!({ "users": [{ "id": "z" }] })),
        ),
        (Method::GET, "/v1/admin/users/z".into(), None),
        (Method::PUT, "/v1/admin/users/z".into(), Some(json!({}))),
        (Method::DELETE, "/v1/admin/users/z".into(), None),
        (Method::GET, "/v1/admin/users/z/notifications".into(), None),
        (Method::GET, P1.into(), None),
        (Method::POST, P1.into(), Some(draft("y", all_users()))),
        (Method::GET, format!("{P2}/{id}"), None),
        (
            Method::PUT,
            format!("{P1}/{id}"),
            Some(draft("y", all_users())),
        ),
        (Method::DELETE, format!("{P2}/{id}"), None),
        (
            Method::POST,
            format!("{P1}/{id}/actions/send-now"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("{P2}/{id}/actions/schedule"),
            Some(json!({ "scheduled_at": "2030-01-01T00:00:00Z" })),
        ),
        (
            Method::POST,
            format!("{P1}/{id}/actions/cancel"),
            Some(json!({})),
        ),
    ];
    for (m, path, body) in &routes {
        for token in [None, Some("wrong"), Some(WORKER)] {
            let r = app.send(m.clone(), path, token, body.clone()).await;
            assert!(
                matches!(r.status.as_u16(), 401 | 403),
                "{m} {path} with {token:?}: {}",
                r.status
            );
            if token != Some(WORKER) {
                r.assert_error(401, "unauthorized");
            }
        }
    }
    // A session works, with the CSRF header on mutations.
    let (cookie, csrf) = app.login().await;
    let r = app
        .send_with(
            Method::POST,
            P1,
            &[("cookie", cookie.as_str())],
            Some(draft("s", all_users())),
        )
        .await;
    r.assert_error(403, "csrf_failed");
    let r = app
        .send_with(
            Method::POST,
            P1,
            &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
            Some(draft("s", all_users())),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["created_by"], "admin");
    let r = app
        .send_with(
            Method::GET,
            "/v1/admin/users",
            &[("cookie", cookie.as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .send_with(
            Method::PUT,
            "/v1/admin/users/z",
            &[("cookie", cookie.as_str()), ("x-csrf-token", "wrong")],
            Some(json!({})),
        )
        .await;
    r.assert_error(403, "csrf_failed");
    // X-Admin-Key works too.
    let r = app
        .send_with(Method::GET, P2, &[("x-admin-key", ADMIN)], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.stop().await;
}

/// What a bad-input case sends.
enum Body {
    None,
    Json(Value),
    Raw(Option<&'static str>, Vec<u8>),
}

struct Case {
    method: Method,
    path: String,
    token: String,
    body: Body,
    status: u16,
    code: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_on_every_new_route_is_a_4xx_never_a_500() {
    let app = quiet_app().await;
    app.put_users(vec![json!({ "id": "u1" })]).await;
    let target = s(&create(&app, draft("target", all_users())).await["id"]);
    direct(&app, "u1", "item", None, None).await;
    let user = app.user_jwt("u1", 3600);
    let long = "x".repeat(100_000);
    let mut cases: Vec<Case> = Vec::new();
    let mut add =
        |method: Method, path: &str, token: &str, body: Body, status: u16, code: &'static str| {
            cases.push(Case {
                method,
                path: path.to_string(),
                token: token.to_string(),
                body,
                status,
                code,
            })
        };
    let raw_json = |s: &str| Body::Raw(Some("application/json"), s.as_bytes().to_vec());

    // Shared body abuse for every JSON body route: malformed, arrays, scalars, empty,
    // wrong content types.
    let body_routes: Vec<(Method, String)> = {
        let mut v = vec![
            (Method::PUT, "/v1/admin/users/u1".to_string()),
            (Method::POST, "/v1/admin/users/batch".to_string()),
        ];
        for p in PREFIXES {
            v.push((Method::POST, p.to_string()));
            v.push((Method::PUT, format!("{p}/{target}")));
            v.push((Method::POST, format!("{p}/{target}/actions/schedule")));
        }
        v
    };
    for (m, path) in &body_routes {
        for raw in [
            "{",
            "{\"title\":",
            "[]",
            "[1,2]",
            "\"x\"",
            "5",
            "null",
            "",
            "{} {}",
            "{\"a\":1}x",
        ] {
            add(
                m.clone(),
                path,
                ADMIN,
                raw_json(raw),
                400,
                "invalid_payload",
            );
        }
        add(
            m.clone(),
            path,
            ADMIN,
            Body::Raw(Some("text/plain"), b"{}".to_vec()),
            415,
            "unsupported_media_type",
        );
        add(
            m.clone(),
            path,
            ADMIN,
            Body::Raw(None, b"{}".to_vec()),
            415,
            "unsupported_media_type",
        );
        add(
            m.clone(),
            path,
            ADMIN,
            Body::Raw(Some("application/x-www-form-urlencoded"), b"a=1".to_vec()),
            415,
            "unsupported_media_type",
        );
    }

    // Users.
    let put_u1 = |b: Value| (Method::PUT, "/v1/admin/users/u1", Body::Json(b));
    for (m, path, body) in [
        put_u1(json!({ "email": 5 })),
        put_u1(json!({ "email": long })),
        put_u1(json!({ "email": "not-an-email" })),
        put_u1(json!({ "is_active": "yes" })),
        put_u1(json!({ "is_active": 1 })),
        put_u1(json!({ "attributes": [1] })),
        put_u1(json!({ "attributes": { "a": long } })),
        put_u1(json!({ "attributes": { long.as_str(): 1 } })),
        put_u1(json!({ "attributes": { "a": { "b": 1 } } })),
    ] {
        add(m, path, ADMIN, body, 400, "invalid_payload");
    }
    add(
        Method::PUT,
        "/v1/admin/users/u1",
        ADMIN,
        raw_json(r#"{"attributes": {"a": 1e400}}"#),
        400,
        "invalid_payload",
    );
    add(
        Method::POST,
        P1,
        ADMIN,
        raw_json(
            r#"{"title": "t", "body": "b", "audience": {"type": "segment", "filters": {"n": 1e400}}}"#,
        ),
        400,
        "invalid_payload",
    );
    let batch = |b: Value| Body::Json(b);
    for b in [
        json!({ "users": "u1" }),
        json!({ "users": { "id": "u1" } }),
        json!({ "users": [1] }),
        json!({ "users": [["u1"]] }),
        json!({ "users": [null] }),
        json!({ "users": [{}] }),
        json!({ "users": [{ "id": 5 }] }),
        json!({ "users": [{ "id": "" }] }),
        json!({ "users": [{ "id": long }] }),
        json!({ "users": [{ "id": "a\u{0}b" }] }),
        json!({ "users": [{ "id": "ok", "is_active": "yes" }] }),
        json!({ "users": [{ "id": "ok", "email": long }] }),
    ] {
        add(
            Method::POST,
            "/v1/admin/users/batch",
            ADMIN,
            batch(b),
            400,
            "invalid_payload",
        );
    }
    for q in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=1.5",
        "offset=-1",
        "offset=x",
        "offset=10001",
    ] {
        add(
            Method::GET,
            &format!("/v1/admin/users?{q}"),
            ADMIN,
            Body::None,
            400,
            "invalid_payload",
        );
        add(
            Method::GET,
            &format!("/v1/admin/users/u1/notifications?{q}"),
            ADMIN,
            Body::None,
            400,
            "invalid_payload",
        );
        add(
            Method::GET,
            &format!("/v1/notifications?{q}"),
            &user,
            Body::None,
            400,
            "invalid_payload",
        );
        for p in PREFIXES {
            add(
                Method::GET,
                &format!("{p}?{q}"),
                ADMIN,
                Body::None,
                400,
                "invalid_payload",
            );
        }
    }
    // As long as a URI may be (the http crate stops at 64 KiB).
    let long_q = "q".repeat(60_000);
    add(
        Method::GET,
        &format!("/v1/admin/users?q={long_q}"),
        ADMIN,
        Body::None,
        400,
        "invalid_payload",
    );
    let long_id = enc(&"x".repeat(129));
    for suffix in ["", "/notifications"] {
        add(
            Method::GET,
            &format!("/v1/admin/users/{long_id}{suffix}"),
            ADMIN,
            Body::None,
            400,
            "invalid_payload",
        );
        add(
            Method::GET,
            &format!("/v1/admin/users/a%00b{suffix}"),
            ADMIN,
            Body::None,
            400,
            "invalid_payload",
        );
        add(
            Method::GET,
            &format!("/v1/admin/users/%FF%FE{suffix}"),
            ADMIN,
            Body::None,
            400,
            "invalid_payload",
        );
    }
    add(
        Method::DELETE,
        &format!("/v1/admin/users/{long_id}"),
        ADMIN,
        Body::None,
        400,
        "invalid_payload",
    );
    add(
        Method::PUT,
        &format!("/v1/admin/users/{long_id}"),
        ADMIN,
        Body::Json(json!({})),
        400,
        "invalid_payload",
    );

    // Broadcasts.
    let good = draft("t", all_users());
    let with = |over: Value| {
        let mut b = good.clone();
        for (k, v) in over.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let without = |k: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let bad_drafts = vec![
        without("title"),
        without("body"),
        without("audience"),
        with(json!({ "title": "" })),
        with(json!({ "title": long })),
        with(json!({ "title": "x".repeat(201) })),
        with(json!({ "title": 5 })),
        with(json!({ "title": ["t"] })),
        with(json!({ "body": "" })),
        with(json!({ "body": long })),
        with(json!({ "body": "x".repeat(10_001) })),
        with(json!({ "body": { "text": "b" } })),
        with(json!({ "audience": null })),
        with(json!({ "audience": "all_users" })),
        with(json!({ "audience": { "type": long } })),
        with(json!({ "audience": { "type": "explicit_users", "user_ids": [long] } })),
        with(json!({ "audience": { "type": "segment", "filters": { long.as_str(): "x" } } })),
        with(json!({ "created_by": long })),
        with(json!({ "created_by": 5 })),
        with(json!({ "scheduled_at": "2026-01-02T12:00:00" })),
        with(json!({ "scheduled_at": "2026-01-02 12:00:00" })),
        with(json!({ "scheduled_at": "2026-01-02" })),
        with(json!({ "scheduled_at": "tomorrow" })),
        with(json!({ "scheduled_at": "" })),
        with(json!({ "scheduled_at": 1_767_268_800 })),
        with(json!({ "scheduled_at": long })),
        with(json!({ "scheduled_at": "2026-13-45T99:00:00Z" })),
    ];
    for p in PREFIXES {
        for b in &bad_drafts {
            add(
                Method::POST,
                p,
                ADMIN,
                Body::Json(b.clone()),
                400,
                "invalid_payload",
            );
            add(
                Method::PUT,
                &format!("{p}/{target}"),
                ADMIN,
                Body::Json(b.clone()),
                400,
                "invalid_payload",
            );
        }
        for b in [
            json!({}),
            json!({ "scheduled_at": null }),
            json!({ "scheduled_at": "2026-01-02T12:00:00" }),
            json!({ "scheduled_at": "next week" }),
            json!({ "scheduled_at": 5 }),
            json!({ "scheduled_at": long }),
        ] {
            add(
                Method::POST,
                &format!("{p}/{target}/actions/schedule"),
                ADMIN,
                Body::Json(b),
                400,
                "invalid_payload",
            );
        }
        for q in [
            "statuses=bogus",
            "statuses=sent&statuses=nope",
            &format!("q={long_q}"),
        ] {
            add(
                Method::GET,
                &format!("{p}?{q}"),
                ADMIN,
                Body::None,
                400,
                "invalid_payload",
            );
        }
        for bad_id in [
            "not-a-uuid",
            "123",
            "%20",
            "00000000-0000-0000-0000-00000000000g",
            &"a".repeat(5000),
            "%FF",
        ] {
            add(
                Method::GET,
                &format!("{p}/{bad_id}"),
                ADMIN,
                Body::None,
                400,
                "invalid_payload",
            );
            add(
                Method::DELETE,
                &format!("{p}/{bad_id}"),
                ADMIN,
                Body::None,
                400,
                "invalid_payload",
            );
            add(
                Method::PUT,
                &format!("{p}/{bad_id}"),
                ADMIN,
                Body::Json(good.clone()),
                400,
                "invalid_payload",
            );
            for a in ["send-now", "cancel"] {
                add(
                    Method::POST,
                    &format!("{p}/{bad_id}/actions/{a}"),
                    ADMIN,
                    Body::Json(json!({})),
                    400,
                    "invalid_payload",
                );
            }
            add(
                Method::POST,
                &format!("{p}/{bad_id}/actions/schedule"),
                ADMIN,
                Body::Json(json!({ "scheduled_at": "2030-01-01T00:00:00Z" })),
                400,
                "invalid_payload",
            );
        }
        add(
            Method::PATCH,
            &format!("{p}/{target}"),
            ADMIN,
            Body::Json(good.clone()),
            405,
            "method_not_allowed",
        );
        add(
            Method::GET,
            &format!("{p}/{target}/actions/send-now"),
            ADMIN,
            Body::None,
            405,
            "method_not_allowed",
        );
        add(
            Method::POST,
            &format!("{p}/{target}/actions/launch"),
            ADMIN,
            Body::Json(json!({})),
            404,
            "not_found",
        );
    }

    // Inbox.
    for bad in [
        "abc",
        "0",
        "5",
        "-5",
        "1.5",
        "99999999999999999999",
        "%20",
        "1e3",
    ] {
        add(
            Method::POST,
            &format!("/v1/notifications/read/{bad}"),
            &user,
            Body::None,
            400,
            "invalid_payload",
        );
    }
    add(
        Method::GET,
        "/v1/notifications/read-all",
        &user,
        Body::None,
        405,
        "method_not_allowed",
    );
    add(
        Method::POST,
        "/v1/notifications",
        &user,
        Body::Json(json!({})),
        405,
        "method_not_allowed",
    );
    add(
        Method::GET,
        "/v1/notifications/read/1",
        &user,
        Body::None,
        405,
        "method_not_allowed",
    );
    add(
        Method::POST,
        "/v1/notifications/unread-count",
        &user,
        Body::None,
        405,
        "method_not_allowed",
    );

    let n = cases.len();
    for c in cases {
        let mut rb = app
            .client
            .request(c.method.clone(), app.url(&c.path))
            .bearer_auth(&c.token);
        rb = match c.body {
            Body::None => rb,
            Body::Json(v) => rb.json(&v),
            Body::Raw(ct, bytes) => {
                let rb = rb.body(bytes);
                match ct {
                    Some(ct) => rb.header("content-type", ct),
                    None => rb,
                }
            }
        };
        let r = Resp::from(rb.send().await.expect("request")).await;
        let short: String = c.path.chars().take(120).collect();
        assert_ne!(r.status.as_u16(), 500, "{} {short}: {}", c.method, r.body);
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (c.status, c.code),
            "{} {short}: {}",
            c.method,
            r.body
        );
        r.assert_error(c.status, c.code);
    }
    assert!(n > 300, "the table has {n} cases");

    // Nothing was changed by any of it, and the server still works.
    let b = get_b(&app, &target).await;
    assert_eq!(
        (b["title"].as_str(), b["status"].as_str()),
        (Some("target"), Some("draft"))
    );
    let r = app
        .admin(Method::GET, "/v1/admin/users?limit=200", None)
        .await;
    assert_eq!(r.body["total"], 1, "{}", r.body);
    let r = app
        .send(Method::GET, "/v1/notifications", Some(&user), None)
        .await;
    assert_eq!(
        (r.body["total"].as_i64(), r.body["unread"].as_i64()),
        (Some(1), Some(1))
    );
    app.assert_still_healthy().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_notification_input_is_accepted() {
    let app = quiet_app().await;
    app.put_plain_users("u", 2).await;
    // Unknown fields are ignored; unicode and maximal lengths are fine; offsets convert.
    let mut body = draft(
        &"é".repeat(200),
        json!({ "type": "explicit_users", "user_ids": ["u0", "x".repeat(128)], "extra": 1 }),
    );
    body["body"] = json!("😀".repeat(10_000));
    body["unknown"] = json!({ "nested": [1, 2] });
    body["scheduled_at"] = json!("2026-01-01T13:30:00.5+01:30");
    let b = create(&app, body).await;
    assert_eq!(b["status"], "scheduled");
    assert_eq!(
        ts(&b["scheduled_at"]),
        "2026-01-01T12:00:00.5Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );
    assert_eq!(
        b["audience"]["user_ids"].as_array().unwrap().len(),
        2,
        "{}",
        b["audience"]
    );
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/u9",
            Some(json!({ "attributes": {}, "unknown": true })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], "u9");
    let r = list_b(&app, &format!("q={}", enc("é"))).await;
    assert_eq!(r["total"], 1);
    app.stop().await;
}

/// With `--jwt-audience`, user tokens must name that audience; `nbf` in the past is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_tokens_must_name_the_configured_audience() {
    use jsonwebtoken::Algorithm;
    let app = spawn_with(Opts {
        jwt_audience: Some("inbox-app"),
        workers: WorkerSelection::None,
        ..Default::default()
    })
    .await;
    let now = app.now().timestamp();
    let app = &app;
    let call = |claims: Value| {
        let token = jwt_claims(Algorithm::HS256, JWT_SECRET, claims);
        let header = format!("Bearer {token}");
        async move {
            app.send_with(
                Method::GET,
                "/v1/notifications/unread-count",
                &[("authorization", header.as_str())],
                None,
            )
            .await
        }
    };
    let r =
        call(json!({ "sub": "alice", "exp": now + 600, "aud": "inbox-app", "nbf": now - 5 })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(json!({ "sub": "alice", "exp": now + 600, "aud": ["x", "inbox-app"] })).await;
    assert_eq!(r.status, StatusCode::OK, "a list holding it: {}", r.body);
    for claims in [
        json!({ "sub": "alice", "exp": now + 600, "aud": "other-app" }),
        json!({ "sub": "alice", "exp": now + 600 }),
        json!({ "sub": "alice", "exp": now + 600, "aud": "inbox-app", "nbf": now + 30 }),
    ] {
        call(claims.clone()).await.assert_error(401, "unauthorized");
    }
}

/// A list of broadcasts summarises a long explicit audience (its first 100 ids and the
/// count); the broadcast's own view has every id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_lists_summarise_long_explicit_audiences() {
    let app = quiet_app().await;
    let ids: Vec<String> = (0..150).map(|i| format!("user-{i}")).collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/notifications/broadcasts",
            Some(json!({ "title": "T", "body": "B", "audience": { "type": "explicit_users", "user_ids": ids } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = s(&r.body["id"]);
    let list = app
        .admin(Method::GET, "/v1/admin/notifications/broadcasts", None)
        .await;
    let a = &list.body["items"][0]["audience"];
    assert_eq!(a["user_ids"].as_array().unwrap().len(), 100, "{a}");
    assert_eq!(a["user_count"], 150);
    assert_eq!(a["user_ids_truncated"], true);
    let one = app
        .admin(
            Method::GET,
            &format!("/v1/admin/notifications/broadcasts/{id}"),
            None,
        )
        .await;
    assert_eq!(
        one.body["audience"]["user_ids"].as_array().unwrap().len(),
        150
    );
    app.stop().await;
}
