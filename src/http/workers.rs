//! `GET /v1/admin/workers`: worker processes with `alive` computed from the heartbeat age.

use super::auth::Admin;
use super::error::ApiResult;
use super::openapi::{Access, Api};
use super::AppState;
use crate::telemetry::views::{ProcessList, ProcessView};
use axum::extract::State;
use axum::Json;

async fn list(State(st): State<AppState>, _auth: Admin) -> ApiResult<Json<ProcessList>> {
    let items: Vec<ProcessView> = st
        .workers
        .processes()
        .await?
        .into_iter()
        .map(|(p, alive)| ProcessView::new(p, alive))
        .collect();
    Ok(Json(ProcessList { items }))
}

pub fn router() -> Api {
    Api::new("workers")
        .get(
            "/v1/admin/workers",
            list,
            "Worker processes and whether they are alive",
            Access::Admin,
        )
        .returns::<ProcessList>(200)
}
