//! `GET /openapi.json`: a valid OpenAPI 3 document, generated from the same record the
//! router is built from. Every registered route is in it, and every documented operation
//! is routed in the running app.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use wp_lite::http::openapi::Access;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The `{name}` segments of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// Resolves a local `$ref` (`#/components/...`) in `doc`.
fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    let pointer = r.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// Every `$ref` anywhere under `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap_or("").to_string());
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The structural rules of an OpenAPI 3.0 document that a generator can get wrong.
fn assert_valid_openapi3(doc: &Value) {
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3."), "openapi: {version}");
    assert!(
        doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()),
        "info.title"
    );
    assert!(doc["info"]["version"].is_string(), "info.version");
    let paths = doc["paths"].as_object().expect("paths is an object");
    assert!(!paths.is_empty());
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, s) in &schemes {
        let kind = s["type"].as_str().unwrap_or("");
        assert!(
            ["apiKey", "http", "oauth2", "openIdConnect"].contains(&kind),
            "security scheme {name}: type {kind}"
        );
        if kind == "apiKey" {
            assert!(s["name"].is_string(), "{name}: apiKey needs a name");
            assert!(
                ["query", "header", "cookie"].contains(&s["in"].as_str().unwrap_or("")),
                "{name}: apiKey in"
            );
        }
        if kind == "http" {
            assert!(s["scheme"].is_string(), "{name}: http needs a scheme");
        }
    }
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "path {path} must start with /");
        let item = item.as_object().expect("a path item is an object");
        assert!(!item.is_empty(), "{path} has no operations");
        let wanted = template_params(path);
        for (method, op) in item {
            assert!(
                METHODS.contains(&method.as_str())
                    || ["summary", "description", "parameters", "servers", "$ref"]
                        .contains(&method.as_str()),
                "{path}: unknown key {method}"
            );
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let at = format!("{} {path}", method.to_uppercase());
            if let Some(id) = op["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_string()),
                    "{at}: duplicate operationId {id}"
                );
            }
            // Responses: a non-empty map of status codes (or ranges, or default), each
            // with a description.
            let responses = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: responses"));
            assert!(!responses.is_empty(), "{at}: no responses");
            for (code, r) in responses {
                let ok = code == "default"
                    || (code.len() == 3
                        && matches!(code.as_bytes()[0], b'1'..=b'5')
                        && (code[1..].chars().all(|c| c.is_ascii_digit()) || &code[1..] == "XX"));
                assert!(ok, "{at}: response key {code}");
                assert!(
                    r["description"].is_string() || r["$ref"].is_string(),
                    "{at}: response {code} needs a description"
                );
            }
            // Parameters: every template segment is a required path parameter, and no
            // path parameter is missing from the template.
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut declared = BTreeSet::new();
            let mut seen = BTreeSet::new();
            for p in &params {
                let name = p["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: parameter name"));
                let location = p["in"].as_str().unwrap_or("");
                assert!(
                    ["path", "query", "header", "cookie"].contains(&location),
                    "{at}: parameter {name} in {location}"
                );
                assert!(
                    seen.insert((name.to_string(), location.to_string())),
                    "{at}: {name} twice"
                );
                assert!(
                    p["schema"].is_object() || p["content"].is_object(),
                    "{at}: parameter {name} needs a schema"
                );
                if location == "path" {
                    assert_eq!(
                        p["required"], true,
                        "{at}: path parameter {name} must be required"
                    );
                    declared.insert(name.to_string());
                }
            }
            assert_eq!(declared, wanted, "{at}: path parameters");
            if let Some(body) = op.get("requestBody") {
                assert!(
                    body["content"].is_object(),
                    "{at}: requestBody needs content"
                );
            }
            // Security requirements name declared schemes.
            if let Some(sec) = op.get("security") {
                for req in sec
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}: security is a list"))
                {
                    for name in req.as_object().unwrap().keys() {
                        assert!(
                            schemes.contains_key(name),
                            "{at}: unknown security scheme {name}"
                        );
                    }
                }
            }
            let tags = op["tags"].as_array().cloned().unwrap_or_default();
            assert!(tags.iter().all(Value::is_string), "{at}: tags");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: summary"
            );
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        assert!(resolve(doc, &r).is_some(), "unresolved $ref {r}");
    }
}

#[tokio::test]
async fn openapi_json_is_public_and_a_valid_openapi_3_document_of_every_route() {
    let app = spawn_app().await;
    let r = app.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers
    );
    let doc = r.body;
    assert_valid_openapi3(&doc);

    // Every route the router is built from is documented, and nothing else is.
    let (_, docs) = wp_lite::http::api().into_parts();
    assert!(docs.len() > 20, "{} routes", docs.len());
    let registered: BTreeSet<(String, String)> = docs
        .iter()
        .map(|d| (d.method.to_string(), d.path.clone()))
        .collect();
    assert_eq!(registered.len(), docs.len(), "a route is registered twice");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| METHODS.contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    for route in &registered {
        assert!(
            documented.contains(route),
            "{route:?} is routed but not in /openapi.json"
        );
    }
    assert_eq!(
        documented,
        registered,
        "documented but not registered: {:?}",
        documented.difference(&registered).collect::<Vec<_>>()
    );
    for path in [
        "/v1/worker/jobs/lease",
        "/v1/admin/telemetry/summary",
        "/v1/admin/notifications/broadcasts/{id}/actions/send-now",
        "/openapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    app.stop().await;
}

