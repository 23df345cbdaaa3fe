//! Authentication and authorisation, routing errors and request ids.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const UNKNOWN: &str = "0191e3c1-0000-7000-8000-000000000000";

/// Every job route with a body that gets past validation (the job does not exist, so a
/// caller that is let in sees 404 `job_not_found` on the per-job routes).
fn worker_routes() -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/v1/worker/jobs".into(),
            Some(json!({ "type": "t", "input": {} })),
        ),
        (
            Method::POST,
            "/v1/worker/jobs/batch".into(),
            Some(json!({ "jobs": [{ "type": "t", "input": {} }] })),
        ),
        (
            Method::POST,
            "/v1/worker/jobs/lease".into(),
            Some(json!({ "worker_id": "w" })),
        ),
        (Method::GET, format!("/v1/worker/jobs/{UNKNOWN}"), None),
        (
            Method::POST,
            format!("/v1/worker/jobs/{UNKNOWN}/heartbeat"),
            Some(json!({ "worker_id": "w" })),
        ),
        (
            Method::POST,
            format!("/v1/worker/jobs/{UNKNOWN}/complete"),
            Some(json!({ "worker_id": "w", "result": {} })),
        ),
        (
            Method::POST,
            format!("/v1/worker/jobs/{UNKNOWN}/fail"),
            Some(json!({ "worker_id": "w", "error": "e" })),
        ),
        (
            Method::POST,
            format!("/v1/worker/jobs/{UNKNOWN}/release"),
            Some(json!({ "worker_id": "w" })),
        ),
    ]
}

fn admin_routes() -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/worker/jobs".into(), None),
        (Method::GET, "/v1/admin/sessions".into(), None),
        (
            Method::GET,
            format!("/v1/worker/jobs/{UNKNOWN}/events"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/worker/jobs/{UNKNOWN}/cancel"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/worker/jobs/{UNKNOWN}/retry"),
            None,
        ),
        (Method::GET, "/v1/worker/queues".into(), None),
        (Method::POST, "/v1/worker/queues/auth.q/pause".into(), None),
        (Method::POST, "/v1/worker/queues/auth.q/resume".into(), None),
        (
            Method::PUT,
            "/v1/worker/queues/auth.q/limits".into(),
            Some(json!({ "max_leased": 2 })),
        ),
        (Method::GET, "/v1/worker/schedules".into(), None),
        (
            Method::PUT,
            "/v1/worker/schedules/auth.s".into(),
            Some(json!({ "cron": "@daily", "job": { "type": "t", "input": {} } })),
        ),
        (Method::GET, "/v1/worker/schedules/auth.s".into(), None),
        (
            Method::POST,
            "/v1/worker/schedules/auth.s/actions/trigger".into(),
            None,
        ),
        (Method::DELETE, "/v1/worker/schedules/none".into(), None),
        (
            Method::POST,
            "/v1/admin/notifications/send".into(),
            Some(json!({ "user_id": "auth-u", "title": "t", "message": "m" })),
        ),
    ]
}

fn all_routes() -> Vec<(Method, String, Option<Value>)> {
    let mut v = worker_routes();
    v.extend(admin_routes());
    v
}

