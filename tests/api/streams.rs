//! The real-time inbox: SSE and WebSocket streams, direct sends, limits and auth, on the
//! in-process server. (Deliveries by another process or node: tests/streams_cli.rs and
//! tests/multinode.rs.)

use crate::live::{Ended, Events, Sse, Ws};
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wp_lite::config::WorkerSelection;

const SEND: &str = "/v1/admin/notifications/send";

async fn send(app: &TestApp, user: &str, title: &str) -> Value {
    let r = app
        .admin(
            Method::POST,
            SEND,
            Some(json!({ "user_id": user, "title": title, "message": "m" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// A user's JWT as a query parameter.
fn q(app: &TestApp, user: &str) -> String {
    format!("?token={}", app.user_jwt(user, 3600))
}

#[tokio::test]
async fn sse_and_websocket_receive_a_send_now_broadcast_delivered_by_this_process() {
    let app = spawn_app().await; // the broadcast worker runs in the process
    app.put_plain_users("u", 3).await;
    let mut sse = Sse::open(&app.base, &app.user_jwt("u1", 3600), None).await;
    let mut ws = Ws::open(&app.base, &q(&app, "u1")).await;
    let mut other = Sse::open(&app.base, &app.user_jwt("u2", 3600), None).await;
    assert_eq!(sse.unread().await, 0);
    assert_eq!(ws.unread().await, 0);
    assert_eq!(other.unread().await, 0);
    ws.say("client frames are ignored").await;

    let r = app
        .admin(
            Method::POST,
            "/v1/admin/notifications/broadcasts",
            Some(json!({
                "title": "Maintenance", "body": "Tonight at 10",
                "audience": { "type": "explicit_users", "user_ids": ["u1"] },
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = s(&r.body["id"]);
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/admin/notifications/broadcasts/{id}/actions/send-now"),
            Some(json!({})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);

    let e = sse.next().await.unwrap();
    assert_eq!(
        (e.event.as_str(), e.title()),
        ("notification", "Maintenance")
    );
    assert_eq!(e.data["message"], "Tonight at 10");
    assert_eq!(e.data["broadcast_id"], id.as_str());
    assert_eq!(
        e.id.as_deref(),
        e.data["id"].as_str(),
        "the SSE id is the item's id"
    );
    assert_eq!(sse.unread().await, 1);
    let w = ws.next().await.unwrap();
    assert_eq!(
        (w.event.as_str(), w.title()),
        ("notification", "Maintenance")
    );
    assert_eq!(w.data, e.data, "both transports send the same item");
    assert_eq!(ws.unread().await, 1);

    // Another user's stream saw nothing: its next event is its own item.
    send(&app, "u2", "for u2 only").await;
    let mine = other.next().await.unwrap();
    assert_eq!(
        (mine.event.as_str(), mine.title()),
        ("notification", "for u2 only")
    );
    assert_eq!(other.unread().await, 1);
    let m = app.metrics_text().await;
    assert!(m.contains("wp_lite_inbox_streams_open 3"), "{m}");
    assert!(m.contains("wp_lite_inbox_push_lag_seconds_count"), "{m}");
}

#[tokio::test]
async fn unread_follows_read_and_read_all() {
    let app = spawn_app().await;
    let mut sse = Sse::open(&app.base, &app.user_jwt("reader", 3600), None).await;
    assert_eq!(sse.unread().await, 0);
    let first = send(&app, "reader", "one").await;
    send(&app, "reader", "two").await;
    sse.unread_becomes(2).await;
    let user = app.user_jwt("reader", 3600);
    let r = app
        .send(
            Method::POST,
            &format!("/v1/notifications/read/{}", s(&first["id"])),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    sse.unread_becomes(1).await;
    let r = app
        .send(
            Method::POST,
            "/v1/notifications/read-all",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    sse.unread_becomes(0).await;
}

#[tokio::test]
async fn last_event_id_replays_exactly_the_missed_items_then_goes_live() {
    let app = spawn_app().await;
    let user = app.user_jwt("back", 3600);
    let seen = send(&app, "back", "seen").await;
    send(&app, "back", "missed 1").await;
    send(&app, "back", "missed 2").await;
    send(&app, "someone else", "not mine").await;
    let mut sse = Sse::open(&app.base, &user, Some(&s(&seen["id"]))).await;
    assert_eq!(sse.next().await.unwrap().data["unread"], 3);
    assert_eq!(sse.next().await.unwrap().title(), "missed 1");
    assert_eq!(sse.next().await.unwrap().title(), "missed 2");
    send(&app, "back", "live").await;
    assert_eq!(sse.item().await.title(), "live");

    // An unknown id: nothing to replay.
    let mut unknown = Sse::open(&app.base, &user, Some(&uuid::Uuid::now_v7().to_string())).await;
    assert_eq!(unknown.next().await.unwrap().event, "unread");
    send(&app, "back", "after").await;
    // (An unread count may come first; the first item is the new one, nothing replayed.)
    assert_eq!(unknown.item().await.title(), "after");
    // Not an id at all: a 400.
    let r = Sse::request(&app.base, "", Some(&user), Some("42")).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn direct_send_is_idempotent_on_event_id_and_checks_its_body() {
    let app = spawn_app().await;
    for path in [SEND, "/v1/notifications/admin/send"] {
        let body = json!({
            "user_id": "d1", "title": "Invoice", "message": "paid", "type": "billing",
            "meta": { "invoice": 7 }, "event_id": format!("invoice:{path}"),
        });
        let r = app.admin(Method::POST, path, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["title"], "Invoice");
        assert_eq!(r.body["type"], "direct");
        assert_eq!(r.body["meta"], json!({ "invoice": 7, "type": "billing" }));
        assert!(r.headers.get("idempotent-replayed").is_none());
        let again = app.admin(Method::POST, path, Some(body)).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body["id"], r.body["id"]);
    }
    let user = app.user_jwt("d1", 3600);
    let r = app
        .send(Method::GET, "/v1/notifications", Some(&user), None)
        .await;
    assert_eq!(r.body["total"], 2);

    for (bad, field) in [
        (json!({ "title": "t", "message": "m" }), "user_id"),
        (
            json!({ "user_id": "", "title": "t", "message": "m" }),
            "user_id",
        ),
        (
            json!({ "user_id": "a\u{1}b", "title": "t", "message": "m" }),
            "user_id",
        ),
        (json!({ "user_id": "u", "message": "m" }), "title"),
        (json!({ "user_id": "u", "title": "t" }), "message"),
        (
            json!({ "user_id": "u", "title": "t", "message": "m", "meta": [1] }),
            "meta",
        ),
        (
            json!({ "user_id": "u", "title": "t", "message": "m", "event_id": 5 }),
            "event_id",
        ),
        (
            json!({ "user_id": "u", "title": "t", "message": "m", "type": "" }),
            "type",
        ),
    ] {
        let r = app.admin(Method::POST, SEND, Some(bad.clone())).await;
        r.assert_error(400, "invalid_payload");
        assert_eq!(
            r.body["error"]["fields"][0]["field"], field,
            "{bad}: {}",
            r.body
        );
    }
    // Only an admin sends.
    let r = app
        .send(
            Method::POST,
            SEND,
            Some(&user),
            Some(json!({ "user_id": "u", "title": "t", "message": "m" })),
        )
        .await;
    r.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_stream_needs_a_valid_user_token() {
    let app = spawn_app().await;
    let good = app.user_jwt("alice", 3600);
    let cases = [
        ("".to_string(), "no token"),
        (
            format!(
                "?token={}",
                jwt("another secret", "alice", app.now().timestamp() + 60)
            ),
            "bad signature",
        ),
        (format!("?token={}", app.user_jwt("alice", -10)), "expired"),
        (
            format!(
                "?token={}",
                unsigned_jwt("alice", app.now().timestamp() + 60)
            ),
            "alg none",
        ),
        ("?token=not-a-jwt".to_string(), "garbage"),
        (format!("?token={ADMIN}"), "the admin token"),
    ];
    for (query, what) in &cases {
        let r = Sse::request(&app.base, query, None, None).await;
        assert_eq!(r.status(), 401, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        let mut ws = Ws::open(&app.base, query).await;
        assert_eq!(ws.next().await.unwrap_err(), Ended::Closed(4401), "{what}");
        // A plain GET (no handshake) of the WebSocket route: 401 too.
        let r = app
            .client
            .get(app.url(&format!("/v1/notifications/ws{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
    }
    // A valid token as a Bearer header or as the access_token cookie.
    let r = Sse::request(&app.base, "", Some(&good), None).await;
    assert_eq!(r.status(), 200);
    let mut sse = Sse::from(r);
    assert_eq!(sse.next().await.unwrap().event, "unread");
    let r = app
        .client
        .get(app.url("/v1/notifications/stream"))
        .header("cookie", format!("access_token={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A valid token but no handshake: a 400 that says what the route is.
    let r = app
        .client
        .get(app.url(&format!("/v1/notifications/ws?token={good}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // No --jwt-secret: 401 that says so.
    let plain = spawn_with(Opts {
        jwt_secret: None,
        ..Default::default()
    })
    .await;
    let r = Sse::request(&plain.base, &format!("?token={good}"), None, None).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--jwt-secret"));
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let app = spawn_app().await;
    // Valid for one more second of the server's clock.
    let mut sse = Sse::open(&app.base, &app.user_jwt("brief", 1), None).await;
    assert_eq!(sse.next().await.unwrap().event, "unread");
    assert!(sse.next().await.is_none(), "the stream ends at exp");
    let mut ws = Ws::open(&app.base, &format!("?token={}", app.user_jwt("brief", 1))).await;
    assert_eq!(ws.next().await.unwrap().event, "unread");
    assert_eq!(ws.next().await.unwrap_err(), Ended::Closed(4401));
}

#[tokio::test]
async fn streams_are_limited_per_user_and_per_process() {
    let app = spawn_with(Opts {
        max_streams: 7,
        ..Default::default()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..5 {
        let mut sse = Sse::open(&app.base, &app.user_jwt("many", 3600), None).await;
        assert_eq!(sse.next().await.unwrap().event, "unread");
        open.push(sse);
    }
    let r = Sse::request(&app.base, &q(&app, "many"), None, None).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let mut ws = Ws::open(&app.base, &q(&app, "many")).await;
    assert_eq!(ws.next().await.unwrap_err(), Ended::Closed(1013));

    // Two more for other users reach the process's limit of 7.
    let mut a = Sse::open(&app.base, &app.user_jwt("a", 3600), None).await;
    assert_eq!(a.next().await.unwrap().event, "unread");
    let mut b = Ws::open(&app.base, &q(&app, "b")).await;
    assert_eq!(b.next().await.unwrap().event, "unread");
    let r = Sse::request(&app.base, &q(&app, "c"), None, None).await;
    assert_eq!(r.status(), 503);
    // Closing one frees its place.
    drop(a);
    let mut c = loop {
        let r = Sse::request(&app.base, &q(&app, "c"), None, None).await;
        if r.status() == 200 {
            break Sse::from(r);
        }
        // The server notices the closed connection when it next writes to it: a direct
        // send to that user makes it write.
        send(&app, "a", "poke").await;
    };
    assert_eq!(c.next().await.unwrap().event, "unread");
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_to_an_unread_resync_not_buffered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_with(Opts {
        workers: WorkerSelection::None,
        ..Default::default()
    })
    .await;
    // A raw client with a small receive buffer (which also turns off the kernel's
    // growing of it), so that what the server cannot send stays in the server.
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let token = app.user_jwt("slow", 3600);
    tcp.write_all(
        format!("GET /v1/notifications/stream?token={token} HTTP/1.1\r\nhost: x\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = String::new();
    let mut buf = vec![0u8; 65536];
    while !seen.contains("event: unread") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // 800 items of 10 000 characters (8 MB) while the client reads nothing: more than
    // the socket buffers and the stream's bounded queue hold.
    let big = "x".repeat(10_000);
    let n = 800;
    for i in 0..n {
        let r = app
            .admin(
                Method::POST,
                SEND,
                Some(json!({ "user_id": "slow", "title": format!("t{i}"), "message": big })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // Now read: some items, then (once the queue is drained) a resync with the true count.
    let resync = format!("data: {{\"unread\":{n}}}");
    let mut seen = String::new();
    let mut items = 0;
    tokio::time::timeout(crate::live::PATIENCE, async {
        while !seen.contains(&resync) {
            let got = tcp.read(&mut buf).await.unwrap();
            assert!(got > 0, "the stream ended");
            seen.push_str(&String::from_utf8_lossy(&buf[..got]));
            // Count whole events only, and keep the tail that may be cut.
            if let Some(cut) = seen.rfind("\n\n") {
                items += seen[..cut].matches("event: notification").count();
                if !seen[..cut].contains(&resync) {
                    seen.drain(..cut);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no resync after {items} items; last read: {}",
            &seen[seen.len().saturating_sub(400)..]
        )
    });
    assert!(items > 0);
    assert!(
        items < n,
        "{items} of {n} items were held for a client that did not read"
    );
}
