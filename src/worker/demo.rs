//! `demo.sleep`: the worked example of a queue worker (see "Adding a worker" in
//! `docs/workers.md`). It handles jobs of type `demo.sleep` with input `{"ms": N, "fail": null |
//! "retryable" | "fatal"}`: it sleeps N milliseconds, then succeeds with `{"slept_ms": N}`
//! or fails the way it was asked to. Not run by `serve` unless named in `--workers`.

use super::{
    job_types, BoxFuture, Built, HandlerError, QueueHandler, QueueSpec, Worker, WorkerConfigError,
    WorkerEnv,
};
use crate::domain::Job;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "demo.sleep";
pub const DESCRIPTION: &str =
    "example queue worker: sleeps for a job's input.ms, then succeeds or fails as asked";

pub struct DemoSleep;

pub fn build(_env: &WorkerEnv) -> Result<Built, WorkerConfigError> {
    Ok(Built::Queue(Arc::new(DemoSleep)))
}

impl Worker for DemoSleep {
    fn name(&self) -> &str {
        NAME
    }
    fn description(&self) -> &str {
        DESCRIPTION
    }
}

impl QueueHandler for DemoSleep {
    fn spec(&self) -> QueueSpec {
        QueueSpec {
            job_types: job_types(&["demo.sleep"]),
            concurrency: 4,
            lease: Duration::from_secs(30),
        }
    }

    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Option<Value>, HandlerError>> {
        Box::pin(async move {
            let ms = job
                .input
                .get("ms")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(3_600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            match job.input.get("fail").and_then(Value::as_str) {
                Some("retryable") => {
                    Err(HandlerError::Retryable("asked to fail (retryable)".into()))
                }
                Some("fatal") => Err(HandlerError::Fatal("asked to fail (fatal)".into())),
                _ => Ok(Some(json!({ "slept_ms": ms }))),
            }
        })
    }
}
