//! Every answer a test receives is held against `/openapi.json`: a success status the
//! route does not document fails the test, and a JSON body must match the documented
//! schema, with no property the schema does not name. So the document cannot drift from
//! what the handlers send, and every HTTP test checks it on the way.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

struct Contract {
    doc: Value,
    /// (method, path template split on `/`).
    routes: Vec<(String, Vec<String>)>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

static CONTRACT: LazyLock<Contract> = LazyLock::new(|| {
    let (_, docs) = wp_lite::http::api().into_parts();
    let doc = wp_lite::http::openapi::document(&docs);
    let routes = docs
        .iter()
        .map(|d| {
            let segs = d.path.split('/').map(str::to_string).collect();
            (d.method.to_string(), segs)
        })
        .collect();
    Contract {
        doc,
        routes,
        validators: Mutex::default(),
    }
});

/// `schema` with every object that names its properties closed to others.
fn closed(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out: serde_json::Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), closed(v))).collect();
            if out.get("properties").is_some_and(Value::is_object)
                && !out.contains_key("additionalProperties")
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(closed).collect()),
        other => other.clone(),
    }
}

impl Contract {
    /// The documented route a request went to: the template that matches `path` with the
    /// most literal segments.
    fn route(&self, method: &str, path: &str) -> Option<String> {
        let segs: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|(m, t)| {
                m == method
                    && t.len() == segs.len()
                    && t.iter()
                        .zip(&segs)
                        .all(|(t, s)| t.starts_with('{') || t == s)
            })
            .max_by_key(|(_, t)| t.iter().filter(|s| !s.starts_with('{')).count())
            .map(|(_, t)| t.join("/"))
    }

    fn validator(&self, key: &str, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().unwrap();
        cache
            .entry(key.to_string())
            .or_insert_with(|| {
                let root = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "allOf": [schema],
                    "components": closed(&self.doc["components"]),
                });
                Arc::new(
                    jsonschema::validator_for(&root)
                        .unwrap_or_else(|e| panic!("{key}: the documented schema: {e}")),
                )
            })
            .clone()
    }
}

/// Checks one answer against the documented operation (success answers only).
pub fn check(method: &Method, path: &str, status: StatusCode, content_type: &str, body: &Value) {
    if !(status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS) {
        return;
    }
    let c = &*CONTRACT;
    let method = method.as_str().to_lowercase();
    let path = path.split('?').next().unwrap_or(path);
    let Some(template) = c.route(&method, path) else {
        return;
    };
    let at = format!("{} {template} → {status}", method.to_uppercase());
    let responses = &c.doc["paths"][&template][&method]["responses"];
    let Some(documented) = responses.get(status.as_str()) else {
        assert!(
            responses.get("2XX").is_some(),
            "{at}: this status is not documented: {body}"
        );
        return;
    };
    let Some(content) = documented["content"].as_object() else {
        assert!(
            body.is_null(),
            "{at}: documented without a body, but answered {body}"
        );
        return;
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    let Some(expected) = content.get(media) else {
        panic!(
            "{at}: answered {media}, documented {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    if media == "application/json" {
        let v = c.validator(&at, &expected["schema"]);
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{at}: the body does not match /openapi.json: {errors:#?}\n{body:#}"
        );
    }
}

#[test]
#[should_panic(expected = "does not match /openapi.json")]
fn an_answer_with_a_field_the_schema_does_not_name_fails() {
    let job = json!({
        "job_id": "0191e3c1-0000-7000-8000-000000000000", "type": "t", "status": "queued",
        "priority": 5, "input": {}, "attempts": 0, "max_attempts": 3,
        "available_at": "2026-01-01T00:00:00.000Z", "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z", "surprise": true,
    });
    check(
        &Method::GET,
        "/v1/worker/jobs/0191e3c1-0000-7000-8000-000000000000",
        StatusCode::OK,
        "application/json",
        &job,
    );
}

#[test]
#[should_panic(expected = "does not match /openapi.json")]
fn an_answer_missing_a_required_field_fails() {
    check(
        &Method::GET,
        "/v1/worker/queues",
        StatusCode::OK,
        "application/json",
        &json!({ "items": [{ "type": "t" }] }),
    );
}

#[test]
#[should_panic(expected = "this status is not documented")]
fn an_undocumented_success_status_fails() {
    check(
        &Method::GET,
        "/v1/worker/queues",
        StatusCode::CREATED,
        "application/json",
        &json!({ "items": [] }),
    );
}

#[test]
fn a_documented_answer_passes() {
    check(
        &Method::POST,
        "/v1/worker/jobs/ack",
        StatusCode::OK,
        "application/json",
        &json!({ "items": [{ "job_id": "x", "ok": false,
                             "error": { "code": "job_not_found", "message": "no such job" } }] }),
    );
}
