//! Small answer shapes several routes share. Each route's own views live beside its
//! handlers; every one derives its schema, so `/openapi.json` shows what is sent.

use serde::Serialize;

/// How many items an action changed.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Updated)]
pub struct Updated {
    pub updated: usize,
}
