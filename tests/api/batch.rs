//! The batch and bulk routes: `POST /v1/worker/jobs/ack` (per-item answers) and
//! `POST /v1/worker/jobs/actions/{retry,cancel}` (bounded passes over a filter).

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const W: &str = "worker-1";

async fn ack(app: &TestApp, body: Value) -> Resp {
    app.worker(Method::POST, "/v1/worker/jobs/ack", Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_answers_every_item_with_its_own_code() {
    let app = spawn_app().await;
    for _ in 0..6 {
        app.enqueue_type("ack").await;
    }
    let jobs = app
        .lease(
            W,
            json!({ "job_types": ["ack"], "limit": 5, "lease_seconds": 60 }),
        )
        .await;
    assert_eq!(jobs.len(), 5);
    let id = |i: usize| s(&jobs[i]["job_id"]);
    let tok = |i: usize| s(&jobs[i]["lease_token"]);
    let never_leased = app.enqueue_type("other").await;
    // jobs[3]: canceled by an admin; jobs[4]: completed already (a repeat).
    assert_eq!(app.cancel(&id(3)).await.status, StatusCode::OK);
    let r = app.complete(&id(4), W, Some(&tok(4)), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let unknown = uuid::Uuid::now_v7().to_string();
    let r = ack(
        &app,
        json!({ "worker_id": W, "items": [
            { "job_id": id(0), "lease_token": tok(0), "outcome": "complete", "result": { "n": 1 } },
            { "job_id": id(1), "lease_token": tok(1), "outcome": "fail", "error": "later", "retryable": true },
            { "job_id": id(2), "lease_token": "not-the-token", "outcome": "complete" },
            { "job_id": id(3), "lease_token": tok(3), "outcome": "complete" },
            { "job_id": id(4), "lease_token": tok(4), "outcome": "complete" },
            { "job_id": never_leased["job_id"], "outcome": "fail", "error": "x" },
            { "job_id": unknown, "outcome": "complete" },
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    let code = |i: usize| items[i]["error"]["code"].as_str().unwrap_or("").to_string();
    assert_eq!(items[0]["ok"], true);
    assert_eq!(items[0]["job"]["status"], "succeeded");
    assert_eq!(items[0]["job"]["result"], json!({ "n": 1 }));
    assert!(
        items[0]["job"].get("lease_token").is_none(),
        "no token in ack answers"
    );
    assert_eq!(items[1]["ok"], true);
    assert_eq!(items[1]["job"]["status"], "queued");
    assert_eq!(items[1]["job"]["last_error"], "later");
    assert_eq!(
        (items[2]["ok"].clone(), code(2)),
        (json!(false), "lease_lost".into())
    );
    assert_eq!(code(3), "job_canceled");
    assert_eq!(code(4), "job_not_leased");
    assert_eq!(code(5), "job_not_leased");
    assert_eq!(code(6), "job_not_found");
    for (i, item) in items.iter().enumerate() {
        assert!(item["job_id"].is_string(), "item {i}: {item}");
        if item["ok"] == false {
            assert!(item["error"]["message"].is_string(), "item {i}: {item}");
        }
    }
    // The answers are what the store holds, and each transition is in the history.
    assert_eq!(app.job(&id(0)).await["status"], "succeeded");
    assert_eq!(app.job(&id(2)).await["status"], "leased");
    let events = app.events(&id(1)).await;
    assert_eq!(events, ["queued", "leased", "failed", "requeued"]);
    // The refused item's lease still holds: its real token completes it.
    let r = app.complete(&id(2), W, Some(&tok(2)), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_rejects_malformed_bodies_whole() {
    let app = spawn_app().await;
    let job = app.enqueue_type("ack").await;
    let id = s(&job["job_id"]);
    let cases = [
        json!({ "items": [{ "job_id": id, "outcome": "complete" }] }),
        json!({ "worker_id": W }),
        json!({ "worker_id": W, "items": [] }),
        json!({ "worker_id": W, "items": {} }),
        json!({ "worker_id": W, "items": [{ "outcome": "complete" }] }),
        json!({ "worker_id": W, "items": [{ "job_id": id }] }),
        json!({ "worker_id": W, "items": [{ "job_id": id, "outcome": "retry" }] }),
        json!({ "worker_id": W, "items": [{ "job_id": "nope", "outcome": "complete" }] }),
        json!({ "worker_id": W, "items": [{ "job_id": id, "outcome": "fail" }] }),
        json!({ "worker_id": W, "items": [{ "job_id": id, "outcome": "complete", "result": 3 }] }),
        json!({ "worker_id": W, "items": [
            { "job_id": id, "outcome": "complete" }, { "job_id": id, "outcome": "fail", "error": "x" }
        ]}),
        json!({ "worker_id": W, "items": [7] }),
    ];
    for body in cases {
        let r = ack(&app, body.clone()).await;
        r.assert_error(400, "invalid_payload");
        assert!(r.body["error"]["fields"].is_array(), "{body}: {}", r.body);
    }
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({ "job_id": uuid::Uuid::now_v7().to_string(), "outcome": "complete" }))
        .collect();
    ack(&app, json!({ "worker_id": W, "items": too_many }))
        .await
        .assert_error(400, "invalid_payload");
    // Nothing was touched by the refused calls.
    assert_eq!(app.job(&id).await["status"], "queued");
    // Credentials: none is 401; the worker token and the admin token both may ack.
    let body = json!({ "worker_id": W, "items": [{ "job_id": id, "outcome": "complete" }] });
    app.send(
        Method::POST,
        "/v1/worker/jobs/ack",
        None,
        Some(body.clone()),
    )
    .await
    .assert_error(401, "unauthorized");
    app.send(
        Method::POST,
        "/v1/worker/jobs/ack",
        Some("wrong"),
        Some(body.clone()),
    )
    .await
    .assert_error(401, "unauthorized");
    let r = app
        .admin(Method::POST, "/v1/worker/jobs/ack", Some(body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"][0]["error"]["code"], "job_not_leased");
    app.send(Method::GET, "/v1/worker/jobs/ack", Some(ADMIN), None)
        .await
        .assert_error(405, "method_not_allowed");
    app.stop().await;
}

async fn bulk(app: &TestApp, action: &str, body: Value) -> Resp {
    app.admin(
        Method::POST,
        &format!("/v1/worker/jobs/actions/{action}"),
        Some(body),
    )
    .await
}

/// Enqueues `n` jobs of `job_type` in batches and fails each for good.
async fn failed_jobs(app: &TestApp, job_type: &str, n: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(100);
        let jobs: Vec<Value> = (0..k)
            .map(|_| json!({ "type": job_type, "input": {}, "max_attempts": 1 }))
            .collect();
        let r = app
            .worker(
                Method::POST,
                "/v1/worker/jobs/batch",
                Some(json!({ "jobs": jobs })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let leased = app
            .lease(W, json!({ "job_types": [job_type], "limit": 100 }))
            .await;
        let items: Vec<Value> = leased
            .iter()
            .map(|j| {
                json!({ "job_id": j["job_id"], "lease_token": j["lease_token"],
                             "outcome": "fail", "error": "boom" })
            })
            .collect();
        let r = ack(app, json!({ "worker_id": W, "items": items })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        left -= k;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_retry_and_cancel_over_more_rows_than_one_batch() {
    let app = spawn_app().await;
    // More than one pass (500 rows) of failed jobs, and a few of another type.
    failed_jobs(&app, "bulk", 1203).await;
    failed_jobs(&app, "keep", 3).await;
    let queued = app.enqueue_type("bulk").await;
    let r = bulk(&app, "retry", json!({ "type": "bulk", "status": "failed" })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["updated"], 1203);
    let q = app.queue("bulk").await;
    assert_eq!(q["counts"]["queued"], 1204, "{q}");
    assert_eq!(q["counts"]["failed"], 0, "{q}");
    assert_eq!(app.queue("keep").await["counts"]["failed"], 3);
    // Retried jobs lease again at once.
    let leased = app
        .lease(W, json!({ "job_types": ["bulk"], "limit": 100 }))
        .await;
    assert_eq!(leased.len(), 100);
    let id = s(&leased[0]["job_id"]);
    assert!(app.events(&id).await.contains(&"retried".to_string()));
    // Cancel by ids: only queued or leased ones change; an unknown id is left alone.
    let r = bulk(
        &app,
        "cancel",
        json!({ "job_ids": [id, queued["job_id"], uuid::Uuid::now_v7().to_string()] }),
    )
    .await;
    assert_eq!(r.body["updated"], 2, "{}", r.body);
    assert_eq!(app.job(&id).await["status"], "canceled");
    // Retrying succeeded or queued jobs changes nothing.
    let r = bulk(&app, "retry", json!({ "status": "queued" })).await;
    assert_eq!(r.body["updated"], 0, "{}", r.body);
    // Cancel everything of a type.
    let r = bulk(&app, "cancel", json!({ "type": "bulk" })).await;
    assert_eq!(r.body["updated"], 1202, "{}", r.body);
    assert_eq!(app.queue("bulk").await["counts"]["canceled"], 1204);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_check_their_filter_and_credentials() {
    let app = spawn_app().await;
    for action in ["retry", "cancel"] {
        for body in [
            json!({}),
            json!({ "status": "done" }),
            json!({ "type": "no spaces" }),
            json!({ "job_ids": [] }),
            json!({ "job_ids": ["not-a-uuid"] }),
            json!({ "job_ids": "x" }),
            json!({ "status": 3 }),
        ] {
            bulk(&app, action, body.clone())
                .await
                .assert_error(400, "invalid_payload");
        }
        let ids: Vec<String> = (0..1001)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        bulk(&app, action, json!({ "job_ids": ids }))
            .await
            .assert_error(400, "invalid_payload");
        let path = format!("/v1/worker/jobs/actions/{action}");
        let body = Some(json!({ "status": "failed" }));
        app.send(Method::POST, &path, None, body.clone())
            .await
            .assert_error(401, "unauthorized");
        app.send(Method::POST, &path, Some(WORKER), body)
            .await
            .assert_error(403, "forbidden");
    }
    app.send(
        Method::POST,
        "/v1/worker/jobs/actions/delete",
        Some(ADMIN),
        Some(json!({ "status": "failed" })),
    )
    .await
    .assert_error(404, "not_found");
    app.stop().await;
}