/// `path` with every `{param}` filled with a fresh id.
fn fill(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                uuid::Uuid::new_v4().to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A route miss: the router's fallback answered, not a handler.
fn is_route_miss(r: &Resp) -> bool {
    // An unknown resource on a known route is a 404 too; only the router says "no such route".
    r.status == StatusCode::NOT_FOUND
        && r.code() == "not_found"
        && r.body["error"]["message"] == "no such route"
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc = app
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .body;
    let user = app.user_jwt("openapi-user", 3600);
    let (_, docs) = wp_lite::http::api().into_parts();
    let access: std::collections::BTreeMap<(String, String), Access> = docs
        .iter()
        .map(|d| ((d.method.to_string(), d.path.clone()), d.access))
        .collect();

    // The check tells a miss from a handler's 404: an unknown path and a wrong method.
    let miss = app
        .send(Method::GET, "/v1/no/such/route", Some(ADMIN), None)
        .await;
    assert!(is_route_miss(&miss), "{} {}", miss.status, miss.body);
    let job = app
        .admin(
            Method::GET,
            &format!("/v1/worker/jobs/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(job.status, StatusCode::NOT_FOUND);
    assert!(
        !is_route_miss(&job),
        "a missing job is job_not_found: {}",
        job.body
    );
    let wrong = app
        .send(Method::PATCH, "/v1/worker/jobs", Some(ADMIN), None)
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        wrong.body
    );

    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let token = match access.get(&(method.clone(), path.clone())) {
                Some(Access::Public) => None,
                Some(Access::Worker) => Some(WORKER),
                Some(Access::Admin) => Some(ADMIN),
                Some(Access::User) => Some(user.as_str()),
                None => panic!("{method} {path} is documented but not registered"),
            };
            let body = matches!(m, Method::POST | Method::PUT).then(|| json!({}));
            let url = fill(path);
            let r = app.send(m.clone(), &url, token, body).await;
            assert!(
                !is_route_miss(&r),
                "{m} {path} is documented but not routed ({url} → {} {})",
                r.status,
                r.body
            );
            assert_ne!(
                r.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path}: {}",
                r.body
            );
            assert!(
                !r.status.is_server_error(),
                "{m} {url} → {} {}",
                r.status,
                r.body
            );
            checked += 1;
        }
    }
    assert_eq!(checked, docs.len());
    app.stop().await;
}

/// A value that satisfies `schema` with as little as possible: its example when it has one,
/// else the first of an enum, else every required property (the first property when none is
/// required), the fewest items allowed, the smallest number, a short string.
fn example_of(doc: &Value, schema: &Value) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let target = resolve(doc, r).unwrap_or_else(|| panic!("unresolved {r}"));
        return example_of(doc, target);
    }
    if let Some(e) = schema.get("example") {
        return e.clone();
    }
    if let Some(e) = schema["examples"].as_array().and_then(|a| a.first()) {
        return e.clone();
    }
    if let Some(e) = schema["enum"].as_array().and_then(|a| a.first()) {
        return e.clone();
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = schema[key]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] != "null"))
        {
            return example_of(doc, first);
        }
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ if schema["properties"].is_object() => "object".into(),
        _ => "object".into(),
    };
    match ty.as_str() {
        "object" => {
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut required: Vec<String> = schema["required"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if required.is_empty() && schema["minProperties"].as_u64().unwrap_or(0) > 0 {
                required.extend(props.keys().next().cloned());
            }
            let mut out = serde_json::Map::new();
            for name in required {
                let p = props.get(&name).cloned().unwrap_or(json!({}));
                out.insert(name, example_of(doc, &p));
            }
            Value::Object(out)
        }
        "array" => {
            let n = schema["minItems"].as_u64().unwrap_or(0).max(1);
            (0..n).map(|_| example_of(doc, &schema["items"])).collect()
        }
        "integer" | "number" => json!(schema["minimum"].as_i64().unwrap_or(1)),
        "boolean" => json!(false),
        "string" => json!("x".repeat(schema["minLength"].as_u64().unwrap_or(1) as usize)),
        _ => Value::Null,
    }
}

/// Every operation whose body is described by a schema accepts the example generated from
/// it: the schema says what the handler takes. (A missing job or schedule is a 404 after
/// the body was accepted; a 400 would mean the schema lies.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_generated_from_each_request_schema_are_accepted() {
    let app = spawn_app().await;
    let doc = app
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .body;
    let (_, docs) = wp_lite::http::api().into_parts();
    let mut tried = Vec::new();
    for d in docs.iter().filter(|d| d.request.is_some()) {
        let op = &doc["paths"][&d.path][d.method];
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(schema["$ref"].is_string(), "{} {}: {op}", d.method, d.path);
        let body = example_of(&doc, schema);
        let token = match d.access {
            Access::Admin => ADMIN,
            _ => WORKER,
        };
        let m = Method::from_bytes(d.method.to_uppercase().as_bytes()).unwrap();
        let r = app
            .send(m, &fill(&d.path), Some(token), Some(body.clone()))
            .await;
        // Login reads the body and then refuses the example's made-up token (401).
        let wrong_token = d.path == "/v1/auth/login" && r.status == StatusCode::UNAUTHORIZED;
        assert!(
            r.status.is_success() || r.status == StatusCode::NOT_FOUND || wrong_token,
            "{} {} refused its schema's example {body}: {} {}",
            d.method,
            d.path,
            r.status,
            r.body
        );
        // A success status is one the route documents, with a body of the documented
        // schema: `send` checks every answer against /openapi.json (`contract`).
        tried.push(format!("{} {}", d.method, d.path));
    }
    assert!(tried.len() >= 12, "request schemas: {tried:?}");
    // Components the operations name are in the document.
    for name in [
        "NewJob",
        "Lease",
        "Ack",
        "AckItem",
        "Job",
        "ScheduleSpec",
        "Schedule",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{name} in {:#}",
            doc["components"]["schemas"]
        );
    }
    app.stop().await;
}
