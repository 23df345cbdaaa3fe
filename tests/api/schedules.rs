//! Schedules (`/v1/worker/schedules`) and queue controls (`/v1/worker/queues/{type}/…`)
//! through the real server, on the test's clock: the maintenance tick is stepped by the
//! test at chosen instants, so calendars, daylight-saving days and downtime are exact and
//! nothing sleeps.

use crate::support::*;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

impl TestApp {
    async fn put_schedule(&self, name: &str, body: Value) -> Resp {
        self.admin(
            Method::PUT,
            &format!("/v1/worker/schedules/{name}"),
            Some(body),
        )
        .await
    }

    async fn schedule(&self, name: &str) -> Value {
        let r = self
            .admin(Method::GET, &format!("/v1/worker/schedules/{name}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// One maintenance tick of the schedules at the clock's time; (enqueued, skipped).
    async fn tick(&self) -> (usize, usize) {
        let t = self
            .app
            .as_ref()
            .unwrap()
            .state()
            .schedules
            .tick()
            .await
            .unwrap();
        (t.enqueued, t.skipped)
    }

    /// The idempotency keys of the jobs of a type, oldest first.
    async fn run_keys(&self, job_type: &str) -> Vec<String> {
        let r = self
            .admin(
                Method::GET,
                &format!("/v1/worker/jobs?type={job_type}&limit=200"),
                None,
            )
            .await;
        let mut keys: Vec<String> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                j["idempotency_key"]
                    .as_str()
                    .unwrap_or("manual")
                    .to_string()
            })
            .collect();
        keys.reverse();
        keys
    }
}

fn body(cron: &str, tz: &str, job_type: &str) -> Value {
    json!({ "cron": cron, "timezone": tz, "job": { "type": job_type, "input": { "k": 1 } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_enqueues_each_run_once_and_one_catch_up_after_downtime() {
    let app = spawn_app().await;
    app.clock.set(at("2026-01-01T12:00:00Z"));
    let r = app
        .put_schedule("hourly", body("0 * * * *", "UTC", "report"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (k, v) in [
        ("name", json!("hourly")),
        ("cron", json!("0 * * * *")),
        ("timezone", json!("UTC")),
        ("enabled", json!(true)),
        ("overlap", json!("skip")),
        ("next_run_at", json!("2026-01-01T13:00:00.000Z")),
        ("last_run_at", Value::Null),
        ("last_job_id", Value::Null),
        ("runs_total", json!(0)),
        ("skipped_total", json!(0)),
    ] {
        assert_eq!(r.body[k], v, "{k}: {}", r.body);
    }
    assert_eq!(r.body["job"]["type"], "report");
    assert_eq!(r.body["job"]["input"], json!({"k": 1}));
    assert_eq!(r.body["job"]["priority"], 5);

    app.clock.set(at("2026-01-01T12:59:59Z"));
    assert_eq!(app.tick().await, (0, 0), "not yet");
    app.clock.set(at("2026-01-01T13:00:00.400Z"));
    assert_eq!(app.tick().await, (1, 0));
    assert_eq!(app.tick().await, (0, 0), "a run is enqueued once");
    let s = app.schedule("hourly").await;
    assert_eq!(s["next_run_at"], "2026-01-01T14:00:00.000Z");
    assert_eq!(s["last_run_at"], "2026-01-01T13:00:00.000Z");
    assert_eq!(s["runs_total"], 1);
    let job = app.job(s["last_job_id"].as_str().unwrap()).await;
    assert_eq!(
        job["idempotency_key"],
        "schedule:hourly:2026-01-01T13:00:00.000Z"
    );
    assert_eq!(job["input"], json!({"k": 1}));
    // Finish it, so overlap does not skip what follows.
    let leased = app.lease("w", json!({ "job_types": ["report"] })).await;
    let done = app
        .worker(
            Method::POST,
            &format!(
                "/v1/worker/jobs/{}/complete",
                leased[0]["job_id"].as_str().unwrap()
            ),
            Some(json!({ "worker_id": "w", "lease_token": leased[0]["lease_token"] })),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);

    // Down from 13:00 to 18:20: one catch-up run, the latest (18:00), never five.
    app.clock.set(at("2026-01-01T18:20:00Z"));
    assert_eq!(app.tick().await, (1, 0));
    assert_eq!(app.tick().await, (0, 0));
    assert_eq!(
        app.run_keys("report").await,
        [
            "schedule:hourly:2026-01-01T13:00:00.000Z",
            "schedule:hourly:2026-01-01T18:00:00.000Z"
        ]
    );
    assert_eq!(
        app.schedule("hourly").await["next_run_at"],
        "2026-01-01T19:00:00.000Z"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cron_form_gives_its_next_run() {
    let app = spawn_app().await;
    app.clock.set(at("2026-01-01T10:00:07Z"));
    for (cron, tz, next) in [
        ("*/15 * * * *", "UTC", "2026-01-01T10:15:00.000Z"),
        ("30 */10 * * * *", "UTC", "2026-01-01T10:00:30.000Z"),
        ("@hourly", "UTC", "2026-01-01T11:00:00.000Z"),
        ("@daily", "UTC", "2026-01-02T00:00:00.000Z"),
        ("@weekly", "UTC", "2026-01-04T00:00:00.000Z"),
        ("@monthly", "UTC", "2026-02-01T00:00:00.000Z"),
        ("@yearly", "UTC", "2027-01-01T00:00:00.000Z"),
        ("@every 90s", "UTC", "2026-01-01T10:01:37.000Z"),
        (
            "0 9 * * MON-FRI",
            "Europe/Berlin",
            "2026-01-02T08:00:00.000Z",
        ),
        ("0 9 * * *", "America/New_York", "2026-01-01T14:00:00.000Z"),
    ] {
        let r = app.put_schedule("forms", body(cron, tz, "t")).await;
        assert_eq!(r.status, StatusCode::OK, "{cron}: {}", r.body);
        assert_eq!(r.body["next_run_at"], next, "{cron} in {tz}");
    }
    app.stop().await;
}

/// Europe/Berlin, 2026: clocks go forward on 29 March (02:00 → 03:00) and back on
/// 25 October (03:00 → 02:00).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daylight_saving_days_in_berlin() {
    let app = spawn_app().await;
    // Spring forward: 02:30 does not exist; the run is at 03:00 CEST (01:00Z), once.
    app.clock.set(at("2026-03-28T12:00:00Z"));
    let r = app
        .put_schedule(
            "night",
            json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin", "overlap": "allow",
                    "job": { "type": "night", "input": {} } }),
        )
        .await;
    assert_eq!(
        r.body["next_run_at"], "2026-03-29T01:00:00.000Z",
        "{}",
        r.body
    );
    app.clock.set(at("2026-03-29T01:00:00.100Z"));
    assert_eq!(app.tick().await, (1, 0));
    app.clock.set(at("2026-03-29T12:00:00Z"));
    assert_eq!(app.tick().await, (0, 0));
    assert_eq!(
        app.schedule("night").await["next_run_at"],
        "2026-03-30T00:30:00.000Z",
        "02:30 CEST is 00:30Z"
    );

    // Fall back: 02:30 happens twice (00:30Z and 01:30Z); the run is at the first only.
    app.clock.set(at("2026-10-24T12:00:00Z"));
    let r = app
        .put_schedule(
            "night",
            json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin", "overlap": "allow",
                    "job": { "type": "night", "input": {} }, "enabled": false }),
        )
        .await;
    assert_eq!(r.body["next_run_at"], Value::Null, "disabled: no next run");
    let r = app
        .put_schedule(
            "night",
            json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin", "overlap": "allow",
                    "job": { "type": "night", "input": {} } }),
        )
        .await;
    assert_eq!(r.body["next_run_at"], "2026-10-25T00:30:00.000Z");
    app.clock.set(at("2026-10-25T00:30:00.100Z"));
    assert_eq!(app.tick().await, (1, 0));
    app.clock.set(at("2026-10-25T01:30:00.100Z"));
    assert_eq!(
        app.tick().await,
        (0, 0),
        "the repeated 02:30 does not run again"
    );
    assert_eq!(
        app.schedule("night").await["next_run_at"],
        "2026-10-26T01:30:00.000Z",
        "02:30 CET is 01:30Z"
    );
    assert_eq!(
        app.run_keys("night").await,
        [
            "schedule:night:2026-03-29T01:00:00.000Z",
            "schedule:night:2026-10-25T00:30:00.000Z"
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_with_a_leased_job_and_trigger_outside_the_calendar() {
    let app = spawn_app().await;
    app.clock.set(at("2026-01-01T12:00:00Z"));
    app.put_schedule("sync", body("@every 1m", "UTC", "sync"))
        .await;
    app.clock.set(at("2026-01-01T12:01:00.100Z"));
    assert_eq!(app.tick().await, (1, 0));
    let leased = app.lease("w", json!({ "job_types": ["sync"] })).await;
    assert_eq!(leased.len(), 1);
    app.clock.set(at("2026-01-01T12:02:00.100Z"));
    assert_eq!(app.tick().await, (0, 1), "the previous run's job is leased");
    let s = app.schedule("sync").await;
    assert_eq!(
        (s["runs_total"].clone(), s["skipped_total"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(s["next_run_at"], "2026-01-01T12:03:00.000Z");

    // Trigger: 201 with a job now; the calendar does not move.
    let r = app
        .admin(
            Method::POST,
            "/v1/worker/schedules/sync/actions/trigger",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["type"], "sync");
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["idempotency_key"], Value::Null);
    let s = app.schedule("sync").await;
    assert_eq!(s["next_run_at"], "2026-01-01T12:03:00.000Z");
    assert_eq!(s["runs_total"], 2);
    assert_eq!(s["last_job_id"], r.body["job_id"]);
    app.admin(
        Method::POST,
        "/v1/worker/schedules/none/actions/trigger",
        None,
    )
    .await
    .assert_error(404, "schedule_not_found");

    // Listed, paged by name; deleted (its jobs stay).
    app.put_schedule("a.first", body("@daily", "UTC", "x"))
        .await;
    let p1 = app
        .admin(Method::GET, "/v1/worker/schedules?limit=1", None)
        .await;
    assert_eq!(p1.body["items"][0]["name"], "a.first");
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_string();
    let p2 = app
        .admin(
            Method::GET,
            &format!("/v1/worker/schedules?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(p2.body["items"][0]["name"], "sync");
    assert_eq!(p2.body["next_cursor"], Value::Null);
    let r = app
        .admin(Method::DELETE, "/v1/worker/schedules/sync", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.admin(Method::GET, "/v1/worker/schedules/sync", None)
        .await
        .assert_error(404, "schedule_not_found");
    app.admin(Method::DELETE, "/v1/worker/schedules/sync", None)
        .await
        .assert_error(404, "schedule_not_found");
    assert_eq!(app.run_keys("sync").await.len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_input_is_checked_field_by_field() {
    let app = spawn_app().await;
    let job = json!({ "type": "t", "input": {} });
    let long = "n".repeat(201);
    let cases: Vec<(String, Value, &str)> = vec![
        (
            "ok".into(),
            json!({ "cron": "61 * * * *", "job": job }),
            "cron",
        ),
        ("ok".into(), json!({ "cron": "* * *", "job": job }), "cron"),
        (
            "ok".into(),
            json!({ "cron": "@sometimes", "job": job }),
            "cron",
        ),
        (
            "ok".into(),
            json!({ "cron": "@every 0s", "job": job }),
            "cron",
        ),
        (
            "ok".into(),
            json!({ "cron": "@every soon", "job": job }),
            "cron",
        ),
        ("ok".into(), json!({ "cron": "", "job": job }), "cron"),
        (
            "ok".into(),
            json!({ "cron": "0 0 30 2 *", "job": job }),
            "never matches",
        ),
        ("ok".into(), json!({ "job": job }), "cron"),
        ("ok".into(), json!({ "cron": 5, "job": job }), "cron"),
        (
            "ok".into(),
            json!({ "cron": "@daily", "timezone": "Mars/Olympus", "job": job }),
            "timezone",
        ),
        (
            "ok".into(),
            json!({ "cron": "@daily", "timezone": "", "job": job }),
            "timezone",
        ),
        ("ok".into(), json!({ "cron": "@daily" }), "job"),
        ("ok".into(), json!({ "cron": "@daily", "job": [] }), "job"),
        (
            "ok".into(),
            json!({ "cron": "@daily", "job": { "input": {} } }),
            "job.type",
        ),
        (
            "ok".into(),
            json!({ "cron": "@daily", "job": { "type": "t", "input": [] } }),
            "job.input",
        ),
        (
            "ok".into(),
            json!({ "cron": "@daily", "job": { "type": "t", "input": {}, "priority": 5000 } }),
            "job.priority",
        ),
        (
            "ok".into(),
            json!({ "cron": "@daily", "job": { "type": "t", "input": {}, "idempotency_key": "k" } }),
            "job.idempotency_key",
        ),
        (
            "ok".into(),
            json!({ "cron": "@daily", "job": { "type": "t", "input": {}, "delay_seconds": 5 } }),
            "job.delay_seconds",
        ),
        (
            "ok".into(),
            json!({ "cron": "@daily", "job": job, "overlap": "maybe" }),
            "overlap",
        ),
        (
            "ok".into(),
            json!({ "cron": "@daily", "job": job, "enabled": "yes" }),
            "enabled",
        ),
        (
            "bad%20name".into(),
            json!({ "cron": "@daily", "job": job }),
            "name",
        ),
        (long, json!({ "cron": "@daily", "job": job }), "name"),
    ];
    for (name, b, field) in cases {
        let r = app.put_schedule(&name, b.clone()).await;
        r.assert_error(400, "invalid_payload");
        let text = r.body.to_string();
        assert!(text.contains(field), "{b} should name {field}: {text}");
    }
    // Nothing was written by any of them.
    let r = app.admin(Method::GET, "/v1/worker/schedules", None).await;
    assert_eq!(r.body["items"], json!([]));
    for bad in ["?limit=0", "?limit=x", "?cursor=has%20space"] {
        app.admin(Method::GET, &format!("/v1/worker/schedules{bad}"), None)
            .await
            .assert_error(400, "invalid_payload");
    }
    app.admin(Method::GET, "/v1/worker/schedules/bad%20name", None)
        .await
        .assert_error(400, "invalid_payload");
    // Malformed JSON, no content type.
    let r = app
        .send_raw(
            Method::PUT,
            "/v1/worker/schedules/x",
            Some(ADMIN),
            Some("application/json"),
            b"{".to_vec(),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    let r = app
        .send_raw(
            Method::PUT,
            "/v1/worker/schedules/x",
            Some(ADMIN),
            None,
            b"{}".to_vec(),
        )
        .await;
    r.assert_error(415, "unsupported_media_type");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_limits_through_the_api() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.enqueue_type("mail").await;
    }
    // Pausing a type with no jobs yet is allowed, and listed.
    let r = app
        .admin(Method::POST, "/v1/worker/queues/later.t/pause", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["type"], "later.t");
    assert_eq!(r.body["paused"], true);
    assert_eq!(r.body["counts"]["queued"], 0);

    let r = app
        .admin(Method::POST, "/v1/worker/queues/mail/pause", None)
        .await;
    assert_eq!(r.body["paused"], true);
    assert_eq!(r.body["max_leased"], Value::Null);
    assert_eq!(r.body["counts"]["queued"], 5);
    assert!(app.lease("w", json!({ "limit": 10 })).await.is_empty());
    assert!(app
        .lease("w", json!({ "job_types": ["mail"], "limit": 10 }))
        .await
        .is_empty());
    // Enqueue still works while paused.
    app.enqueue_type("mail").await;

    let r = app
        .admin(
            Method::PUT,
            "/v1/worker/queues/mail/limits",
            Some(json!({ "max_leased": 2 })),
        )
        .await;
    assert_eq!(
        (r.body["paused"].clone(), r.body["max_leased"].clone()),
        (json!(true), json!(2))
    );
    let r = app
        .admin(Method::POST, "/v1/worker/queues/mail/resume", None)
        .await;
    assert_eq!(
        (r.body["paused"].clone(), r.body["max_leased"].clone()),
        (json!(false), json!(2))
    );
    assert_eq!(app.lease("w", json!({ "limit": 10 })).await.len(), 2);
    assert!(
        app.lease("w", json!({ "limit": 10 })).await.is_empty(),
        "at the limit"
    );
    let r = app.admin(Method::GET, "/v1/worker/queues", None).await;
    let items = r.body["items"].as_array().unwrap();
    let mail = items.iter().find(|q| q["type"] == "mail").unwrap();
    assert_eq!(mail["counts"]["leased"], 2);
    assert_eq!(mail["max_leased"], 2);
    assert!(items
        .iter()
        .any(|q| q["type"] == "later.t" && q["paused"] == true));
    // null removes the limit.
    let r = app
        .admin(
            Method::PUT,
            "/v1/worker/queues/mail/limits",
            Some(json!({ "max_leased": null })),
        )
        .await;
    assert_eq!(r.body["max_leased"], Value::Null);
    assert_eq!(app.lease("w", json!({ "limit": 10 })).await.len(), 4);

    // The metrics show both controls, and the schedules' counters.
    let m = app.metrics_text().await;
    assert!(
        m.contains("wp_lite_queue_paused{type=\"later.t\"} 1"),
        "{m}"
    );
    assert!(m.contains("wp_lite_queue_paused{type=\"mail\"} 0"));
    // Bad input.
    for (body, field) in [
        (json!({}), "max_leased"),
        (json!({ "max_leased": -1 }), "max_leased"),
        (json!({ "max_leased": 1_000_001 }), "max_leased"),
        (json!({ "max_leased": "3" }), "max_leased"),
        (json!({ "max_leased": 1.5 }), "max_leased"),
    ] {
        let r = app
            .admin(
                Method::PUT,
                "/v1/worker/queues/mail/limits",
                Some(body.clone()),
            )
            .await;
        r.assert_error(400, "invalid_payload");
        assert!(r.body.to_string().contains(field), "{body}: {}", r.body);
    }
    app.admin(Method::POST, "/v1/worker/queues/bad%20type/pause", None)
        .await
        .assert_error(400, "invalid_payload");
    app.admin(Method::GET, "/v1/worker/queues/mail/pause", None)
        .await
        .assert_error(405, "method_not_allowed");
    app.stop().await;
}
