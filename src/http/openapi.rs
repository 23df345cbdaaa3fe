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

/// A JSON schema derived from a DTO (`utoipa::ToSchema`): its component name, and a
/// function that renders it with the schemas it refers to.
#[derive(Clone, Copy)]
pub struct SchemaOf {
    pub name: fn() -> String,
    pub render: fn(&mut Map<String, Value>),
}

impl std::fmt::Debug for SchemaOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.name)())
    }
}

impl SchemaOf {
    pub fn of<T: utoipa::ToSchema>() -> Self {
        fn name<T: utoipa::ToSchema>() -> String {
            T::name().into_owned()
        }
        fn render<T: utoipa::ToSchema>(components: &mut Map<String, Value>) {
            let mut all = vec![(T::name().into_owned(), T::schema())];
            T::schemas(&mut all);
            for (n, s) in all {
                components.insert(n, serde_json::to_value(s).expect("a schema serialises"));
            }
        }
        Self {
            name: name::<T>,
            render: render::<T>,
        }
    }
}

/// What a route answers with on success.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// A JSON body of this schema.
    Json(SchemaOf),
    /// A JSON document of no fixed shape (the OpenAPI document itself).
    AnyJson,
    /// A body of this media type (Prometheus text, a stream of Server-Sent Events).
    Media(&'static str),
    /// No body (204), or a protocol switch (101).
    Empty,
}

/// One documented route.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: String,
    pub summary: &'static str,
    pub access: Access,
    pub tag: &'static str,
    /// The JSON body the route takes, when it takes one.
    pub request: Option<SchemaOf>,
    /// The query parameters it reads, in groups.
    pub query: Vec<fn() -> Vec<utoipa::openapi::path::Parameter>>,
    /// Each success status and what comes with it.
    pub responses: Vec<(u16, Answer)>,
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
            request: None,
            query: Vec::new(),
            responses: Vec::new(),
        });
        self
    }

    /// The route added last takes a JSON body of type `T` (documented from its schema).
    pub fn body<T: utoipa::ToSchema>(mut self) -> Self {
        if let Some(d) = self.docs.last_mut() {
            d.request = Some(SchemaOf::of::<T>());
        }
        self
    }

    /// The route added last reads the query parameters of `T` (as well as any named
    /// before).
    pub fn query<T: utoipa::IntoParams>(mut self) -> Self {
        fn params<T: utoipa::IntoParams>() -> Vec<utoipa::openapi::path::Parameter> {
            T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
        }
        if let Some(d) = self.docs.last_mut() {
            d.query.push(params::<T>);
        }
        self
    }

    /// The route added last answers `status` with a JSON body of type `T`.
    pub fn returns<T: utoipa::ToSchema>(self, status: u16) -> Self {
        self.answers(status, Answer::Json(SchemaOf::of::<T>()))
    }

    /// The route added last answers `status` with `answer`.
    pub fn answers(mut self, status: u16, answer: Answer) -> Self {
        if let Some(d) = self.docs.last_mut() {
            d.responses.push((status, answer));
        }
        self
    }

    /// The route added last answers 204 with no body.
    pub fn no_content(self) -> Self {
        self.answers(204, Answer::Empty)
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
    let mut components = Map::new();
    let reference =
        |s: &SchemaOf| json!({ "$ref": format!("#/components/schemas/{}", (s.name)()) });
    for d in docs {
        let entry = paths.entry(d.path.clone()).or_insert_with(|| json!({}));
        let mut params: Vec<Value> = d
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        for query in &d.query {
            params.extend(
                query()
                    .into_iter()
                    .map(|p| serde_json::to_value(p).expect("a parameter serialises")),
            );
        }
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
        match &d.request {
            Some(body) => {
                (body.render)(&mut components);
                op["requestBody"] = json!({
                    "required": true,
                    "content": { "application/json": { "schema": reference(body) } },
                });
            }
            None if matches!(d.method, "post" | "put") => {
                op["requestBody"] = json!({
                    "required": false,
                    "content": { "application/json": { "schema": { "type": "object" } } },
                });
            }
            None => {}
        }
        for (status, answer) in &d.responses {
            let content = |media: &str, schema: Value| json!({ media: { "schema": schema } });
            op["responses"][status.to_string()] = match answer {
                Answer::Json(schema) => {
                    (schema.render)(&mut components);
                    json!({
                        "description": "success",
                        "content": content("application/json", reference(schema)),
                    })
                }
                Answer::AnyJson => json!({
                    "description": "success",
                    "content": content("application/json", json!({ "type": "object" })),
                }),
                Answer::Media(media) => json!({
                    "description": "success",
                    "content": content(media, json!({ "type": "string" })),
                }),
                Answer::Empty => json!({ "description": "success, no body" }),
            };
        }
        if !d.responses.is_empty() {
            if let Some(r) = op["responses"].as_object_mut() {
                r.remove("2XX");
            }
        }
        entry[d.method] = op;
    }
    json!({
        "openapi": "3.1.0",
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
            "schemas": error_and(components),
        },
    })
}

/// The error schema every route shares, beside the schemas derived from the DTOs.
fn error_and(mut components: Map<String, Value>) -> Value {
    components.insert(
        "Error".into(),
        json!({
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
        }),
    );
    Value::Object(components)
}
