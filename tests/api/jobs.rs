//! The job control plane (docs/api.md, "Jobs") through the real server: every route, every state
//! transition and every error code.

use crate::support::*;
use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

const W: &str = "worker-1";

fn ids(jobs: &[Value]) -> Vec<String> {
    jobs.iter().map(|j| s(&j["job_id"])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz() {
    let app = spawn_app().await;
    let r = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "ready");
    assert!(
        r.body["schema_version"].as_i64().unwrap() >= 1,
        "{}",
        r.body
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_echoes_every_field_and_applies_defaults() {
    let app = spawn_app().await;
    let now = app.now();

    let d = app
        .enqueue(json!({ "type": "email.send", "input": { "to": "a@b.c" } }))
        .await;
    uuid::Uuid::parse_str(&s(&d["job_id"])).expect("a wp-lite id is a UUID");
    assert_eq!(d["type"], "email.send");
    assert_eq!(d["status"], "queued");
    assert_eq!(d["priority"], 5);
    assert_eq!(d["max_attempts"], 3);
    assert_eq!(d["attempts"], 0);
    assert_eq!(d["input"], json!({ "to": "a@b.c" }));
    assert_eq!(ts(&d["available_at"]), now);
    assert_eq!(ts(&d["created_at"]), now);
    assert_eq!(ts(&d["updated_at"]), now);
    for k in [
        "idempotency_key",
        "code_version",
        "model_version",
        "config_hash",
        "budget_tag",
        "cost_cap_eur",
        "result",
        "lease_owner",
        "lease_until",
        "last_error",
    ] {
        assert!(d[k].is_null(), "{k} defaults to null: {d}");
    }
    assert!(
        d.get("lease_token").is_none(),
        "no lease_token outside lease responses: {d}"
    );

    let body = json!({
        "type": "model.run:v2",
        "input": { "prompt": "hi", "n": [1, 2.5, {"deep": null}] },
        "priority": 0,
        "max_attempts": 100,
        "idempotency_key": "run-1",
        "code_version": "git:abc123",
        "model_version": "m-7",
        "config_hash": "sha256:ff",
        "budget_tag": "team-a",
        "cost_cap_eur": "10.50",
        "unknown_field": "ignored",
    });
    let r = app
        .worker(Method::POST, "/v1/worker/jobs", Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.headers.get("idempotent-replayed").is_none());
    let j = r.body;
    for k in [
        "type",
        "input",
        "priority",
        "max_attempts",
        "idempotency_key",
        "code_version",
        "model_version",
        "config_hash",
        "budget_tag",
        "cost_cap_eur",
    ] {
        assert_eq!(j[k], body[k], "{k} is echoed: {j}");
    }
    assert!(j.get("unknown_field").is_none());
    // And stored: GET gives the same.
    let g = app.job(&s(&j["job_id"])).await;
    assert_eq!(g, j);

    // Admin token may enqueue too.
    let r = app
        .admin(
            Method::POST,
            "/v1/worker/jobs",
            Some(json!({ "type": "t", "input": {} })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_job_id_and_duplicate_job_id() {
    let app = spawn_app().await;
    let id = "0191e3c1-7b2a-7c3d-8e4f-123456789abc";
    let j = app
        .enqueue(json!({ "job_id": id, "type": "t", "input": { "a": 1 } }))
        .await;
    assert_eq!(j["job_id"], id);
    assert_eq!(app.job(id).await["input"], json!({ "a": 1 }));

    // Upper case is the same UUID.
    let upper = id.to_uppercase();
    for (jid, ty) in [(id, "t"), (id, "other"), (upper.as_str(), "t")] {
        let r = app
            .worker(
                Method::POST,
                "/v1/worker/jobs",
                Some(json!({ "job_id": jid, "type": ty, "input": { "b": 2 } })),
            )
            .await;
        r.assert_error(409, "duplicate_job_id");
    }
    // The original is untouched.
    assert_eq!(app.job(id).await["input"], json!({ "a": 1 }));
    let r = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_replays_equal_input_and_refuses_a_different_one() {
    let app = spawn_app().await;
    let first = app
        .worker(
            Method::POST,
            "/v1/worker/jobs",
            Some(json!({ "type": "t", "idempotency_key": "k1", "input": { "a": 1, "b": { "x": [1, 2], "y": "s" } } })),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let id = s(&first.body["job_id"]);

    // Numbers by value, keys in any order, other fields not compared.
    let replays = [
        r#"{"type":"t","idempotency_key":"k1","input":{"a":1,"b":{"x":[1,2],"y":"s"}}}"#,
        r#"{"type":"t","idempotency_key":"k1","input":{"a":1.0,"b":{"x":[1.0,2],"y":"s"}}}"#,
        r#"{"input":{"b":{"y":"s","x":[1,2e0]},"a":1},"idempotency_key":"k1","type":"t","priority":900}"#,
    ];
    for raw in replays {
        let r = app
            .send_raw(
                Method::POST,
                "/v1/worker/jobs",
                Some(WORKER),
                Some("application/json"),
                raw.into(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{raw}: {}", r.body);
        assert_eq!(
            r.headers
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true"),
            "{raw}"
        );
        assert_eq!(r.body["job_id"], id.as_str());
        assert_eq!(
            r.body["priority"], 5,
            "the existing job is returned unchanged"
        );
    }

    // A different input is a conflict, whatever the difference.
    for input in [
        json!({ "a": 2, "b": { "x": [1, 2], "y": "s" } }),
        json!({ "a": 1, "b": { "x": [2, 1], "y": "s" } }),
        json!({ "a": 1, "b": { "x": [1, 2], "y": "s" }, "c": null }),
        json!({ "a": "1", "b": { "x": [1, 2], "y": "s" } }),
        json!({}),
    ] {
        let r = app
            .worker(
                Method::POST,
                "/v1/worker/jobs",
                Some(json!({ "type": "t", "idempotency_key": "k1", "input": input })),
            )
            .await;
        r.assert_error(409, "idempotency_conflict");
    }

    // The key is per type.
    let other = app
        .enqueue(json!({ "type": "u", "idempotency_key": "k1", "input": {} }))
        .await;
    assert_ne!(other["job_id"], id.as_str());

    // A replay returns the job whatever its status.
    let (leased, token) = app.lease_one(W, "t", 60).await;
    assert_eq!(leased, id);
    assert_eq!(
        app.complete(&id, W, Some(&token), json!({ "ok": 1 }))
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs",
            Some(json!({ "type": "t", "idempotency_key": "k1", "input": { "b": { "y": "s", "x": [1, 2] }, "a": 1 } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "succeeded");
    assert_eq!(r.body["job_id"], id.as_str());

    // Exactly two jobs exist.
    let r = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_seconds_and_available_at_hold_a_job_back() {
    let app = spawn_app().await;
    let now = app.now();
    let delayed = app
        .enqueue(json!({ "type": "d", "input": {}, "delay_seconds": 60 }))
        .await;
    assert_eq!(ts(&delayed["available_at"]), now + Duration::seconds(60));
    // 13:00Z written with a +01:00 offset.
    let at = app
        .enqueue(json!({ "type": "a", "input": {}, "available_at": "2026-01-01T14:00:00+01:00" }))
        .await;
    assert_eq!(at["available_at"], "2026-01-01T13:00:00.000Z");
    let zero = app
        .enqueue(json!({ "type": "z", "input": {}, "delay_seconds": 0 }))
        .await;
    assert_eq!(ts(&zero["available_at"]), now);

    assert!(app
        .lease(W, json!({ "job_types": ["d", "a"], "limit": 10 }))
        .await
        .is_empty());
    app.advance(59);
    assert!(app
        .lease(W, json!({ "job_types": ["d", "a"], "limit": 10 }))
        .await
        .is_empty());
    app.advance(1);
    let got = app
        .lease(W, json!({ "job_types": ["d", "a"], "limit": 10 }))
        .await;
    assert_eq!(ids(&got), vec![s(&delayed["job_id"])]);
    app.advance(3600 - 61);
    assert!(app.lease(W, json!({ "job_types": ["a"] })).await.is_empty());
    app.advance(1);
    let got = app.lease(W, json!({ "job_types": ["a"] })).await;
    assert_eq!(ids(&got), vec![s(&at["job_id"])]);
    // A time in the past is available at once.
    let past = app
        .enqueue(json!({ "type": "p", "input": {}, "available_at": "2020-01-01T00:00:00Z" }))
        .await;
    assert_eq!(
        ids(&app.lease(W, json!({ "job_types": ["p"] })).await),
        vec![s(&past["job_id"])]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_enqueue_keeps_order_and_is_all_or_nothing() {
    let app = spawn_app().await;
    let id_b = "0191e3c1-0000-7000-8000-00000000000b";
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/batch",
            Some(json!({ "jobs": [
                { "type": "c", "input": { "n": 0 }, "priority": 7 },
                { "type": "a", "input": { "n": 1 }, "job_id": id_b, "delay_seconds": 5 },
                { "type": "b", "input": { "n": 2 }, "idempotency_key": "k" },
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let jobs = r.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 3);
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j["input"]["n"], i, "order kept: {j}");
        assert_eq!(j["status"], "queued");
        assert_eq!(app.job(&s(&j["job_id"])).await["input"]["n"], i);
    }
    assert_eq!(jobs[0]["priority"], 7);
    assert_eq!(jobs[1]["job_id"], id_b);

    // One conflicting item (at the end) fails the whole batch; nothing of it exists.
    let fresh = "0191e3c1-0000-7000-8000-0000000000f1";
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/batch",
            Some(json!({ "jobs": [
                { "type": "x", "input": {}, "job_id": fresh },
                { "type": "x", "input": {}, "idempotency_key": "fresh-key" },
                { "type": "b", "input": { "n": 99 }, "idempotency_key": "k" },
            ]})),
        )
        .await;
    r.assert_error(409, "idempotency_conflict");
    app.worker(Method::GET, &format!("/v1/worker/jobs/{fresh}"), None)
        .await
        .assert_error(404, "job_not_found");

    // A duplicate job id fails it too, wherever it is.
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/batch",
            Some(json!({ "jobs": [
                { "type": "x", "input": {}, "job_id": fresh },
                { "type": "x", "input": {}, "job_id": id_b },
            ]})),
        )
        .await;
    r.assert_error(409, "duplicate_job_id");
    // Two items with the same new id in one batch.
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/batch",
            Some(json!({ "jobs": [
                { "type": "x", "input": {}, "job_id": fresh },
                { "type": "x", "input": {}, "job_id": fresh },
            ]})),
        )
        .await;
    r.assert_error(409, "duplicate_job_id");
    app.worker(Method::GET, &format!("/v1/worker/jobs/{fresh}"), None)
        .await
        .assert_error(404, "job_not_found");
    // An invalid item fails the batch before anything is written, naming the item.
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/batch",
            Some(json!({ "jobs": [
                { "type": "x", "input": {}, "job_id": fresh },
                { "type": "x", "input": {}, "priority": -1 },
            ]})),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert_eq!(
        r.body["error"]["fields"][0]["field"], "jobs[1].priority",
        "{}",
        r.body
    );
    app.worker(Method::GET, &format!("/v1/worker/jobs/{fresh}"), None)
        .await
        .assert_error(404, "job_not_found");
    let list = app
        .admin(Method::GET, "/v1/worker/jobs?limit=200", None)
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        3,
        "{}",
        list.body
    );
    // Nor did any key of it get taken.
    let j = app
        .enqueue(json!({ "type": "x", "input": { "other": 1 }, "idempotency_key": "fresh-key" }))
        .await;
    assert_eq!(j["input"], json!({ "other": 1 }));

    // A replayed item comes back in its place.
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/batch",
            Some(json!({ "jobs": [
                { "type": "y", "input": {} },
                { "type": "b", "input": { "n": 2.0 }, "idempotency_key": "k" },
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["jobs"][1]["job_id"], jobs[2]["job_id"]);

    // Sizes: empty, missing and over 1000 are 400; exactly 1000 is fine.
    for body in [json!({ "jobs": [] }), json!({}), json!({ "jobs": null })] {
        app.worker(Method::POST, "/v1/worker/jobs/batch", Some(body))
            .await
            .assert_error(400, "invalid_payload");
    }
    let many = |n: usize| json!({ "jobs": (0..n).map(|i| json!({ "type": "bulk", "input": { "i": i } })).collect::<Vec<_>>() });
    app.worker(Method::POST, "/v1/worker/jobs/batch", Some(many(1001)))
        .await
        .assert_error(400, "invalid_payload");
    let r = app.admin(Method::GET, "/v1/worker/queues", None).await;
    assert!(
        !r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["type"] == "bulk"),
        "nothing of a refused batch exists: {}",
        r.body
    );
    let r = app
        .worker(Method::POST, "/v1/worker/jobs/batch", Some(many(1000)))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["jobs"].as_array().unwrap().len(), 1000);
    assert_eq!(app.queue("bulk").await["counts"]["queued"], 1000);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_job_and_unknown_job() {
    let app = spawn_app().await;
    let j = app.enqueue_type("t").await;
    let g = app.job(&s(&j["job_id"])).await;
    assert_eq!(g, j);
    let unknown = uuid::Uuid::now_v7().to_string();
    for (method, path) in [
        (Method::GET, format!("/v1/worker/jobs/{unknown}")),
        (Method::GET, format!("/v1/worker/jobs/{unknown}/events")),
        (Method::POST, format!("/v1/worker/jobs/{unknown}/cancel")),
        (Method::POST, format!("/v1/worker/jobs/{unknown}/retry")),
    ] {
        app.admin(method, &path, None)
            .await
            .assert_error(404, "job_not_found");
    }
    app.heartbeat(&unknown, W, None, 60)
        .await
        .assert_error(404, "job_not_found");
    app.complete(&unknown, W, None, json!({}))
        .await
        .assert_error(404, "job_not_found");
    app.fail(&unknown, W, None, "x", true, json!({}))
        .await
        .assert_error(404, "job_not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_orders_by_priority_then_available_at_then_created_at() {
    let app = spawn_app().await;
    let t0 = app.now();
    let at = |secs: i64| wp_lite::domain::time::format(&(t0 - Duration::seconds(secs)));
    let low = app
        .enqueue(json!({ "type": "o", "input": { "n": "low" }, "priority": 10 }))
        .await;
    let b = app
        .enqueue(
            json!({ "type": "o", "input": { "n": "b" }, "priority": 1, "available_at": at(10) }),
        )
        .await;
    let a = app
        .enqueue(
            json!({ "type": "o", "input": { "n": "a" }, "priority": 1, "available_at": at(20) }),
        )
        .await;
    // Same priority and available_at: the earlier created_at goes first, even when it
    // was inserted later (the clock is set back for it).
    let later = app
        .enqueue(
            json!({ "type": "o", "input": { "n": "later" }, "priority": 1, "available_at": at(5) }),
        )
        .await;
    app.clock.set(t0 - Duration::seconds(1));
    let earlier = app.enqueue(json!({ "type": "o", "input": { "n": "earlier" }, "priority": 1, "available_at": at(5) })).await;
    app.clock.set(t0);
    let top = app
        .enqueue(json!({ "type": "o", "input": { "n": "top" }, "priority": 0 }))
        .await;
    let expected: Vec<String> = [&top, &a, &b, &earlier, &later, &low]
        .iter()
        .map(|j| s(&j["job_id"]))
        .collect();

    let first = app.lease(W, json!({ "limit": 2 })).await;
    assert_eq!(
        ids(&first),
        expected[..2].to_vec(),
        "limit 2 takes the first two"
    );
    let rest = app.lease(W, json!({ "limit": 100 })).await;
    assert_eq!(ids(&rest), expected[2..].to_vec());
    for j in first.iter().chain(&rest) {
        assert_eq!(j["status"], "leased");
        assert_eq!(j["attempts"], 1);
        assert_eq!(j["lease_owner"], W);
        assert_eq!(
            ts(&j["lease_until"]),
            t0 + Duration::seconds(600),
            "default lease 600 s"
        );
    }
    assert!(app.lease(W, json!({ "limit": 100 })).await.is_empty());

    // Default limit is 1.
    app.enqueue_type("one").await;
    app.enqueue_type("one").await;
    assert_eq!(app.lease(W, json!({})).await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_filters_by_job_types() {
    let app = spawn_app().await;
    let a = app
        .enqueue(json!({ "type": "a", "input": {}, "priority": 9 }))
        .await;
    let b = app
        .enqueue(json!({ "type": "b", "input": {}, "priority": 5 }))
        .await;
    let c = app
        .enqueue(json!({ "type": "c", "input": {}, "priority": 1 }))
        .await;
    assert!(app
        .lease(W, json!({ "job_types": ["nope"] }))
        .await
        .is_empty());
    let got = app
        .lease(W, json!({ "job_types": ["a", "b"], "limit": 10 }))
        .await;
    assert_eq!(ids(&got), vec![s(&b["job_id"]), s(&a["job_id"])]);
    // null and [] mean any type.
    let got = app
        .lease(W, json!({ "job_types": null, "limit": 10 }))
        .await;
    assert_eq!(ids(&got), vec![s(&c["job_id"])]);
    let d = app.enqueue_type("d").await;
    let got = app.lease(W, json!({ "job_types": [], "limit": 10 })).await;
    assert_eq!(ids(&got), vec![s(&d["job_id"])]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_token_appears_only_in_lease_and_heartbeat_responses() {
    let app = spawn_app().await;
    let id = s(&app
        .enqueue(json!({ "type": "t", "input": {}, "max_attempts": 5 }))
        .await["job_id"]);
    let got = app.lease(W, json!({ "lease_seconds": 60 })).await;
    let token1 = s(&got[0]["lease_token"]);
    assert!(!token1.is_empty());

    let g = app.job(&id).await;
    assert_eq!(g["status"], "leased");
    assert!(
        g.get("lease_token").is_none(),
        "GET must not reveal the token: {g}"
    );
    let list = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert!(
        list.body["items"][0].get("lease_token").is_none(),
        "{}",
        list.body
    );

    let hb = app.heartbeat(&id, W, Some(&token1), 60).await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    assert_eq!(hb.body["lease_token"], token1.as_str());
    // Also to an owner that did not send its token.
    let hb = app.heartbeat(&id, W, None, 60).await;
    assert_eq!(hb.body["lease_token"], token1.as_str());

    // The token changes with every lease.
    let r = app
        .fail(&id, W, Some(&token1), "again", true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("lease_token").is_none(), "{}", r.body);
    app.advance(40);
    let got = app.lease(W, json!({ "lease_seconds": 60 })).await;
    let token2 = s(&got[0]["lease_token"]);
    assert_ne!(token1, token2);
    let r = app.complete(&id, W, Some(&token2), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("lease_token").is_none(), "{}", r.body);
    assert!(app.job(&id).await.get("lease_token").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_extends_the_lease_and_is_coalesced() {
    let app = spawn_app().await;
    let id = s(&app.enqueue_type("hb").await["job_id"]);
    let (_, token) = app.lease_one(W, "hb", 60).await;
    for i in 1..=5 {
        app.advance(50);
        let r = app.heartbeat(&id, W, Some(&token), 60).await;
        assert_eq!(r.status, StatusCode::OK, "beat {i}: {}", r.body);
        assert_eq!(r.body["status"], "leased");
        assert_eq!(
            ts(&r.body["lease_until"]),
            app.now() + Duration::seconds(60)
        );
        // Without the heartbeats the lease would be long gone (250 s > 60 s).
        assert_eq!(app.reclaim().await, 0);
    }
    assert_eq!(
        ts(&app.job(&id).await["lease_until"]),
        app.now() + Duration::seconds(60)
    );
    let events = app.event_items(&id).await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["queued", "leased", "heartbeat"],
        "heartbeats are coalesced"
    );
    assert_eq!(events[2]["details"]["count"], 5, "{}", events[2]);
    assert_eq!(
        ts(&events[2]["ts"]),
        app.now(),
        "the coalesced row moves with the last beat"
    );

    // A later heartbeat after another event is a new row.
    let r = app.complete(&id, W, Some(&token), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.events(&id).await,
        ["queued", "leased", "heartbeat", "succeeded"]
    );

    // Lease shortening works too, and the lease then expires on the new time.
    let id2 = s(&app.enqueue_type("hb2").await["job_id"]);
    let (_, t2) = app.lease_one(W, "hb2", 600).await;
    assert_eq!(
        app.heartbeat(&id2, W, Some(&t2), 10).await.status,
        StatusCode::OK
    );
    app.advance(11);
    assert_eq!(app.reclaim().await, 1);
    assert_eq!(app.job(&id2).await["status"], "queued");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_succeeds_once() {
    let app = spawn_app().await;
    let id = s(&app.enqueue_type("c").await["job_id"]);
    let (_, token) = app.lease_one(W, "c", 60).await;
    app.advance(5);
    let r = app
        .complete(&id, W, Some(&token), json!({ "answer": 42 }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "succeeded");
    assert_eq!(r.body["result"], json!({ "answer": 42 }));
    assert!(
        r.body["lease_owner"].is_null() && r.body["lease_until"].is_null(),
        "{}",
        r.body
    );
    assert_eq!(ts(&r.body["updated_at"]), app.now());

    // Twice: with and without the token, or by another worker.
    app.complete(&id, W, Some(&token), json!({ "answer": 43 }))
        .await
        .assert_error(409, "job_not_leased");
    app.complete(&id, W, None, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    app.complete(&id, "other", None, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    app.fail(&id, W, Some(&token), "late", true, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    app.heartbeat(&id, W, Some(&token), 60)
        .await
        .assert_error(409, "job_not_leased");
    // A token that never held this job's lease is refused as a lost lease.
    app.complete(&id, W, Some(&"f".repeat(32)), json!({}))
        .await
        .assert_error(409, "lease_lost");
    let j = app.job(&id).await;
    assert_eq!(j["status"], "succeeded");
    assert_eq!(j["result"], json!({ "answer": 42 }));
    assert_eq!(app.events(&id).await, ["queued", "leased", "succeeded"]);

    // Completing with a null result (and no token) is allowed for the owner.
    let id2 = s(&app.enqueue_type("c2").await["job_id"]);
    app.lease_one(W, "c2", 60).await;
    let r = app.complete(&id2, W, None, Value::Null).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["result"].is_null());
    // A queued job was never leased.
    let id3 = s(&app.enqueue_type("c3").await["job_id"]);
    app.complete(&id3, W, None, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    app.heartbeat(&id3, W, None, 60)
        .await
        .assert_error(409, "job_not_leased");
    app.fail(&id3, W, None, "x", false, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    assert_eq!(app.job(&id3).await["status"], "queued");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_worker_or_wrong_token_is_refused() {
    let app = spawn_app().await;
    let id = s(&app.enqueue_type("w").await["job_id"]);
    let (_, token) = app.lease_one(W, "w", 60).await;

    app.heartbeat(&id, "intruder", None, 60)
        .await
        .assert_error(409, "job_not_leased");
    app.complete(&id, "intruder", None, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    app.fail(&id, "intruder", None, "x", false, json!({}))
        .await
        .assert_error(409, "job_not_leased");

    let bad = "0".repeat(32);
    app.heartbeat(&id, W, Some(&bad), 60)
        .await
        .assert_error(409, "lease_lost");
    app.complete(&id, W, Some(&bad), json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.fail(&id, W, Some(&bad), "x", false, json!({}))
        .await
        .assert_error(409, "lease_lost");

    let j = app.job(&id).await;
    assert_eq!(j["status"], "leased");
    assert_eq!(j["lease_owner"], W);
    assert_eq!(
        app.events(&id).await,
        ["queued", "leased"],
        "refusals write no events"
    );
    let r = app.complete(&id, W, Some(&token), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_retryable_requeues_with_backoff_until_attempts_run_out() {
    let app = spawn_app().await;
    let id = s(&app
        .enqueue(json!({ "type": "f", "input": {}, "max_attempts": 3 }))
        .await["job_id"]);
    let mut expected_events = vec!["queued"];
    for attempt in 1..=2i64 {
        let (_, token) = app.lease_one(W, "f", 60).await;
        let now = app.now();
        let r = app
            .fail(
                &id,
                W,
                Some(&token),
                &format!("boom {attempt}"),
                true,
                json!({ "attempt": attempt }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let j = r.body;
        assert_eq!(j["status"], "queued");
        assert_eq!(j["attempts"], attempt);
        assert_eq!(j["last_error"], format!("boom {attempt}"));
        assert!(j["result"].is_null() && j["lease_owner"].is_null(), "{j}");
        // 30 · 2^(attempts−1) plus at most 10 % jitter.
        let base = 30 * (1 << (attempt - 1));
        let wait = ts(&j["available_at"]) - now;
        assert!(
            wait >= Duration::seconds(base) && wait <= Duration::milliseconds(base * 1100),
            "attempt {attempt}: backoff {wait} not in [{base}s, {base}s+10%]"
        );
        expected_events.extend(["leased", "failed", "requeued"]);
        // Failing (or completing) that attempt again is a conflict, not a transition.
        app.fail(&id, W, Some(&token), "twice", true, json!({}))
            .await
            .assert_error(409, "job_not_leased");
        app.complete(&id, W, Some(&token), json!({}))
            .await
            .assert_error(409, "job_not_leased");
        assert_eq!(app.events(&id).await, expected_events);
        // Not leasable before the backoff ends.
        app.advance(base - 1);
        assert!(app.lease(W, json!({ "job_types": ["f"] })).await.is_empty());
        app.advance(base / 10 + 2);
    }
    let (_, token) = app.lease_one(W, "f", 60).await;
    let r = app
        .fail(
            &id,
            W,
            Some(&token),
            "boom 3",
            true,
            json!({ "attempt": 3 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["status"], "failed",
        "retryable, but attempts are exhausted"
    );
    assert_eq!(r.body["attempts"], 3);
    assert_eq!(r.body["result"]["error"], "boom 3");
    assert_eq!(r.body["result"]["details"], json!({ "attempt": 3 }));
    expected_events.extend(["leased", "failed"]);
    assert_eq!(app.events(&id).await, expected_events);
    assert!(app.lease(W, json!({ "job_types": ["f"] })).await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_non_retryable_fails_at_once() {
    let app = spawn_app().await;
    let id = s(&app
        .enqueue(json!({ "type": "nr", "input": {}, "max_attempts": 5 }))
        .await["job_id"]);
    let (_, token) = app.lease_one(W, "nr", 60).await;
    let r = app
        .fail(
            &id,
            W,
            Some(&token),
            "bad input",
            false,
            json!({ "line": 3 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["last_error"], "bad input");
    assert_eq!(r.body["result"]["error"], "bad input");
    assert_eq!(r.body["result"]["details"], json!({ "line": 3 }));
    let ev = app.event_items(&id).await;
    assert_eq!(ev.last().unwrap()["event"], "failed");
    assert_eq!(ev.last().unwrap()["details"]["error"], "bad input");
    assert_eq!(app.events(&id).await, ["queued", "leased", "failed"]);

    // `retryable` defaults to false; `details` is optional.
    let id2 = s(&app
        .enqueue(json!({ "type": "nr2", "input": {}, "max_attempts": 5 }))
        .await["job_id"]);
    app.lease_one(W, "nr2", 60).await;
    let r = app
        .worker(
            Method::POST,
            &format!("/v1/worker/jobs/{id2}/fail"),
            Some(json!({ "worker_id": W, "error": "e" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["result"]["error"], "e");
    // Failing twice is a conflict, not a second transition.
    app.fail(&id2, W, None, "again", false, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    assert_eq!(app.events(&id2).await, ["queued", "leased", "failed"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_requeues_and_fences_the_late_worker() {
    let app = spawn_app().await;
    let id = s(&app.enqueue_type("exp").await["job_id"]);
    let (_, old) = app.lease_one("slow", "exp", 30).await;
    app.advance(30);
    assert_eq!(app.reclaim().await, 0, "the lease holds until lease_until");
    app.advance(1);
    assert_eq!(app.reclaim().await, 1);
    assert_eq!(app.reclaim().await, 0);
    let j = app.job(&id).await;
    assert_eq!(j["status"], "queued");
    assert_eq!(j["last_error"], "lease_expired");
    assert_eq!(j["attempts"], 1);
    assert!(
        j["lease_owner"].is_null() && j["lease_until"].is_null(),
        "{j}"
    );
    assert_eq!(ts(&j["available_at"]), app.now(), "available at once");
    assert_eq!(app.events(&id).await, ["queued", "leased", "expired"]);

    // The stale worker is fenced off, with its token or without.
    app.complete(&id, "slow", Some(&old), json!({ "late": true }))
        .await
        .assert_error(409, "lease_lost");
    app.heartbeat(&id, "slow", Some(&old), 60)
        .await
        .assert_error(409, "lease_lost");
    app.fail(&id, "slow", Some(&old), "late", false, json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.complete(&id, "slow", None, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    let j = app.job(&id).await;
    assert_eq!(
        j["status"], "queued",
        "the late complete did not succeed the job"
    );
    assert!(j["result"].is_null());

    // Another worker takes it; the old token still does nothing.
    let (_, new) = app.lease_one("fast", "exp", 30).await;
    assert_ne!(old, new);
    app.complete(&id, "slow", Some(&old), json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.complete(&id, "fast", Some(&old), json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.complete(&id, "slow", None, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    let r = app
        .complete(&id, "fast", Some(&new), json!({ "by": "fast" }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["attempts"], 2);
    // Once it is done: the old lease is still lost; the finisher completing again is a
    // second complete.
    app.complete(&id, "slow", Some(&old), json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.complete(&id, "fast", Some(&new), json!({}))
        .await
        .assert_error(409, "job_not_leased");
    assert_eq!(
        app.events(&id).await,
        ["queued", "leased", "expired", "leased", "succeeded"]
    );

    // An owner whose lease ran out (not yet reclaimed) cannot complete either.
    let id2 = s(&app.enqueue_type("exp2").await["job_id"]);
    let (_, t2) = app.lease_one("slow", "exp2", 30).await;
    app.advance(31);
    app.complete(&id2, "slow", Some(&t2), json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.heartbeat(&id2, "slow", None, 30)
        .await
        .assert_error(409, "lease_lost");
    assert_eq!(app.job(&id2).await["status"], "leased");
    assert_eq!(app.reclaim().await, 1);
    assert_eq!(app.job(&id2).await["status"], "queued");
    assert_eq!(app.queue("exp").await["leases_expired_total"], 1);
    assert_eq!(app.queue("exp2").await["leases_expired_total"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_on_the_last_attempt_fails_the_job() {
    let app = spawn_app().await;
    let id = s(&app
        .enqueue(json!({ "type": "last", "input": {}, "max_attempts": 1 }))
        .await["job_id"]);
    let (_, token) = app.lease_one(W, "last", 10).await;
    app.advance(11);
    assert_eq!(app.reclaim().await, 1);
    let j = app.job(&id).await;
    assert_eq!(j["status"], "failed");
    assert_eq!(j["last_error"], "lease_expired");
    assert_eq!(j["result"]["error"], "lease_expired");
    assert_eq!(app.events(&id).await, ["queued", "leased", "expired"]);
    // The late worker lost its lease (whether or not the reclaim ran first).
    app.complete(&id, W, Some(&token), json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.fail(&id, W, Some(&token), "late", true, json!({}))
        .await
        .assert_error(409, "lease_lost");
    app.complete(&id, W, None, json!({}))
        .await
        .assert_error(409, "job_not_leased");
    assert!(app
        .lease(W, json!({ "job_types": ["last"] }))
        .await
        .is_empty());
    assert_eq!(app.job(&id).await["status"], "failed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_queued_and_leased_and_not_from_finished() {
    let app = spawn_app().await;
    // Queued → canceled; never leased afterwards.
    let q = s(&app.enqueue_type("cq").await["job_id"]);
    let r = app.cancel(&q).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "canceled");
    assert!(app
        .lease(W, json!({ "job_types": ["cq"] }))
        .await
        .is_empty());
    assert_eq!(app.events(&q).await, ["queued", "canceled"]);
    app.cancel(&q).await.assert_error(409, "invalid_status");

    // Leased → canceled; the worker learns it on its next call.
    let l = s(&app.enqueue_type("cl").await["job_id"]);
    let (_, token) = app.lease_one(W, "cl", 60).await;
    let r = app.cancel(&l).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "canceled");
    assert!(r.body["lease_owner"].is_null());
    app.heartbeat(&l, W, Some(&token), 60)
        .await
        .assert_error(409, "job_canceled");
    app.heartbeat(&l, W, None, 60)
        .await
        .assert_error(409, "job_canceled");
    app.complete(&l, W, Some(&token), json!({}))
        .await
        .assert_error(409, "job_canceled");
    app.fail(&l, W, Some(&token), "x", true, json!({}))
        .await
        .assert_error(409, "job_canceled");
    assert_eq!(app.job(&l).await["status"], "canceled");
    assert_eq!(app.events(&l).await, ["queued", "leased", "canceled"]);
    // Its lease is not reclaimed later.
    app.advance(120);
    assert_eq!(app.reclaim().await, 0);
    assert_eq!(app.job(&l).await["status"], "canceled");

    // Succeeded and failed are final for cancel.
    let done = s(&app.enqueue_type("cd").await["job_id"]);
    let (_, t) = app.lease_one(W, "cd", 60).await;
    app.complete(&done, W, Some(&t), json!({})).await;
    app.cancel(&done).await.assert_error(409, "invalid_status");
    let failed = s(&app.enqueue_type("cf").await["job_id"]);
    let (_, t) = app.lease_one(W, "cf", 60).await;
    app.fail(&failed, W, Some(&t), "x", false, json!({})).await;
    app.cancel(&failed)
        .await
        .assert_error(409, "invalid_status");
    assert_eq!(app.job(&done).await["status"], "succeeded");
    assert_eq!(app.job(&failed).await["status"], "failed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_from_failed_and_canceled() {
    let app = spawn_app().await;
    // Failed with every attempt spent: max_attempts is raised to attempts + 1.
    let f = s(&app
        .enqueue(json!({ "type": "rf", "input": {}, "max_attempts": 1 }))
        .await["job_id"]);
    let (_, t) = app.lease_one(W, "rf", 60).await;
    app.fail(&f, W, Some(&t), "nope", true, json!({})).await;
    assert_eq!(app.job(&f).await["status"], "failed");
    app.advance(100);
    let r = app.retry(&f).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["attempts"], 1, "attempts are kept");
    assert_eq!(r.body["max_attempts"], 2);
    assert_eq!(ts(&r.body["available_at"]), app.now());
    assert!(r.body["result"].is_null(), "{}", r.body);
    assert_eq!(
        app.events(&f).await,
        ["queued", "leased", "failed", "retried"]
    );
    let (_, t) = app.lease_one(W, "rf", 60).await;
    let r = app
        .complete(&f, W, Some(&t), json!({ "second": true }))
        .await;
    assert_eq!(r.body["status"], "succeeded");
    assert_eq!(r.body["attempts"], 2);
    app.retry(&f).await.assert_error(409, "invalid_status");

    // Canceled with attempts to spare: max_attempts unchanged.
    let c = s(&app
        .enqueue(json!({ "type": "rc", "input": {}, "max_attempts": 4 }))
        .await["job_id"]);
    app.cancel(&c).await;
    let r = app.retry(&c).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["attempts"], 0);
    assert_eq!(r.body["max_attempts"], 4);
    assert_eq!(app.events(&c).await, ["queued", "canceled", "retried"]);

    // Not from queued or leased.
    app.retry(&c).await.assert_error(409, "invalid_status");
    app.lease_one(W, "rc", 60).await;
    app.retry(&c).await.assert_error(409, "invalid_status");
    assert_eq!(app.job(&c).await["status"], "leased");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_list_is_newest_first_filtered_and_paged() {
    let app = spawn_app().await;
    let mut made = Vec::new();
    for i in 0..23 {
        let ty = if i % 3 == 0 { "lb" } else { "la" };
        made.push(s(&app
            .enqueue(json!({ "type": ty, "input": { "i": i } }))
            .await["job_id"]));
    }
    // Two of type la leased, one of them succeeded.
    let got = app
        .lease(W, json!({ "job_types": ["la"], "limit": 2 }))
        .await;
    let done = s(&got[0]["job_id"]);
    app.complete(&done, W, None, json!({})).await;

    async fn walk(app: &TestApp, query: &str, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/v1/worker/jobs?limit={limit}{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = app.admin(Method::GET, &path, None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            let items = r.body["items"].as_array().unwrap();
            assert!(items.len() <= limit);
            out.extend(items.iter().map(|j| s(&j["job_id"])));
            pages += 1;
            assert!(pages < 100, "paging does not end");
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    for limit in [1, 5, 23, 50] {
        let all = walk(&app, "", limit).await;
        assert_eq!(all, newest_first, "limit {limit}");
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 23);
    }
    let default = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert_eq!(default.body["items"].as_array().unwrap().len(), 23);
    assert!(default.body["next_cursor"].is_null());

    let lb: Vec<String> = newest_first
        .iter()
        .enumerate()
        .filter(|(i, _)| (22 - i) % 3 == 0)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(walk(&app, "&type=lb", 2).await, lb);
    let leased = walk(&app, "&status=leased", 1).await;
    assert_eq!(leased, vec![s(&got[1]["job_id"])]);
    assert_eq!(
        walk(&app, "&status=succeeded&type=la", 10).await,
        vec![done.clone()]
    );
    assert_eq!(walk(&app, "&status=queued&type=la", 4).await.len(), 15 - 2);
    assert!(walk(&app, "&status=failed", 10).await.is_empty());
    assert!(walk(&app, "&type=none", 10).await.is_empty());
    // Every item is a full job view without the token.
    let r = app
        .admin(Method::GET, "/v1/worker/jobs?status=leased", None)
        .await;
    let item = &r.body["items"][0];
    assert_eq!(item["status"], "leased");
    assert_eq!(item["lease_owner"], W);
    assert!(item.get("lease_token").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_every_transition_in_order() {
    let app = spawn_app().await;
    let id = s(&app
        .enqueue(json!({ "type": "ev", "input": {}, "max_attempts": 2 }))
        .await["job_id"]);
    let (_, t) = app.lease_one(W, "ev", 30).await;
    app.advance(1);
    app.heartbeat(&id, W, Some(&t), 30).await;
    app.fail(&id, W, Some(&t), "first", true, json!({ "k": 1 }))
        .await;
    app.advance(40);
    let (_, t) = app.lease_one(W, "ev", 30).await;
    app.advance(31);
    app.reclaim().await;
    assert_eq!(app.job(&id).await["status"], "failed");
    app.retry(&id).await;
    app.lease_one(W, "ev", 30).await;
    app.cancel(&id).await;
    app.complete(&id, W, Some(&t), json!({}))
        .await
        .assert_error(409, "job_canceled");

    let items = app.event_items(&id).await;
    let names: Vec<&str> = items.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "queued",
            "leased",
            "heartbeat",
            "failed",
            "requeued",
            "leased",
            "expired",
            "retried",
            "leased",
            "canceled"
        ]
    );
    // The creation opens the history with id 0; every stored event after it has a
    // larger id than the one before.
    assert_eq!(items[0]["id"], 0, "{items:?}");
    let mut last_id = -1;
    let mut last_ts = None;
    for e in &items {
        let id = e["id"].as_i64().unwrap();
        assert!(id > last_id, "ids increase: {items:?}");
        last_id = id;
        let t = ts(&e["ts"]);
        assert!(
            last_ts.is_none_or(|l| l <= t),
            "times never go back: {items:?}"
        );
        last_ts = Some(t);
    }
    assert_eq!(items[1]["details"]["worker_id"], W);
    assert_eq!(items[3]["details"]["error"], "first");
    assert_eq!(items[6]["details"]["to"], "failed");
    // The worker token may not read events.
    app.worker(Method::GET, &format!("/v1/worker/jobs/{id}/events"), None)
        .await
        .assert_error(403, "forbidden");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_count_per_type_and_status() {
    let app = spawn_app().await;
    let r = app.admin(Method::GET, "/v1/worker/queues", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"], json!([]));

    for _ in 0..4 {
        app.enqueue_type("qa").await;
    }
    app.enqueue(json!({ "type": "qb", "input": {}, "max_attempts": 1 }))
        .await;
    app.enqueue(json!({ "type": "qb", "input": {}, "delay_seconds": 3600 }))
        .await;
    app.advance(10);
    // qa: 1 succeeded, 1 failed, 1 canceled, 1 queued.
    let (a1, _) = app.lease_one(W, "qa", 60).await;
    app.complete(&a1, W, None, json!({})).await;
    let (a2, _) = app.lease_one(W, "qa", 60).await;
    app.fail(&a2, W, None, "x", false, json!({})).await;
    let (a3, _) = app.lease_one(W, "qa", 60).await;
    app.cancel(&a3).await;
    // qb: the ready one is leased and expires on its last attempt; the delayed one waits.
    app.lease_one(W, "qb", 5).await;
    app.advance(6);
    assert_eq!(app.reclaim().await, 1);

    let qa = app.queue("qa").await;
    assert_eq!(
        qa["counts"],
        json!({ "queued": 1, "leased": 0, "succeeded": 1, "failed": 1, "canceled": 1 })
    );
    assert_eq!(qa["leases_expired_total"], 0);
    assert_eq!(qa["oldest_queued_age_seconds"].as_f64(), Some(16.0), "{qa}");
    let qb = app.queue("qb").await;
    assert_eq!(
        qb["counts"],
        json!({ "queued": 1, "leased": 0, "succeeded": 0, "failed": 1, "canceled": 0 })
    );
    assert_eq!(qb["leases_expired_total"], 1);
    assert!(
        qb["oldest_queued_age_seconds"].is_null(),
        "a delayed job is not waiting yet: {qb}"
    );

    let r = app.admin(Method::GET, "/v1/worker/queues", None).await;
    let types: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["qa", "qb"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_lease_returns_a_job_enqueued_while_it_waits() {
    let app = spawn_app().await;
    let client = app.client.clone();
    let url = app.url("/v1/worker/jobs/lease");
    let waiter = tokio::spawn(async move {
        let r = client
            .post(url)
            .bearer_auth(WORKER)
            .json(&json!({ "worker_id": "poller", "job_types": ["lp"], "wait_ms": 10000 }))
            .send()
            .await
            .unwrap();
        Resp::from(r).await
    });
    // A job of another type does not end the wait.
    app.enqueue_type("other").await;
    let j = app
        .enqueue(json!({ "type": "lp", "input": { "hello": 1 } }))
        .await;
    let r = waiter.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let jobs = r.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{}", r.body);
    assert_eq!(jobs[0]["job_id"], j["job_id"]);
    assert_eq!(jobs[0]["lease_owner"], "poller");
    assert_eq!(app.job(&s(&j["job_id"])).await["status"], "leased");
    assert_eq!(app.queue("other").await["counts"]["queued"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_with_nothing_arriving_returns_an_empty_list() {
    let app = spawn_app().await;
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/lease",
            Some(json!({ "worker_id": "poller", "wait_ms": 300 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({ "jobs": [] }));
    // wait_ms 0 answers at once, empty too.
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/lease",
            Some(json!({ "worker_id": "p", "wait_ms": 0 })),
        )
        .await;
    assert_eq!(r.body, json!({ "jobs": [] }));
    app.stop().await;
}

/// The number of open long-polls is bounded: with `--max-long-polls 2`, two leases wait
/// (seen in `wp_lite_long_polls_open`), a third answers at once with no jobs instead of
/// parking another task, and a job enqueued later still wakes the two that wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_past_the_limit_answer_at_once() {
    let app = spawn_with(Opts {
        max_long_polls: 2,
        ..Default::default()
    })
    .await;
    let open = || async {
        app.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix("wp_lite_long_polls_open "))
            .map(|v| v.trim().parse::<f64>().unwrap() as i64)
            .unwrap_or(-1)
    };
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let (client, url) = (app.client.clone(), app.url("/v1/worker/jobs/lease"));
            tokio::spawn(async move {
                let r: Value = client
                    .post(url)
                    .bearer_auth(WORKER)
                    .json(&json!({ "worker_id": format!("w{i}"), "job_types": ["lp"], "wait_ms": 30_000 }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                r["jobs"].as_array().unwrap().len()
            })
        })
        .collect();
    eventually(10, "the two long-polls to park", || async {
        (open().await == 2).then_some(())
    })
    .await;
    // The third: answered without waiting, although it asked for 30 s.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.lease("w3", json!({ "job_types": ["lp"], "wait_ms": 30_000 })),
    )
    .await
    .expect("a lease past the limit does not wait");
    assert!(r.is_empty());
    assert_eq!(open().await, 2);
    // Work arrives: both waiters get a job.
    app.enqueue_type("lp").await;
    app.enqueue_type("lp").await;
    let mut got = 0;
    for w in waiters {
        got += tokio::time::timeout(std::time::Duration::from_secs(10), w)
            .await
            .expect("woken")
            .unwrap();
    }
    assert_eq!(got, 2);
    assert_eq!(open().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_reads_carry_an_etag_and_answer_304_while_unchanged() {
    let app = spawn_app().await;
    app.enqueue_type("etag.a").await;
    let bearer = format!("Bearer {ADMIN}");
    // A GET with the admin token and, when given, an If-None-Match.
    let get = |path: &'static str, tag: Option<String>| {
        let (app, bearer) = (&app, bearer.clone());
        async move {
            let mut headers = vec![("authorization", bearer.as_str())];
            if let Some(t) = tag.as_deref() {
                headers.push(("if-none-match", t));
            }
            app.send_with(Method::GET, path, &headers, None).await
        }
    };
    for path in [
        "/v1/worker/jobs?limit=20",
        "/v1/worker/queues",
        "/v1/admin/telemetry/summary",
        "/v1/admin/notifications/broadcasts?limit=20",
    ] {
        let first = get(path, None).await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        let tag = first.headers["etag"].to_str().unwrap().to_string();
        assert!(tag.starts_with("W/\""), "{path}: {tag}");
        let again = get(path, Some(tag.clone())).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.body, Value::Null, "{path}: no body");
        assert_eq!(again.headers["etag"].to_str().unwrap(), tag);
        // Another tag, or none: the whole answer.
        let other = get(path, Some("W/\"0\"".into())).await;
        assert_eq!(other.status, StatusCode::OK, "{path}");
    }
    // A change gives another tag; the old one no longer matches.
    let path = "/v1/worker/jobs?limit=20";
    let before = get(path, None).await;
    let tag = before.headers["etag"].to_str().unwrap().to_string();
    app.enqueue_type("etag.b").await;
    let after = get(path, Some(tag.clone())).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_ne!(after.headers["etag"].to_str().unwrap(), tag);
    assert_eq!(after.body["items"].as_array().unwrap().len(), 2);
    // Credentials are checked before anything is compared.
    let anon = app
        .send_with(Method::GET, path, &[("if-none-match", "*")], None)
        .await;
    anon.assert_error(401, "unauthorized");
    // Writes are never conditional.
    let posted = app
        .send_with(
            Method::POST,
            "/v1/worker/jobs",
            &[("authorization", &bearer), ("if-none-match", "*")],
            Some(json!({"type": "etag.c", "input": {}})),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED);
    assert!(posted.headers.get("etag").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_gives_a_lease_back_at_once_without_counting_the_attempt() {
    let app = spawn_app().await;
    let id = s(&app.enqueue_type("rel").await["job_id"]);
    let (_, token) = app.lease_one(W, "rel", 600).await;
    let shared = &app;
    let path = format!("/v1/worker/jobs/{id}/release");
    let release = |worker: &str, token: Option<&str>| {
        let mut body = json!({ "worker_id": worker });
        if let Some(t) = token {
            body["lease_token"] = json!(t);
        }
        let path = path.clone();
        async move { shared.worker(Method::POST, &path, Some(body)).await }
    };
    // Only the holder of the lease, with the lease it holds.
    release("intruder", None)
        .await
        .assert_error(409, "job_not_leased");
    release(W, Some(&"0".repeat(32)))
        .await
        .assert_error(409, "lease_lost");
    let r = release(W, Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["attempts"], 0);
    assert!(r.body["lease_token"].is_null());
    assert!(ts(&r.body["available_at"]) <= app.now());
    assert_eq!(app.events(&id).await, ["queued", "leased", "released"]);
    // Twice is a conflict (the old token's lease is gone; without a token, nothing is
    // leased); the job leases again at once, as a first attempt.
    release(W, Some(&token))
        .await
        .assert_error(409, "lease_lost");
    release(W, None).await.assert_error(409, "job_not_leased");
    let (again, _) = app.lease_one("w2", "rel", 60).await;
    assert_eq!(again, id);
    assert_eq!(app.job(&id).await["attempts"], 1);
    // Unknown and malformed ids.
    app.worker(
        Method::POST,
        "/v1/worker/jobs/0190b4a0-0000-7000-8000-000000000000/release",
        Some(json!({ "worker_id": W })),
    )
    .await
    .assert_error(404, "job_not_found");
    app.worker(
        Method::POST,
        "/v1/worker/jobs/nope/release",
        Some(json!({ "worker_id": W })),
    )
    .await
    .assert_error(400, "invalid_payload");
    app.stop().await;
}
