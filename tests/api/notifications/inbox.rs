//! The inbox with user JWTs: token rules, pages, reads, users kept apart, large inboxes.

use super::*;

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
