//! `notifications.send`: delivers one notification to one user's inbox from a job
//! `{"user_id", "title", "body", "meta"?, "event_id"?}`. Durable and retried like any
//! job; a job whose `event_id` was already delivered succeeds as a no-op and says so.

use super::{
    job_types, BoxFuture, Built, HandlerError, QueueHandler, QueueSpec, Worker, WorkerConfigError,
    WorkerEnv,
};
use crate::domain::notify::DirectNotification;
use crate::domain::Job;
use crate::service::inbox::InboxService;
use crate::service::Error;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "notifications.send";
pub const DESCRIPTION: &str = "delivers one notification to one user's inbox from a notifications.send job (deduplicated by event_id)";

pub struct SendWorker {
    inbox: InboxService,
}

pub fn build(env: &WorkerEnv) -> Result<Built, WorkerConfigError> {
    Ok(Built::Queue(Arc::new(SendWorker { inbox: env.inbox() })))
}

/// Parses a job's input; a bad input is a fatal (not retried) failure.
pub fn parse_input(input: &Value) -> Result<DirectNotification, String> {
    DirectNotification::parse(input, "body").map_err(|errs| {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

impl Worker for SendWorker {
    fn name(&self) -> &str {
        NAME
    }
    fn description(&self) -> &str {
        DESCRIPTION
    }
}

impl QueueHandler for SendWorker {
    fn spec(&self) -> QueueSpec {
        QueueSpec {
            job_types: job_types(&[NAME]),
            concurrency: 8,
            lease: Duration::from_secs(60),
        }
    }

    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Option<Value>, HandlerError>> {
        let inbox = self.inbox.clone();
        Box::pin(async move {
            let mut n = parse_input(&job.input).map_err(HandlerError::Fatal)?;
            // Delivering and completing are two commits: a retry after a crash in between
            // must find the item it already made, so a job without an event id is keyed by
            // its own id.
            n.event_id.get_or_insert_with(|| format!("job:{}", job.id));
            let delivered = inbox.deliver(n).await.map_err(|e| match e {
                Error::Invalid { message, .. } => HandlerError::Fatal(message),
                other => HandlerError::Retryable(other.to_string()),
            })?;
            Ok(Some(json!({
                "delivered": delivered.created,
                "duplicate": !delivered.created,
                "item_id": delivered.item_id,
            })))
        })
    }
}
