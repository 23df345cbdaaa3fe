//! Races through the real server: idempotent enqueues, many leasers, and transitions that
//! meet (expiry against a late complete, cancel against complete, complete twice).

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// Events that end an attempt for good or hand the job back: at most one per attempt.
const ENDINGS: [&str; 4] = ["succeeded", "failed", "expired", "canceled"];

fn endings(events: &[String]) -> usize {
    events
        .iter()
        .filter(|e| ENDINGS.contains(&e.as_str()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_idempotent_enqueues_create_one_job() {
    let app = Arc::new(spawn_app().await);
    let body =
        json!({ "type": "idem", "idempotency_key": "same", "input": { "x": 1, "y": [1, 2] } });
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            app.worker(Method::POST, "/v1/worker/jobs", Some(body))
                .await
        }));
    }
    let mut created = 0;
    let mut replayed = 0;
    let mut ids = HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::CREATED => {
                created += 1;
                assert!(r.headers.get("idempotent-replayed").is_none());
            }
            StatusCode::OK => {
                replayed += 1;
                assert_eq!(r.headers.get("idempotent-replayed").unwrap(), "true");
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
        ids.insert(s(&r.body["job_id"]));
    }
    assert_eq!((created, replayed), (1, 19));
    assert_eq!(ids.len(), 1, "every answer names the same job");
    let r = app
        .admin(Method::GET, "/v1/worker/jobs?type=idem", None)
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.body);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(app.events(&id).await, ["queued"]);

    // The same race inside batches: one job per key, whatever the interleaving.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let jobs: Vec<Value> = (0..20)
                .map(|i| json!({ "type": "idem.batch", "idempotency_key": format!("k{i}"), "input": { "i": i } }))
                .collect();
            app.worker(Method::POST, "/v1/worker/jobs/batch", Some(json!({ "jobs": jobs }))).await
        }));
    }
    let mut first: Option<Vec<Value>> = None;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let got: Vec<Value> = r.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].clone())
            .collect();
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got, "every batch names the same 20 jobs in order"),
        }
    }
    assert_eq!(app.queue("idem.batch").await["counts"]["queued"], 20);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_leasers_never_share_a_job() {
    let app = Arc::new(spawn_app().await);
    const N: usize = 1000;
    let jobs: Vec<Value> = (0..N)
        .map(|i| json!({ "type": "race", "input": { "i": i }, "priority": i % 7 }))
        .collect();
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/batch",
            Some(json!({ "jobs": jobs })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let mut tasks = Vec::new();
    for w in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("leaser-{w}");
            let mut mine = Vec::new();
            loop {
                let got = app
                    .lease(
                        &worker,
                        json!({ "job_types": ["race"], "limit": 10, "lease_seconds": 600 }),
                    )
                    .await;
                if got.is_empty() {
                    return mine;
                }
                for j in got {
                    assert_eq!(j["lease_owner"], worker.as_str());
                    assert_eq!(j["attempts"], 1, "no job is leased twice: {j}");
                    let id = s(&j["job_id"]);
                    let token = s(&j["lease_token"]);
                    let r = app
                        .complete(&id, &worker, Some(&token), json!({ "by": worker }))
                        .await;
                    assert_eq!(
                        r.status,
                        StatusCode::OK,
                        "{worker} completing {id}: {}",
                        r.body
                    );
                    mine.push(id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut per_worker = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        per_worker.push(mine.len());
        all.extend(mine);
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        all.len(),
        N,
        "leased {} times for {N} jobs (per worker {per_worker:?})",
        all.len()
    );
    assert_eq!(unique.len(), N, "a job was handed to two leasers");

    let q = app.queue("race").await;
    assert_eq!(
        q["counts"],
        json!({ "queued": 0, "leased": 0, "succeeded": N, "failed": 0, "canceled": 0 }),
        "{q}"
    );
    // Every job was leased once and succeeded once.
    let mut cursor: Option<String> = None;
    let mut listed = 0;
    loop {
        let path = match &cursor {
            None => "/v1/worker/jobs?type=race&limit=200".to_string(),
            Some(c) => format!("/v1/worker/jobs?type=race&limit=200&cursor={c}"),
        };
        let r = app.admin(Method::GET, &path, None).await;
        for j in r.body["items"].as_array().unwrap() {
            assert_eq!(j["status"], "succeeded");
            assert_eq!(j["attempts"], 1);
            assert!(unique.contains(&s(&j["job_id"])));
            listed += 1;
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(listed, N);
    for id in all.iter().step_by(97) {
        assert_eq!(app.events(id).await, ["queued", "leased", "succeeded"]);
    }
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expiring_while_its_worker_completes_late_is_lease_lost() {
    let app = Arc::new(spawn_app().await);
    const N: usize = 20;
    // Half have attempts left (expiry requeues), half are on their last (expiry fails).
    for i in 0..N {
        let max = if i % 2 == 0 { 1 } else { 3 };
        app.enqueue(json!({ "type": "late", "input": { "i": i }, "max_attempts": max }))
            .await;
    }
    let leased = app
        .lease(
            "slow",
            json!({ "job_types": ["late"], "limit": 100, "lease_seconds": 30 }),
        )
        .await;
    assert_eq!(leased.len(), N);
    app.advance(31);

    // The maintenance pass and the late completions race.
    let reclaim = {
        let app = app.clone();
        tokio::spawn(async move { app.reclaim().await })
    };
    let mut completes = Vec::new();
    for j in &leased {
        let app = app.clone();
        let (id, token) = (s(&j["job_id"]), s(&j["lease_token"]));
        completes.push(tokio::spawn(async move {
            let r = app
                .complete(&id, "slow", Some(&token), json!({ "late": true }))
                .await;
            (id, r)
        }));
    }
    for c in completes {
        let (id, r) = c.await.unwrap();
        // Before the reclaim (lease over, not yet taken back) or after it: lease_lost.
        assert_eq!(r.code(), "lease_lost", "{id}: {}", r.body);
        r.assert_error(409, "lease_lost");
    }
    assert_eq!(reclaim.await.unwrap(), N);

    for j in &leased {
        let id = s(&j["job_id"]);
        let job = app.job(&id).await;
        let events = app.events(&id).await;
        assert_eq!(events, ["queued", "leased", "expired"], "{id}");
        assert_eq!(endings(&events), 1);
        assert_eq!(job["last_error"], "lease_expired");
        assert!(
            job["result"]["late"].is_null(),
            "the late result was not stored: {job}"
        );
        let want = if job["max_attempts"] == 1 {
            "failed"
        } else {
            "queued"
        };
        assert_eq!(job["status"], want, "{job}");
    }
    assert_eq!(app.queue("late").await["leases_expired_total"], N);

    // At the lease's very last instant the lease still holds, for the fence and for the
    // reclaim alike: the complete wins, racing or not, and the reclaim takes nothing.
    let id = s(&app
        .enqueue(json!({ "type": "edge", "input": {}, "max_attempts": 1 }))
        .await["job_id"]);
    let (_, token) = app.lease_one("edge-worker", "edge", 30).await;
    app.advance(30);
    let reclaim = {
        let app = app.clone();
        tokio::spawn(async move { app.reclaim().await })
    };
    let r = app
        .complete(&id, "edge-worker", Some(&token), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(reclaim.await.unwrap(), 0);
    assert_eq!(app.events(&id).await, ["queued", "leased", "succeeded"]);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_transitions_make_exactly_one_change() {
    let app = Arc::new(spawn_app().await);
    const N: usize = 20;
    for i in 0..N {
        app.enqueue(json!({ "type": "meet", "input": { "i": i } }))
            .await;
    }
    let leased = app
        .lease("w", json!({ "job_types": ["meet"], "limit": 100 }))
        .await;
    assert_eq!(leased.len(), N);

    // Per job: two completes, a fail and an admin cancel, all at once.
    let mut tasks = Vec::new();
    for j in &leased {
        let (id, token) = (s(&j["job_id"]), s(&j["lease_token"]));
        for kind in ["complete", "complete", "fail", "cancel"] {
            let app = app.clone();
            let (id, token) = (id.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let r = match kind {
                    "complete" => app.complete(&id, "w", Some(&token), json!({})).await,
                    "fail" => {
                        app.fail(&id, "w", Some(&token), "x", false, json!({}))
                            .await
                    }
                    _ => app.cancel(&id).await,
                };
                (id, kind, r)
            }));
        }
    }
    let mut wins: std::collections::HashMap<String, Vec<&str>> = Default::default();
    for t in tasks {
        let (id, kind, r) = t.await.unwrap();
        if r.status == StatusCode::OK {
            wins.entry(id).or_default().push(kind);
        } else {
            assert_eq!(r.status, StatusCode::CONFLICT, "{kind}: {}", r.body);
            assert!(
                ["job_not_leased", "job_canceled", "invalid_status"].contains(&r.code()),
                "{kind}: {}",
                r.body
            );
        }
    }
    for j in &leased {
        let id = s(&j["job_id"]);
        let w = wins.get(&id).cloned().unwrap_or_default();
        assert_eq!(w.len(), 1, "{id}: exactly one change wins, got {w:?}");
        let events = app.events(&id).await;
        assert_eq!(events.len(), 3, "{id}: {events:?}");
        assert_eq!(endings(&events), 1, "{id}: {events:?}");
        let status = app.job(&id).await["status"].as_str().unwrap().to_string();
        let expected = match w[0] {
            "complete" => "succeeded",
            "fail" => "failed",
            _ => "canceled",
        };
        assert_eq!(status, expected, "{id}: {events:?}");
        assert_eq!(events[2], expected);
    }
    Arc::into_inner(app).unwrap().stop().await;
}
