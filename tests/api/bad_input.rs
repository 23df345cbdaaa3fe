//! Malformed input on every route: always a 4xx in the error shape, never a 500,
//! and the server keeps working afterwards.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What a case sends as its body.
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    name: String,
    method: Method,
    path: String,
    token: Option<&'static str>,
    body: Body,
    status: u16,
    code: &'static str,
}

/// Merges `over` into `base` (a `null` in `over` stays a null value, not a removal).
fn with(base: &Value, over: Value) -> Value {
    let mut b = base.clone();
    if let Value::Object(m) = over {
        for (k, v) in m {
            b[k] = v;
        }
    }
    b
}

/// `base` without `field`.
fn without(base: &Value, field: &str) -> Value {
    let mut b = base.clone();
    b.as_object_mut().unwrap().remove(field);
    b
}

struct Table {
    cases: Vec<Case>,
}

impl Table {
    fn add(
        &mut self,
        name: impl Into<String>,
        method: Method,
        path: &str,
        token: &'static str,
        body: Body,
        (status, code): (u16, &'static str),
    ) {
        self.cases.push(Case {
            name: name.into(),
            method,
            path: path.to_string(),
            token: Some(token),
            body,
            status,
            code,
        });
    }
    fn bad(&mut self, name: impl Into<String>, path: &str, body: Value) {
        self.add(
            name,
            Method::POST,
            path,
            WORKER,
            Body::Json(body),
            (400, "invalid_payload"),
        );
    }
}

fn long() -> String {
    "x".repeat(100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_on_every_route_is_a_4xx_never_a_500() {
    let app = spawn_app().await;
    // A real leased job, so that per-job routes get as far as their body.
    app.enqueue_type("victim").await;
    let (job, token) = app.lease_one("w1", "victim", 600).await;
    let jp = |suffix: &str| format!("/v1/worker/jobs/{job}{suffix}");

    let enqueue = json!({ "type": "t", "input": { "a": 1 } });
    let lease = json!({ "worker_id": "w1" });
    let heartbeat = json!({ "worker_id": "w1", "lease_seconds": 60, "lease_token": token });
    let complete = json!({ "worker_id": "w1", "result": {}, "lease_token": token });
    let fail = json!({ "worker_id": "w1", "error": "e", "lease_token": token });
    let release = json!({ "worker_id": "w1", "lease_token": token });
    let login = json!({ "token": ADMIN });

    // Per body route: a good body; the same with "@@S@@" in a string field it reads;
    // with 1e400 in a number it reads; the fields as a JSON array in declaration order
    // (what a derived struct would accept); deep nesting where it reads a JSON value.
    let item_arr = json!([
        null,
        "t",
        {},
        null,
        null,
        null,
        null,
        null,
        null,
        null,
        null,
        null,
        null
    ]);
    let deep = |prefix: &str, suffix: &str| {
        format!(
            "{prefix}{}{}{suffix}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
    };
    struct Route {
        name: &'static str,
        path: String,
        tok: &'static str,
        good: Value,
        s_templ: Value,
        n_text: String,
        as_array: Value,
        deep: Option<String>,
    }
    let routes = vec![
        Route {
            name: "enqueue",
            path: "/v1/worker/jobs".into(),
            tok: WORKER,
            good: enqueue.clone(),
            s_templ: json!({ "type": "t", "input": {}, "code_version": "@@S@@" }),
            n_text: r#"{"type":"t","input":{"n":1e400}}"#.into(),
            as_array: item_arr.clone(),
            deep: Some(deep(r#"{"type":"t","input":{"d":"#, "}}")),
        },
        Route {
            name: "batch",
            path: "/v1/worker/jobs/batch".into(),
            tok: WORKER,
            good: json!({ "jobs": [enqueue.clone()] }),
            s_templ: json!({ "jobs": [{ "type": "t", "input": {}, "code_version": "@@S@@" }] }),
            n_text: r#"{"jobs":[{"type":"t","input":{"n":-1e400}}]}"#.into(),
            as_array: json!([[item_arr.clone()]]),
            deep: Some(deep(r#"{"jobs":[{"type":"t","input":{"d":"#, "}}]}")),
        },
        Route {
            name: "lease",
            path: "/v1/worker/jobs/lease".into(),
            tok: WORKER,
            good: lease.clone(),
            s_templ: json!({ "worker_id": "@@S@@" }),
            n_text: r#"{"worker_id":"w1","limit":1e400}"#.into(),
            as_array: json!(["w1", null, null, null, null]),
            deep: None,
        },
        Route {
            name: "heartbeat",
            path: jp("/heartbeat"),
            tok: WORKER,
            good: heartbeat.clone(),
            s_templ: json!({ "worker_id": "@@S@@" }),
            n_text: r#"{"worker_id":"w1","lease_seconds":1e400}"#.into(),
            as_array: json!(["w1", 60, token]),
            deep: None,
        },
        Route {
            name: "complete",
            path: jp("/complete"),
            tok: WORKER,
            good: complete.clone(),
            s_templ: json!({ "worker_id": "@@S@@", "result": {} }),
            n_text: r#"{"worker_id":"w1","result":{"n":1e400}}"#.into(),
            as_array: json!(["w1", {}, token]),
            deep: Some(deep(r#"{"worker_id":"w1","result":{"d":"#, "}}")),
        },
        Route {
            name: "fail",
            path: jp("/fail"),
            tok: WORKER,
            good: fail.clone(),
            s_templ: json!({ "worker_id": "@@S@@", "error": "e" }),
            n_text: r#"{"worker_id":"w1","error":"e","details":{"n":1e400}}"#.into(),
            as_array: json!(["w1", "e", null, null, token]),
            deep: Some(deep(
                r#"{"worker_id":"w1","error":"e","details":{"d":"#,
                "}}",
            )),
        },
        Route {
            name: "release",
            path: jp("/release"),
            tok: WORKER,
            good: release.clone(),
            s_templ: json!({ "worker_id": "@@S@@" }),
            n_text: r#"{"worker_id":"w1","lease_token":1e400}"#.into(),
            as_array: json!(["w1", token]),
            deep: None,
        },
        Route {
            name: "ack",
            path: "/v1/worker/jobs/ack".into(),
            tok: WORKER,
            good: json!({ "worker_id": "w1", "items": [
                { "job_id": job, "lease_token": token, "outcome": "complete", "result": {} }
            ]}),
            s_templ: json!({ "worker_id": "w1", "items": [
                { "job_id": job, "outcome": "fail", "error": "@@S@@" }
            ]}),
            n_text: format!(
                r#"{{"worker_id":"w1","items":[{{"job_id":"{job}","outcome":"complete","result":{{"n":1e400}}}}]}}"#
            ),
            as_array: json!(["w1", [[job, token, "complete", {}, null, null, null]]]),
            deep: Some(deep(
                &format!(
                    r#"{{"worker_id":"w1","items":[{{"job_id":"{job}","outcome":"complete","result":{{"d":"#
                ),
                "}}]}",
            )),
        },
        Route {
            name: "bulk retry",
            path: "/v1/worker/jobs/actions/retry".into(),
            tok: ADMIN,
            good: json!({ "status": "failed" }),
            s_templ: json!({ "type": "@@S@@" }),
            n_text: r#"{"status":1e400}"#.into(),
            as_array: json!(["failed", null, null]),
            deep: None,
        },
        Route {
            name: "bulk cancel",
            path: "/v1/worker/jobs/actions/cancel".into(),
            tok: ADMIN,
            good: json!({ "job_ids": [job] }),
            s_templ: json!({ "job_ids": ["@@S@@"] }),
            n_text: r#"{"job_ids":[1e400]}"#.into(),
            as_array: json!([null, null, [job]]),
            deep: None,
        },
        Route {
            name: "direct send",
            path: "/v1/admin/notifications/send".into(),
            tok: ADMIN,
            good: json!({ "user_id": "u", "title": "t", "message": "m" }),
            s_templ: json!({ "user_id": "u", "title": "@@S@@", "message": "m" }),
            n_text: r#"{"user_id":"u","title":"t","message":"m","meta":{"n":1e400}}"#.into(),
            as_array: json!(["u", "t", "m"]),
            deep: Some(deep(
                r#"{"user_id":"u","title":"t","message":"m","meta":{"d":"#,
                "}}",
            )),
        },
        Route {
            name: "login",
            path: "/v1/auth/login".into(),
            tok: WORKER,
            good: login.clone(),
            s_templ: json!({ "token": "@@S@@" }),
            n_text: r#"{"token":1e400}"#.into(),
            as_array: json!([ADMIN]),
            deep: None,
        },
    ];

    let mut t = Table { cases: Vec::new() };
    const JSON: &str = "application/json";

    // ---- every body route: syntax, shape and media type ----
    for r in &routes {
        let (name, path, tok) = (r.name, r.path.as_str(), r.tok);
        let good = serde_json::to_string(&r.good).unwrap();
        let mut raws: Vec<(String, Vec<u8>)> = vec![
            ("truncated".into(), good[..good.len() - 1].into()),
            ("cut in the middle".into(), good[..good.len() / 2].into()),
            ("trailing garbage".into(), format!("{good} x").into()),
            ("two documents".into(), format!("{good}{good}").into()),
            ("single quotes".into(), good.replace('"', "'").into()),
            ("a NaN".into(), good.replacen('{', "{\"x\":NaN,", 1).into()),
            ("a comment".into(), format!("/* hi */{good}").into()),
            ("empty body".into(), b"".to_vec()),
            ("whitespace only".into(), b"  \n ".to_vec()),
            ("empty array".into(), b"[]".to_vec()),
            ("array of the good body".into(), format!("[{good}]").into()),
            (
                "the fields as a JSON array".into(),
                serde_json::to_vec(&r.as_array).unwrap(),
            ),
            ("a string".into(), b"\"hello\"".to_vec()),
            ("a number".into(), b"42".to_vec()),
            ("null".into(), b"null".to_vec()),
            ("true".into(), b"true".to_vec()),
            ("a number out of range".into(), r.n_text.clone().into()),
        ];
        let templ = serde_json::to_string(&r.s_templ).unwrap();
        for (what, val) in [
            ("a lone surrogate", b"\"\\ud800\"".to_vec()),
            ("a bad escape", b"\"\\q\"".to_vec()),
            ("invalid UTF-8", b"\"\xff\xfe\"".to_vec()),
            ("a raw control character", b"\"a\x01b\"".to_vec()),
            ("an unterminated string", b"\"abc".to_vec()),
        ] {
            let (a, b) = templ.split_once("\"@@S@@\"").unwrap();
            raws.push((what.into(), [a.as_bytes(), &val, b.as_bytes()].concat()));
        }
        if let Some(d) = &r.deep {
            raws.push(("deep nesting".into(), d.clone().into_bytes()));
        }
        for (what, bytes) in raws {
            t.add(
                format!("{name}: {what}"),
                Method::POST,
                path,
                tok,
                Body::Raw(JSON, bytes),
                (400, "invalid_payload"),
            );
        }
        // Media type.
        let good_bytes = good.into_bytes();
        for (what, ct) in [
            ("no Content-Type", ""),
            ("text/plain", "text/plain"),
            ("form", "application/x-www-form-urlencoded"),
            ("multipart", "multipart/form-data; boundary=x"),
            ("garbage content type", "not a content type"),
            ("application/jsonx", "application/jsonx"),
            ("text/json", "text/json"),
        ] {
            t.add(
                format!("{name}: {what}"),
                Method::POST,
                path,
                tok,
                Body::Raw(ct, good_bytes.clone()),
                (415, "unsupported_media_type"),
            );
        }
        t.add(
            format!("{name}: no body at all"),
            Method::POST,
            path,
            tok,
            Body::None,
            (415, "unsupported_media_type"),
        );
    }

    // ---- enqueue (and the same item inside a batch) ----
    let mut enqueue_bad: Vec<(String, Value)> = vec![
        ("type missing".into(), without(&enqueue, "type")),
        ("input missing".into(), without(&enqueue, "input")),
        (
            "input null".into(),
            with(&enqueue, json!({ "input": null })),
        ),
        (
            "input an array".into(),
            with(&enqueue, json!({ "input": [1, 2] })),
        ),
        (
            "input a string".into(),
            with(&enqueue, json!({ "input": "x" })),
        ),
        (
            "input a number".into(),
            with(&enqueue, json!({ "input": 1 })),
        ),
        (
            "input true".into(),
            with(&enqueue, json!({ "input": true })),
        ),
        ("type empty".into(), with(&enqueue, json!({ "type": "" }))),
        (
            "type with a space".into(),
            with(&enqueue, json!({ "type": "a b" })),
        ),
        (
            "type with a slash".into(),
            with(&enqueue, json!({ "type": "a/b" })),
        ),
        (
            "type non-ASCII".into(),
            with(&enqueue, json!({ "type": "tâche" })),
        ),
        (
            "type 201 chars".into(),
            with(&enqueue, json!({ "type": "a".repeat(201) })),
        ),
        (
            "job_id not a UUID".into(),
            with(&enqueue, json!({ "job_id": "not-a-uuid" })),
        ),
        (
            "job_id empty".into(),
            with(&enqueue, json!({ "job_id": "" })),
        ),
        (
            "job_id almost a UUID".into(),
            with(
                &enqueue,
                json!({ "job_id": "0191e3c1-0000-7000-8000-00000000000g" }),
            ),
        ),
        (
            "job_id too long".into(),
            with(
                &enqueue,
                json!({ "job_id": "0191e3c1-0000-7000-8000-0000000000001" }),
            ),
        ),
        (
            "priority -1".into(),
            with(&enqueue, json!({ "priority": -1 })),
        ),
        (
            "priority 1001".into(),
            with(&enqueue, json!({ "priority": 1001 })),
        ),
        (
            "priority i64 overflow".into(),
            with(
                &enqueue,
                json!({ "priority": 9_223_372_036_854_775_808u64 }),
            ),
        ),
        (
            "priority huge".into(),
            with(&enqueue, json!({ "priority": 1e30 })),
        ),
        (
            "max_attempts 0".into(),
            with(&enqueue, json!({ "max_attempts": 0 })),
        ),
        (
            "max_attempts 101".into(),
            with(&enqueue, json!({ "max_attempts": 101 })),
        ),
        (
            "max_attempts -5".into(),
            with(&enqueue, json!({ "max_attempts": -5 })),
        ),
        (
            "delay_seconds -1".into(),
            with(&enqueue, json!({ "delay_seconds": -1 })),
        ),
        (
            "delay_seconds 31536001".into(),
            with(&enqueue, json!({ "delay_seconds": 31_536_001 })),
        ),
        (
            "delay_seconds i64::MAX".into(),
            with(&enqueue, json!({ "delay_seconds": i64::MAX })),
        ),
        (
            "delay_seconds i64::MIN".into(),
            with(&enqueue, json!({ "delay_seconds": i64::MIN })),
        ),
        (
            "naive available_at".into(),
            with(&enqueue, json!({ "available_at": "2025-09-26T12:00:00" })),
        ),
        (
            "date-only available_at".into(),
            with(&enqueue, json!({ "available_at": "2025-09-26" })),
        ),
        (
            "available_at words".into(),
            with(&enqueue, json!({ "available_at": "tomorrow" })),
        ),
        (
            "available_at empty".into(),
            with(&enqueue, json!({ "available_at": "" })),
        ),
        (
            "available_at bad month".into(),
            with(&enqueue, json!({ "available_at": "2025-13-01T00:00:00Z" })),
        ),
        (
            "available_at long".into(),
            with(&enqueue, json!({ "available_at": long() })),
        ),
        (
            "delay_seconds with available_at".into(),
            with(
                &enqueue,
                json!({ "delay_seconds": 5, "available_at": "2026-01-01T12:00:00Z" }),
            ),
        ),
        (
            "cost_cap_eur not a decimal".into(),
            with(&enqueue, json!({ "cost_cap_eur": "ten" })),
        ),
        (
            "cost_cap_eur negative".into(),
            with(&enqueue, json!({ "cost_cap_eur": "-1.00" })),
        ),
        (
            "cost_cap_eur two dots".into(),
            with(&enqueue, json!({ "cost_cap_eur": "1.2.3" })),
        ),
        (
            "cost_cap_eur empty".into(),
            with(&enqueue, json!({ "cost_cap_eur": "" })),
        ),
        (
            "cost_cap_eur exponent".into(),
            with(&enqueue, json!({ "cost_cap_eur": "1e3" })),
        ),
    ];
    // Wrong JSON types for every field.
    for (field, wrong) in [
        ("type", json!(5)),
        ("type", json!(["t"])),
        ("type", json!(null)),
        ("job_id", json!(5)),
        ("priority", json!("5")),
        ("priority", json!(1.5)),
        ("priority", json!(true)),
        ("max_attempts", json!("3")),
        ("max_attempts", json!(2.5)),
        ("available_at", json!(1_700_000_000)),
        ("delay_seconds", json!("10")),
        ("delay_seconds", json!(1.5)),
        ("idempotency_key", json!(5)),
        ("idempotency_key", json!({})),
        ("code_version", json!(1)),
        ("model_version", json!([])),
        ("config_hash", json!({})),
        ("budget_tag", json!(true)),
        ("cost_cap_eur", json!(10.5)),
    ] {
        enqueue_bad.push((
            format!("{field} = {wrong}"),
            with(&enqueue, json!({ field: wrong })),
        ));
    }
    // 100 000 characters in every string field.
    for field in [
        "type",
        "job_id",
        "idempotency_key",
        "code_version",
        "model_version",
        "config_hash",
        "budget_tag",
        "cost_cap_eur",
    ] {
        enqueue_bad.push((
            format!("{field} 100 000 chars"),
            with(&enqueue, json!({ field: long() })),
        ));
    }
    for field in [
        "idempotency_key",
        "code_version",
        "model_version",
        "config_hash",
        "budget_tag",
    ] {
        enqueue_bad.push((
            format!("{field} 256 chars"),
            with(&enqueue, json!({ field: "k".repeat(256) })),
        ));
    }
    for (what, body) in &enqueue_bad {
        t.bad(format!("enqueue: {what}"), "/v1/worker/jobs", body.clone());
        t.bad(
            format!("batch item: {what}"),
            "/v1/worker/jobs/batch",
            json!({ "jobs": [enqueue.clone(), body] }),
        );
    }

    // ---- batch itself ----
    let thousand_and_one: Vec<Value> = (0..1001).map(|_| enqueue.clone()).collect();
    for (what, body) in [
        ("jobs missing", json!({})),
        ("jobs null", json!({ "jobs": null })),
        ("jobs empty", json!({ "jobs": [] })),
        ("jobs 1001", json!({ "jobs": thousand_and_one })),
        ("jobs an object", json!({ "jobs": enqueue.clone() })),
        ("jobs a string", json!({ "jobs": "x" })),
        ("jobs of numbers", json!({ "jobs": [1] })),
        ("jobs of nulls", json!({ "jobs": [null] })),
        ("jobs of arrays", json!({ "jobs": [["t", {}]] })),
        ("jobs of strings", json!({ "jobs": [long()] })),
    ] {
        t.bad(format!("batch: {what}"), "/v1/worker/jobs/batch", body);
    }

    // ---- lease ----
    let mut lease_bad: Vec<(&str, Value)> = vec![
        ("worker_id missing", json!({})),
        ("worker_id null", json!({ "worker_id": null })),
        ("worker_id empty", json!({ "worker_id": "" })),
        (
            "worker_id 201 chars",
            json!({ "worker_id": "w".repeat(201) }),
        ),
        ("worker_id 100 000 chars", json!({ "worker_id": long() })),
        ("worker_id a number", json!({ "worker_id": 5 })),
        ("worker_id an object", json!({ "worker_id": {} })),
    ];
    for (what, over) in [
        ("limit 0", json!({ "limit": 0 })),
        ("limit 101", json!({ "limit": 101 })),
        ("limit -1", json!({ "limit": -1 })),
        ("limit a string", json!({ "limit": "1" })),
        ("limit a float", json!({ "limit": 1.5 })),
        ("limit overflow", json!({ "limit": 1e20 })),
        ("lease_seconds 0", json!({ "lease_seconds": 0 })),
        ("lease_seconds 3601", json!({ "lease_seconds": 3601 })),
        ("lease_seconds a string", json!({ "lease_seconds": "60" })),
        (
            "lease_seconds i64::MIN",
            json!({ "lease_seconds": i64::MIN }),
        ),
        ("wait_ms -1", json!({ "wait_ms": -1 })),
        ("wait_ms 30001", json!({ "wait_ms": 30_001 })),
        ("wait_ms a string", json!({ "wait_ms": "100" })),
        ("wait_ms u64::MAX", json!({ "wait_ms": u64::MAX })),
        ("job_types a string", json!({ "job_types": "t" })),
        ("job_types an object", json!({ "job_types": { "t": 1 } })),
        ("job_types of numbers", json!({ "job_types": [1] })),
        ("job_types of nulls", json!({ "job_types": [null] })),
        (
            "job_types with a bad type",
            json!({ "job_types": ["ok", "not ok"] }),
        ),
        ("job_types with an empty type", json!({ "job_types": [""] })),
        (
            "job_types with 100 000 chars",
            json!({ "job_types": [long()] }),
        ),
        (
            "job_types 1001 types",
            json!({ "job_types": (0..1001).map(|i| format!("t{i}")).collect::<Vec<_>>() }),
        ),
    ] {
        lease_bad.push((what, with(&lease, over)));
    }
    for (what, body) in lease_bad {
        t.bad(format!("lease: {what}"), "/v1/worker/jobs/lease", body);
    }

    // ---- heartbeat, complete, fail ----
    let mut per_job: Vec<(&str, String, Value)> = Vec::new();
    for (route, base) in [
        ("heartbeat", &heartbeat),
        ("complete", &complete),
        ("fail", &fail),
        ("release", &release),
    ] {
        let path = jp(&format!("/{route}"));
        for (what, body) in [
            ("worker_id missing", without(base, "worker_id")),
            ("worker_id empty", with(base, json!({ "worker_id": "" }))),
            ("worker_id a number", with(base, json!({ "worker_id": 1 }))),
            (
                "worker_id 100 000 chars",
                with(base, json!({ "worker_id": long() })),
            ),
            (
                "lease_token a number",
                with(base, json!({ "lease_token": 1 })),
            ),
            (
                "lease_token an object",
                with(base, json!({ "lease_token": {} })),
            ),
            (
                "lease_token 100 000 chars",
                with(base, json!({ "lease_token": long() })),
            ),
        ] {
            per_job.push((what, path.clone(), body));
        }
    }
    for (what, over) in [
        ("lease_seconds 0", json!({ "lease_seconds": 0 })),
        ("lease_seconds 3601", json!({ "lease_seconds": 3601 })),
        ("lease_seconds -1", json!({ "lease_seconds": -1 })),
        ("lease_seconds a string", json!({ "lease_seconds": "60" })),
        ("lease_seconds a float", json!({ "lease_seconds": 1.5 })),
    ] {
        per_job.push((what, jp("/heartbeat"), with(&heartbeat, over)));
    }
    for (what, over) in [
        ("result a string", json!({ "result": "done" })),
        ("result a number", json!({ "result": 1 })),
        ("result an array", json!({ "result": [1] })),
        ("result true", json!({ "result": true })),
    ] {
        per_job.push((what, jp("/complete"), with(&complete, over)));
    }
    for (what, body) in [
        ("error missing", without(&fail, "error")),
        ("error null", with(&fail, json!({ "error": null }))),
        ("error empty", with(&fail, json!({ "error": "" }))),
        ("error a number", with(&fail, json!({ "error": 1 }))),
        (
            "error an object",
            with(&fail, json!({ "error": { "m": "x" } })),
        ),
        (
            "error 100 000 chars",
            with(&fail, json!({ "error": long() })),
        ),
        (
            "retryable a string",
            with(&fail, json!({ "retryable": "yes" })),
        ),
        ("retryable a number", with(&fail, json!({ "retryable": 1 }))),
        ("details a string", with(&fail, json!({ "details": "x" }))),
        ("details an array", with(&fail, json!({ "details": [1] }))),
        ("details a number", with(&fail, json!({ "details": 1 }))),
    ] {
        per_job.push((what, jp("/fail"), body));
    }
    for (what, path, body) in per_job {
        t.bad(format!("{path}: {what}"), &path, body);
    }

    // ---- login ----
    for (what, body) in [
        ("token missing", json!({})),
        ("token null", json!({ "token": null })),
        ("token a number", json!({ "token": 1 })),
        ("token an array", json!({ "token": [ADMIN] })),
    ] {
        t.add(
            format!("login: {what}"),
            Method::POST,
            "/v1/auth/login",
            WORKER,
            Body::Json(body),
            (400, "invalid_payload"),
        );
    }
    t.add(
        "login: token 100 000 chars",
        Method::POST,
        "/v1/auth/login",
        WORKER,
        Body::Json(json!({ "token": long() })),
        (401, "unauthorized"),
    );

    // ---- every path-id route: malformed ids ----
    let bad_ids = [
        "not-a-uuid".to_string(),
        "123".into(),
        "0191e3c1-0000-7000-8000-00000000000g".into(),
        "0191e3c1-0000-7000-8000-0000000000001".into(),
        "%FF%FE".into(),
        "%00".into(),
        "%20".into(),
        "null".into(),
        "x".repeat(10_000),
    ];
    for id in &bad_ids {
        let short: String = id.chars().take(40).collect();
        let routes: Vec<(Method, String, &'static str, Option<Value>)> = vec![
            (Method::GET, format!("/v1/worker/jobs/{id}"), WORKER, None),
            (
                Method::POST,
                format!("/v1/worker/jobs/{id}/heartbeat"),
                WORKER,
                Some(heartbeat.clone()),
            ),
            (
                Method::POST,
                format!("/v1/worker/jobs/{id}/complete"),
                WORKER,
                Some(complete.clone()),
            ),
            (
                Method::POST,
                format!("/v1/worker/jobs/{id}/fail"),
                WORKER,
                Some(fail.clone()),
            ),
            (
                Method::GET,
                format!("/v1/worker/jobs/{id}/events"),
                ADMIN,
                None,
            ),
            (
                Method::POST,
                format!("/v1/worker/jobs/{id}/cancel"),
                ADMIN,
                None,
            ),
            (
                Method::POST,
                format!("/v1/worker/jobs/{id}/retry"),
                ADMIN,
                None,
            ),
        ];
        for (method, path, tok, body) in routes {
            let body = body.map(Body::Json).unwrap_or(Body::None);
            t.add(
                format!("{method} path id {short}"),
                method,
                &path,
                tok,
                body,
                (400, "invalid_payload"),
            );
        }
    }

    // ---- the admin list's query string ----
    for q in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=abc",
        "limit=99999999999999999999",
        "status=bogus",
        "status=QUEUED",
        "type=not%20ok",
        "type=a%2Fb",
        "cursor=zz",
        "cursor=-1",
        "cursor=0",
        "cursor=ffffffffffffffffffffffff",
    ] {
        t.add(
            format!("list ?{q}"),
            Method::GET,
            &format!("/v1/worker/jobs?{q}"),
            ADMIN,
            Body::None,
            (400, "invalid_payload"),
        );
    }

    // ---- run them all ----
    let mut failures = Vec::new();
    let total = t.cases.len();
    for c in t.cases {
        let r = match c.body {
            Body::None => app.send(c.method.clone(), &c.path, c.token, None).await,
            Body::Json(v) => app.send(c.method.clone(), &c.path, c.token, Some(v)).await,
            Body::Raw(ct, bytes) => {
                let ct = (!ct.is_empty()).then_some(ct);
                app.send_raw(c.method.clone(), &c.path, c.token, ct, bytes)
                    .await
            }
        };
        let shaped = r.status.as_u16() == c.status
            && r.body["detail"] == c.code
            && r.body["error"]["code"] == c.code
            && r.body["error"]["message"].is_string();
        if !shaped {
            failures.push(format!(
                "{}: expected {} {}, got {} {}",
                c.name,
                c.status,
                c.code,
                r.status,
                r.body.to_string().chars().take(300).collect::<String>()
            ));
        }
        assert_ne!(r.status.as_u16(), 500, "{}: a 500 is always a bug", c.name);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Validation errors name the field.
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs",
            Some(with(&enqueue, json!({ "priority": 1001 }))),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert_eq!(
        r.body["error"]["fields"][0]["field"], "priority",
        "{}",
        r.body
    );
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs",
            Some(with(&enqueue, json!({ "priority": "high" }))),
        )
        .await;
    assert_eq!(
        r.body["error"]["fields"][0]["field"], "priority",
        "{}",
        r.body
    );

    // Nothing above changed the leased job or created one.
    let j = app.job(&job).await;
    assert_eq!(j["status"], "leased");
    assert_eq!(j["lease_owner"], "w1");
    assert_eq!(app.events(&job).await, ["queued", "leased"]);
    let list = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );
    app.assert_still_healthy().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_input_is_never_a_500() {
    let app = spawn_app().await;
    let odd = [
        json!({ "type": "t", "input": { "bell": "a\u{7}b" }, "idempotency_key": "key\u{1}" }),
        json!({ "type": "t", "input": { "emoji": "🦀", "rtl": "\u{202e}" }, "code_version": "🦀" }),
        json!({ "type": "t", "input": { "big": u64::MAX, "neg": i64::MIN, "f": 1e308, "tiny": 5e-324 } }),
        json!({ "type": "t", "input": {}, "available_at": "0001-01-01T00:00:00Z" }),
        json!({ "type": "t", "input": {}, "available_at": "9999-12-31T23:59:59.999+14:00" }),
        json!({ "type": "t", "input": {}, "delay_seconds": 31_536_000 }),
        json!({ "type": "t", "input": {}, "cost_cap_eur": "999999999999999.999999" }),
        json!({ "type": "t", "input": { "s": long() } }),
        json!({ "type": "t".repeat(200), "input": {} }),
    ];
    for body in odd {
        let r = app
            .worker(Method::POST, "/v1/worker/jobs", Some(body.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}: {}",
            body.to_string().chars().take(100).collect::<String>(),
            r.body
        );
        // It reads back equal.
        let back = app.job(&s(&r.body["job_id"])).await;
        assert_eq!(back["input"], body["input"]);
    }
    // The same control-character key replays.
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs",
            Some(json!({ "type": "t", "input": { "bell": "a\u{7}b" }, "idempotency_key": "key\u{1}" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A NUL in a text field is refused on every backend (PostgreSQL text cannot hold it).
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs",
            Some(json!({ "type": "t", "input": {}, "idempotency_key": "k\u{0}ey" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(s(&r.body["error"]["message"]).contains("NUL"), "{}", r.body);

    // Many job types in one lease: an answer, never a 500.
    let types: Vec<String> = (0..50_000).map(|i| format!("t{i}")).collect();
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/lease",
            Some(json!({ "worker_id": "w", "job_types": types })),
        )
        .await;
    assert!(
        r.status.is_success() || r.status.as_u16() == 400,
        "{} {}",
        r.status,
        r.body
    );
    if r.status.as_u16() == 400 {
        r.assert_error(400, "invalid_payload");
    }
    let types: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs/lease",
            Some(json!({ "worker_id": "w", "job_types": types })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "1000 types are fine: {}", r.body);
    // Of the eight jobs of type t, the two delayed ones (a year, and to 9999) wait.
    let got = app
        .lease("w", json!({ "job_types": ["t"], "limit": 100 }))
        .await;
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got
        .iter()
        .all(|j| j["available_at"] != "9999-12-31T09:59:59.999Z"));
    app.assert_still_healthy().await;
    app.stop().await;
}

/// The whole body is UTF-8 JSON without NUL characters, whichever field holds them (known,
/// unknown or nested), query strings hold no NUL either, and client JSON nests at most 64
/// levels: each refusal a 400 `invalid_payload`, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_utf8_without_nul_and_nesting_is_bounded() {
    let app = spawn_app().await;
    let post = |body: Vec<u8>| {
        app.send_raw(
            Method::POST,
            "/v1/worker/jobs",
            Some(WORKER),
            Some("application/json"),
            body,
        )
    };
    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid UTF-8 in an unknown field",
            b"{\"type\":\"t\",\"input\":{},\"a\":\"\xff\xfe\"}".to_vec(),
        ),
        (
            "invalid UTF-8 in the input",
            b"{\"type\":\"t\",\"input\":{\"x\":\"\xc3\"}}".to_vec(),
        ),
        (
            "invalid UTF-8 in a key",
            b"{\"type\":\"t\",\"input\":{\"\xed\xa0\x80\":1}}".to_vec(),
        ),
        (
            "NUL in an unknown field",
            br#"{"type":"t","input":{},"zzz":"a\u0000"}"#.to_vec(),
        ),
        (
            "NUL nested in the input",
            br#"{"type":"t","input":{"a":[{"b":"\u0000"}]}}"#.to_vec(),
        ),
        (
            "NUL in a key",
            br#"{"type":"t","input":{"k\u0000":1}}"#.to_vec(),
        ),
        (
            "a raw NUL byte",
            b"{\"type\":\"t\",\"input\":{\"a\":\"\x00\"}}".to_vec(),
        ),
    ];
    for (name, body) in refused {
        let r = post(body).await;
        assert_eq!(r.status.as_u16(), 400, "{name}: {}", r.body);
        r.assert_error(400, "invalid_payload");
    }
    // An escaped backslash before `u0000` is ordinary text.
    let r = post(br#"{"type":"t","input":{"path":"C:\\u0000"}}"#.to_vec()).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    let id = s(&r.body["job_id"]);
    assert_eq!(app.job(&id).await["input"]["path"], "C:\\u0000");

    // Query strings: a NUL in a search or a filter.
    for path in [
        "/v1/admin/notifications/broadcasts?q=%00",
        "/v1/admin/users?q=a%00b",
        "/v1/worker/jobs?type=t%00",
        "/v1/worker/jobs?status=queued%00",
    ] {
        let r = app.admin(Method::GET, path, None).await;
        assert_eq!(r.status.as_u16(), 400, "{path}: {}", r.body);
        r.assert_error(400, "invalid_payload");
    }

    // 64 levels of nesting inside `input` (and `result`, `details`) are fine; 65 are not.
    // `{"v": arrays(n)}` nests n + 1 levels.
    let nested = |n: usize| (0..n).fold(json!(1), |v, _| json!([v]));
    let r = app
        .enqueue(json!({ "type": "deep", "input": { "v": nested(63) } }))
        .await;
    let deep_ok = s(&r["job_id"]);
    let r = app
        .worker(
            Method::POST,
            "/v1/worker/jobs",
            Some(json!({ "type": "deep", "input": { "v": nested(64) } })),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert_eq!(r.body["error"]["fields"][0]["field"], "input", "{}", r.body);
    let (job, token) = app.lease_one("w", "deep", 60).await;
    assert_eq!(job, deep_ok);
    let too_deep = json!({ "worker_id": "w", "lease_token": token, "result": { "v": nested(64) } });
    let r = app
        .worker(
            Method::POST,
            &format!("/v1/worker/jobs/{job}/complete"),
            Some(too_deep),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    let too_deep = json!({ "worker_id": "w", "lease_token": token, "error": "e", "details": { "v": nested(64) } });
    let r = app
        .worker(
            Method::POST,
            &format!("/v1/worker/jobs/{job}/fail"),
            Some(too_deep),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert_eq!(app.job(&job).await["status"], "leased");
    let fine = json!({ "worker_id": "w", "lease_token": token, "result": { "v": nested(63) } });
    let r = app
        .worker(
            Method::POST,
            &format!("/v1/worker/jobs/{job}/complete"),
            Some(fine),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    // Far deeper than that is refused by the parser itself, never a stack overflow.
    let body = format!(
        r#"{{"type":"t","input":{{"d":{}1{}}}}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    post(body.into_bytes())
        .await
        .assert_error(400, "invalid_payload");

    // Only the two good jobs were written.
    let list = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        list.body
    );
    app.assert_still_healthy().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_with(Opts {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let big = "x".repeat(10 * 1024);
    let cases = [
        (
            "/v1/worker/jobs",
            json!({ "type": "t", "input": { "s": big } }),
        ),
        (
            "/v1/worker/jobs/batch",
            json!({ "jobs": [{ "type": "t", "input": { "s": big } }] }),
        ),
        ("/v1/worker/jobs/lease", json!({ "worker_id": big })),
        ("/v1/auth/login", json!({ "token": big })),
    ];
    for (path, body) in &cases {
        let r = app.worker(Method::POST, path, Some(body.clone())).await;
        r.assert_error(413, "payload_too_large");
    }
    // Just under the limit is fine.
    let fits = json!({ "type": "t", "input": { "s": "y".repeat(3500) } });
    let r = app
        .worker(Method::POST, "/v1/worker/jobs", Some(fits))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // Without a Content-Length (chunked), the limit holds while reading.
    let body = serde_json::to_vec(&cases[0].1).unwrap();
    let (status, text) = chunked_post(&app, "/v1/worker/jobs", &body).await;
    assert_eq!(status, 413, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert_eq!(v["error"]["code"], "payload_too_large", "{text}");
    // A small chunked body is read normally.
    let small = serde_json::to_vec(&json!({ "type": "chunked", "input": {} })).unwrap();
    let (status, text) = chunked_post(&app, "/v1/worker/jobs", &small).await;
    assert_eq!(status, 201, "{text}");

    // Nothing over the limit was stored.
    let list = app.admin(Method::GET, "/v1/worker/jobs", None).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        list.body
    );
    app.assert_still_healthy().await;
    app.stop().await;
}

/// Sends a chunked POST over a raw connection; returns (status, body text).
async fn chunked_post(app: &TestApp, path: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {WORKER}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        req.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend(chunk);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    // The server may answer and close before taking the whole body; that is fine.
    let _ = stream.write_all(&req).await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    // The body may itself be chunked: keep the JSON part.
    let json = body
        .find('{')
        .and_then(|i| body.rfind('}').map(|j| body[i..=j].to_string()))
        .unwrap_or(body);
    (status, json)
}
