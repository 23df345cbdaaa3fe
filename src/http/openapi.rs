//! Route registration that documents itself. Every route of the API is added through
//! [`Api`], which records its method, path, summary and who may call it while it adds it
//! to the axum router; `GET /openapi.json` is generated from that record, so the
//! document cannot drift from the router.

use super::AppState;
use axum::handler::Handler;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// The worker token, or anything an admin may use.
    Worker,
    Admin,
    /// An end user's JWT.
    User,
}

/// One documented route.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: String,
    pub summary: &'static str,
    pub access: Access,
    pub tag: &'static str,
}

/// A router under construction and the documentation of every route in it.
pub struct Api {
    router: Router<AppState>,
    docs: Vec<RouteDoc>,
    tag: &'static str,
}

macro_rules! method_fn {
    ($name:ident, $axum:ident, $verb:literal) => {
        pub fn $name<H, T>(
            mut self,
            path: &str,
            handler: H,
            summary: &'static str,
            access: Access,
        ) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.router = self.router.route(path, $axum(handler));
            self.document($verb, path, summary, access)
        }
    };
}

impl Api {
    pub fn new(tag: &'static str) -> Self {
        Self {
            router: Router::new(),
            docs: Vec::new(),
            tag,
        }
    }

    method_fn!(get, get, "get");
    method_fn!(post, post, "post");
    method_fn!(put, put, "put");
    method_fn!(delete, delete, "delete");

    /// A POST routed on the parameterised `path` but documented as the fixed `documented`
    /// path (for example `POST /v1/admin/users/batch` routed on `/v1/admin/users/{user_id}`,
    /// so that a user whose id is `batch` stays reachable by GET, PUT and DELETE). The
    /// handler refuses the other values of the parameter.
    pub fn post_documented_as<H, T>(
        mut self,
        documented: &str,
        path: &str,
        handler: H,
        summary: &'static str,
        access: Access,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, post(handler));
        self.document("post", documented, summary, access)
    }

    fn document(
        mut self,
        method: &'static str,
        path: &str,
        summary: &'static str,
        access: Access,
    ) -> Self {
        self.docs.push(RouteDoc {
            method,
            path: path.to_string(),
            summary,
            access,
            tag: self.tag,
        });
        self
    }

    pub fn merge(mut self, other: Api) -> Self {
        self.router = self.router.merge(other.router);
        self.docs.extend(other.docs);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteDoc>) {
        (self.router, self.docs)
    }
}

/// The OpenAPI 3 document of these routes.
pub fn document(docs: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for d in docs {
        let entry = paths.entry(d.path.clone()).or_insert_with(|| json!({}));
        let params: Vec<Value> = d
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let security = match d.access {
            Access::Public => json!([]),
            Access::Worker => json!([{ "bearer": [] }]),
            Access::Admin => {
                json!([{ "bearer": [] }, { "adminKey": [] }, { "session": [], "csrf": [] }])
            }
            Access::User => json!([{ "userJwt": [] }]),
        };
        let mut op = json!({
            "summary": d.summary,
            "tags": [d.tag],
            "security": security,
            "parameters": params,
            "responses": {
                "2XX": { "description": "success" },
                "4XX": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
        if matches!(d.method, "post" | "put") {
            op["requestBody"] = json!({
                "required": false,
                "content": { "application/json": { "schema": { "type": "object" } } },
            });
        }
        entry[d.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "wp-lite",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Job control plane, workers, notification broadcasts, inbox and telemetry, on SQLite or PostgreSQL. Every error has one shape: detail (the code) and error (code, message, and fields on validation errors).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "the admin token or the worker token" },
                "adminKey": { "type": "apiKey", "in": "header", "name": "X-Admin-Key" },
                "session": { "type": "apiKey", "in": "cookie", "name": "access_token" },
                "csrf": { "type": "apiKey", "in": "header", "name": "X-CSRF-Token" },
                "userJwt": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["detail", "error"],
                    "properties": {
                        "detail": { "type": "string" },
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" },
                                "fields": { "type": "array", "items": { "type": "object" } },
                            },
                        },
                    },
                },
            },
        },
    })
}