/// What a caller that is let in gets: 2xx, or 404 for the unknown job.
fn assert_let_in(r: &Resp, what: &str) {
    assert!(
        r.status.is_success()
            || (r.status == StatusCode::NOT_FOUND
                && ["job_not_found", "schedule_not_found"].contains(&r.code())),
        "{what}: {} {}",
        r.status,
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_bad_credentials_are_401_on_every_protected_route() {
    let app = spawn_app().await;
    let bad_headers: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("authorization", "Bearer wrong-token".into())],
        vec![("authorization", format!("Bearer {ADMIN}x"))],
        vec![("authorization", "Bearer ".into())],
        vec![("authorization", format!("Basic {ADMIN}"))],
        vec![("authorization", ADMIN.into())],
        vec![("x-admin-key", WORKER.into())],
        vec![("x-admin-key", "nope".into())],
        vec![("x-admin-key", "".into())],
        vec![("cookie", "access_token=not-a-session".into())],
        // A bad bearer is not rescued by a good X-Admin-Key.
        vec![
            ("authorization", "Bearer wrong".into()),
            ("x-admin-key", ADMIN.into()),
        ],
    ];
    for (method, path, body) in all_routes() {
        for h in &bad_headers {
            let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = app
                .send_with(method.clone(), &path, &hs, body.clone())
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {h:?}: {}",
                r.body
            );
            r.assert_error(401, "unauthorized");
        }
    }
    // Nothing was created by any of them.
    let r = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert_eq!(r.body["items"], json!([]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_and_x_admin_key_reach_every_route() {
    let app = spawn_app().await;
    for (method, path, body) in all_routes() {
        let r = app.admin(method.clone(), &path, body.clone()).await;
        assert_let_in(&r, &format!("bearer admin {method} {path}"));
        let r = app
            .send_with(
                method.clone(),
                &path,
                &[("x-admin-key", ADMIN)],
                body.clone(),
            )
            .await;
        assert_let_in(&r, &format!("X-Admin-Key {method} {path}"));
        // A lower-case scheme is accepted too.
        let auth = format!("bearer {ADMIN}");
        let r = app
            .send_with(method.clone(), &path, &[("authorization", &auth)], body)
            .await;
        assert_let_in(&r, &format!("lower-case bearer {method} {path}"));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_token_reaches_worker_routes_only() {
    let app = spawn_app().await;
    for (method, path, body) in worker_routes() {
        let r = app.worker(method.clone(), &path, body).await;
        assert_let_in(&r, &format!("worker {method} {path}"));
    }
    // A real job, so that a refusal cannot be a 404 in disguise.
    let id = s(&app.enqueue_type("t").await["job_id"]);
    let real_admin = [
        (Method::GET, "/v1/worker/jobs".to_string()),
        (Method::GET, "/v1/worker/jobs?status=queued".to_string()),
        (Method::GET, format!("/v1/worker/jobs/{id}/events")),
        (Method::POST, format!("/v1/worker/jobs/{id}/cancel")),
        (Method::POST, format!("/v1/worker/jobs/{id}/retry")),
        (Method::GET, "/v1/worker/queues".to_string()),
    ];
    for (method, path) in real_admin {
        let r = app.worker(method.clone(), &path, None).await;
        r.assert_error(403, "forbidden");
    }
    assert_eq!(
        app.job(&id).await["status"],
        "queued",
        "the refused cancel did nothing"
    );
    for (method, path, body) in admin_routes() {
        app.worker(method, &path, body)
            .await
            .assert_error(403, "forbidden");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_worker_token_only_the_admin_gets_in() {
    let app = spawn_with(Opts {
        worker_token: false,
        ..Default::default()
    })
    .await;
    app.worker(
        Method::POST,
        "/v1/worker/jobs/lease",
        Some(json!({ "worker_id": "w" })),
    )
    .await
    .assert_error(401, "unauthorized");
    let r = app
        .admin(
            Method::POST,
            "/v1/worker/jobs/lease",
            Some(json!({ "worker_id": "w" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.stop().await;
}

fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_answers_400_401_or_a_session() {
    let app = spawn_app().await;
    let r = app
        .send(Method::POST, "/v1/auth/login", None, Some(json!({})))
        .await;
    r.assert_error(400, "invalid_payload");
    let r = app
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "tok": ADMIN })),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    let r = app
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "token": 5 })),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    for wrong in ["", "wrong", WORKER] {
        let r = app
            .send(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "token": wrong })),
            )
            .await;
        r.assert_error(401, "unauthorized");
        assert!(set_cookies(&r).is_empty(), "no cookie on a refused login");
    }

    let r = app
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "token": ADMIN })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let csrf = s(&r.body["csrf_token"]);
    assert!(csrf.len() >= 16, "{csrf}");
    assert_eq!(
        ts(&r.body["expires_at"]),
        app.now() + chrono::Duration::hours(12)
    );
    let cookies = set_cookies(&r);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("access_token="))
        .unwrap_or_else(|| panic!("no access_token cookie: {cookies:?}"));
    let attrs: Vec<String> = session
        .split(';')
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attrs.contains(&"httponly".to_string()), "{session}");
    assert!(attrs.contains(&"samesite=strict".to_string()), "{session}");
    assert!(session.len() > "access_token=".len() + 16, "{session}");
    let xsrf = cookies
        .iter()
        .find(|c| c.starts_with("XSRF-TOKEN="))
        .unwrap_or_else(|| panic!("no XSRF-TOKEN cookie: {cookies:?}"));
    assert!(xsrf.starts_with(&format!("XSRF-TOKEN={csrf};")), "{xsrf}");
    assert!(
        !xsrf.to_ascii_lowercase().contains("httponly"),
        "the CSRF cookie is readable: {xsrf}"
    );
    // The session cookie value is not the admin token.
    assert!(!session.contains(ADMIN));

    // Each login is a new session with its own CSRF token.
    let (_, csrf2) = app.login().await;
    assert_ne!(csrf, csrf2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_reads_freely_and_mutates_only_with_its_csrf_token() {
    let app = spawn_app().await;
    let (cookie, csrf) = app.login().await;
    let (cookie_b, csrf_b) = app.login().await;
    let session_only = cookie
        .split("; ")
        .find(|c| c.starts_with("access_token="))
        .unwrap()
        .to_string();

    // Reads need no CSRF header, on admin and worker routes.
    for path in ["/v1/worker/jobs", "/v1/worker/queues"] {
        let r = app
            .send_with(Method::GET, path, &[("cookie", &cookie)], None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        let r = app
            .send_with(Method::GET, path, &[("cookie", &session_only)], None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }

    let id = s(&app.enqueue_type("s").await["job_id"]);
    let cancel = format!("/v1/worker/jobs/{id}/cancel");
    let enqueue_body = json!({ "type": "s2", "input": {} });
    // Mutations without, with a wrong, or with another session's CSRF token: 403.
    let refusals: Vec<Vec<(&str, &str)>> = vec![
        vec![("cookie", &cookie)],
        vec![("cookie", &session_only)],
        vec![("cookie", &cookie), ("x-csrf-token", "wrong")],
        vec![("cookie", &cookie), ("x-csrf-token", "")],
        vec![("cookie", &cookie), ("x-csrf-token", &csrf_b)],
        vec![("cookie", &cookie_b), ("x-csrf-token", &csrf)],
    ];
    for hs in &refusals {
        app.send_with(Method::POST, &cancel, hs, None)
            .await
            .assert_error(403, "csrf_failed");
        app.send_with(
            Method::POST,
            "/v1/worker/jobs",
            hs,
            Some(enqueue_body.clone()),
        )
        .await
        .assert_error(403, "csrf_failed");
    }
    assert_eq!(app.job(&id).await["status"], "queued");
    assert!(
        app.lease("w", json!({ "job_types": ["s2"] }))
            .await
            .is_empty(),
        "nothing enqueued"
    );

    // The cookie holding the XSRF token is not enough: the header must carry it.
    let r = app
        .send_with(Method::POST, &cancel, &[("cookie", &cookie)], None)
        .await;
    r.assert_error(403, "csrf_failed");

    // The right token: the admin session can do everything the admin can.
    let ok = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let r = app.send_with(Method::POST, &cancel, &ok, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "canceled");
    let r = app
        .send_with(Method::POST, "/v1/worker/jobs", &ok, Some(enqueue_body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .send_with(
            Method::POST,
            &format!("/v1/worker/jobs/{id}/retry"),
            &ok,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Session B with its own token works as well.
    let r = app
        .send_with(
            Method::POST,
            &cancel,
            &[("cookie", &cookie_b), ("x-csrf-token", &csrf_b)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A bearer token needs no CSRF header even with a cookie around.
    let bearer = format!("Bearer {ADMIN}");
    let r = app
        .send_with(
            Method::POST,
            &format!("/v1/worker/jobs/{id}/retry"),
            &[("authorization", &bearer), ("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_needs_csrf_ends_the_session_and_is_204_without_one() {
    let app = spawn_app().await;
    let (cookie, csrf) = app.login().await;
    let (other, other_csrf) = app.login().await;

    let r = app
        .send_with(
            Method::POST,
            "/v1/auth/logout",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    r.assert_error(403, "csrf_failed");
    let r = app
        .send_with(
            Method::POST,
            "/v1/auth/logout",
            &[("cookie", &cookie), ("x-csrf-token", &other_csrf)],
            None,
        )
        .await;
    r.assert_error(403, "csrf_failed");
    let r = app
        .send_with(
            Method::GET,
            "/v1/worker/queues",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a refused logout leaves the session alive"
    );

    let r = app
        .send_with(
            Method::POST,
            "/v1/auth/logout",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let cleared = set_cookies(&r);
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("access_token=;") || c.starts_with("access_token=\"\"")),
        "the session cookie is cleared: {cleared:?}"
    );
    let r = app
        .send_with(
            Method::GET,
            "/v1/worker/queues",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    r.assert_error(401, "unauthorized");
    let r = app
        .send_with(
            Method::POST,
            "/v1/worker/jobs/lease",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            Some(json!({ "worker_id": "w" })),
        )
        .await;
    r.assert_error(401, "unauthorized");
    // The other session lives on.
    let r = app
        .send_with(
            Method::GET,
            "/v1/worker/queues",
            &[("cookie", &other)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Without a session (none, or an ended one) logout is a 204.
    let r = app
        .send_with(Method::POST, "/v1/auth/logout", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app
        .send_with(
            Method::POST,
            "/v1/auth/logout",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_after_12_hours() {
    let app = spawn_app().await;
    let (cookie, csrf) = app.login().await;
    app.advance(12 * 3600 - 1);
    let r = app
        .send_with(
            Method::GET,
            "/v1/worker/queues",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "still valid just before expiry");
    app.advance(2);
    let r = app
        .send_with(
            Method::GET,
            "/v1/worker/queues",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    r.assert_error(401, "unauthorized");
    let r = app
        .send_with(
            Method::POST,
            "/v1/worker/jobs",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            Some(json!({ "type": "t", "input": {} })),
        )
        .await;
    r.assert_error(401, "unauthorized");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_comes_before_authentication() {
    let app = spawn_app().await;
    let unknown = [
        (Method::GET, "/nope"),
        (Method::GET, "/v1/worker"),
        (Method::GET, "/v1/worker/jobs/x/y/z"),
        (Method::POST, "/v1/worker/jobs/lease/extra"),
        (Method::GET, "/v1/admin/unknown"),
    ];
    for (method, path) in unknown {
        for token in [None, Some(ADMIN), Some(WORKER), Some("wrong")] {
            let r = app.send(method.clone(), path, token, None).await;
            r.assert_error(404, "not_found");
        }
    }
    let wrong_method = [
        (Method::GET, "/v1/worker/jobs/lease".to_string()),
        (Method::GET, "/v1/worker/jobs/batch".to_string()),
        (Method::DELETE, "/v1/worker/jobs".to_string()),
        (Method::PUT, format!("/v1/worker/jobs/{UNKNOWN}")),
        (Method::GET, format!("/v1/worker/jobs/{UNKNOWN}/complete")),
        (Method::POST, "/v1/worker/queues".to_string()),
        (Method::GET, "/v1/auth/login".to_string()),
        (Method::POST, "/healthz".to_string()),
    ];
    for (method, path) in wrong_method {
        for token in [None, Some(ADMIN), Some(WORKER), Some("wrong")] {
            let r = app.send(method.clone(), &path, token, None).await;
            r.assert_error(405, "method_not_allowed");
        }
    }
    // Open routes need nothing.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.send(Method::GET, path, None, None).await.status,
            StatusCode::OK
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let app = spawn_app().await;
    let cases = [
        (Method::GET, "/healthz", None),
        (Method::GET, "/readyz", None),
        (Method::GET, "/v1/worker/jobs", Some(ADMIN)),
        (Method::GET, "/v1/worker/jobs", None),
        (Method::GET, "/v1/worker/jobs", Some(WORKER)),
        (Method::GET, "/nope", None),
        (Method::GET, "/v1/worker/jobs/lease", None),
        (Method::GET, "/v1/worker/jobs/not-a-uuid", Some(ADMIN)),
        (Method::POST, "/v1/worker/jobs", Some(ADMIN)),
    ];
    let mut seen = std::collections::HashSet::new();
    for (method, path, token) in cases {
        let r = app.send(method.clone(), path, token, None).await;
        let id = r
            .headers
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{method} {path} ({}) has no x-request-id", r.status))
            .to_str()
            .unwrap()
            .to_string();
        assert!(!id.is_empty());
        assert!(seen.insert(id), "request ids are unique");

        let mine = format!("client-{}", seen.len());
        let mut hs = vec![("x-request-id", mine.as_str())];
        let bearer = token.map(|t| format!("Bearer {t}"));
        if let Some(b) = &bearer {
            hs.push(("authorization", b));
        }
        let r = app.send_with(method.clone(), path, &hs, None).await;
        assert_eq!(
            r.headers.get("x-request-id").map(|v| v.to_str().unwrap()),
            Some(mine.as_str()),
            "{method} {path} echoes the client's id"
        );
    }
    app.stop().await;
}

/// Failed logins are throttled per client address: five wrong tokens in a minute, then
/// every login from that address — even with the right token — is a 429 with
/// `Retry-After`, counted in `wp_lite_login_refused_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_address() {
    let app = spawn_app().await;
    let login = |token: &'static str| {
        app.send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "token": token })),
        )
    };
    for _ in 0..5 {
        login("guess").await.assert_error(401, "unauthorized");
    }
    for token in ["guess", ADMIN] {
        let r = login(token).await;
        r.assert_error(429, "rate_limited");
        let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
        assert!(set_cookies(&r).is_empty());
    }
    // Token-authenticated calls are not affected.
    let m = app.admin(Method::GET, "/v1/metrics", None).await;
    assert_eq!(m.status, StatusCode::OK);
    let text = app.metrics_text().await;
    assert!(
        text.contains(r#"wp_lite_login_refused_total{result="invalid"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wp_lite_login_refused_total{result="throttled"} 2"#),
        "{text}"
    );
    app.stop().await;
}

/// Sessions are listed and revocable by an admin; a revoked session's cookie no longer
/// authenticates; a restart with another admin token ends every session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_revoked_and_end_with_a_new_admin_token() {
    let mut app = spawn_app().await;
    let (cookie_a, _) = app.login().await;
    app.advance(1);
    let (cookie_b, _) = app.login().await;
    let client = app.client.clone();
    let with_cookie = |base: String, cookie: String| {
        let (client, url) = (client.clone(), format!("{base}/v1/admin/sessions"));
        async move {
            client
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let list = app.admin(Method::GET, "/v1/admin/sessions", None).await;
    let items = list.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{}", list.body);
    assert!(
        ts(&items[0]["created_at"]) > ts(&items[1]["created_at"]),
        "newest first"
    );
    assert!(items[0].get("csrf_token").is_none() && items[0].get("token_hash").is_none());
    // The newest is B's: revoke it.
    let b_id = s(&items[0]["id"]);
    assert_eq!(
        with_cookie(app.base.clone(), cookie_b.clone()).await,
        StatusCode::OK
    );
    let r = app
        .admin(Method::DELETE, &format!("/v1/admin/sessions/{b_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        with_cookie(app.base.clone(), cookie_b).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with_cookie(app.base.clone(), cookie_a.clone()).await,
        StatusCode::OK
    );
    app.admin(Method::DELETE, &format!("/v1/admin/sessions/{b_id}"), None)
        .await
        .assert_error(404, "not_found");
    app.admin(Method::DELETE, "/v1/admin/sessions/5", None)
        .await
        .assert_error(400, "invalid_payload");
    app.send(Method::GET, "/v1/admin/sessions", None, None)
        .await
        .assert_error(401, "unauthorized");
    app.send(
        Method::DELETE,
        &format!("/v1/admin/sessions/{b_id}"),
        None,
        None,
    )
    .await
    .assert_error(401, "unauthorized");
    app.send(
        Method::DELETE,
        &format!("/v1/admin/sessions/{b_id}"),
        Some(WORKER),
        None,
    )
    .await
    .assert_error(403, "forbidden");
    app.send(
        Method::POST,
        "/v1/admin/sessions",
        Some(ADMIN),
        Some(json!({})),
    )
    .await
    .assert_error(405, "method_not_allowed");

    // Restart on the same database with another admin token: A's session is over.
    app.app.take().unwrap().stop().await.unwrap();
    let mut config =
        wp_lite::config::Config::for_database(format!("sqlite://{}", app.db_path.display()));
    config.admin_token = Some(wp_lite::config::Secret::new("a-brand-new-admin-token"));
    config.workers = wp_lite::config::WorkerSelection::None;
    let restarted = wp_lite::app::App::start(config, std::sync::Arc::new(app.clock.clone()))
        .await
        .unwrap();
    app.base = format!("http://{}", restarted.addr());
    assert_eq!(
        with_cookie(app.base.clone(), cookie_a).await,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .send(
            Method::GET,
            "/v1/admin/sessions",
            Some("a-brand-new-admin-token"),
            None,
        )
        .await;
    assert_eq!(r.body["items"], json!([]), "{}", r.body);
    restarted.stop().await.unwrap();
}

/// Session cookies are HttpOnly (the session) and SameSite=Strict always, and `Secure`
/// with `--secure-cookies`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookies_are_secure_when_configured() {
    for secure in [false, true] {
        let app = spawn_with(Opts {
            secure_cookies: secure,
            ..Default::default()
        })
        .await;
        let r = app
            .send(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "token": ADMIN })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let cookies: Vec<String> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(cookies.len(), 2);
        for c in &cookies {
            assert!(c.contains("SameSite=Strict"), "{c}");
            assert_eq!(c.contains("; Secure"), secure, "{c}");
        }
        assert!(cookies[0].starts_with("access_token=") && cookies[0].contains("HttpOnly"));
        app.stop().await;
    }
}
