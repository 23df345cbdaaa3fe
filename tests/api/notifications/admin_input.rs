//! The admin routes' credentials and CSRF, and the bad-input table of every route.

use super::*;

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
