//! A worker registered by the test through `Registry::register` runs inside the app
//! (`serve --workers test.echo`) and handles a job enqueued over HTTP.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wp_lite::app::App;
use wp_lite::clock::SystemClock;
use wp_lite::config::{Config, Secret, WorkerSelection};
use wp_lite::domain::Job;
use wp_lite::worker::{
    job_types, BoxFuture, Built, HandlerError, QueueHandler, QueueSpec, Registry, Worker,
};

const ADMIN: &str = "admin-token-for-worker-tests-0123456789";

/// Echoes a job's input back as its result.
struct Echo {
    handled: Arc<AtomicUsize>,
}

impl Worker for Echo {
    fn name(&self) -> &str {
        "test.echo"
    }
    fn description(&self) -> &str {
        "echoes a job's input"
    }
}

impl QueueHandler for Echo {
    fn spec(&self) -> QueueSpec {
        QueueSpec {
            job_types: job_types(&["test.echo"]),
            concurrency: 2,
            lease: Duration::from_secs(30),
        }
    }
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Option<Value>, HandlerError>> {
        let handled = self.handled.clone();
        Box::pin(async move {
            handled.fetch_add(1, Ordering::SeqCst);
            Ok(Some(json!({ "echo": job.input })))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_worker_handles_jobs_enqueued_over_http_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::builtin();
    {
        let handled = handled.clone();
        registry.register("test.echo", "echoes a job's input", false, move |_env| {
            Ok(Built::Queue(Arc::new(Echo {
                handled: handled.clone(),
            })))
        });
    }
    assert!(registry.names().contains(&"test.echo"));

    let mut config =
        Config::for_database(format!("sqlite://{}", dir.path().join("wp.db").display()));
    config.admin_token = Some(Secret::new(ADMIN));
    config.workers = WorkerSelection::Named(vec!["test.echo".into()]);
    let app = App::start_with(config, Arc::new(SystemClock), registry)
        .await
        .expect("app starts");
    let base = format!("http://{}", app.addr());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let r = http
        .post(format!("{base}/v1/worker/jobs"))
        .bearer_auth(ADMIN)
        .json(&json!({ "type": "test.echo", "input": { "hello": "world" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["job_id"].as_str().expect("job_id").to_string();

    // Bounded wait for the in-process worker to finish the job.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let job = loop {
        let job: Value = http
            .get(format!("{base}/v1/worker/jobs/{id}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "succeeded" || job["status"] == "failed" {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the in-process worker did not finish the job: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["result"],
        json!({ "echo": { "hello": "world" } }),
        "{job}"
    );
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(handled.load(Ordering::SeqCst), 1);

    // The worker process is listed, alive, next to jobs.maintenance.
    let workers: Value = http
        .get(format!("{base}/v1/admin/workers"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = workers["items"].as_array().expect("items");
    for name in ["test.echo", "jobs.maintenance"] {
        let w = items
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {workers}"));
        assert_eq!(w["alive"], true, "{w}");
        assert_eq!(w["pid"], std::process::id() as i64, "{w}");
    }
    assert!(
        !items.iter().any(|w| w["name"] == "demo.sleep"),
        "only the named workers run: {workers}"
    );
    app.stop().await.unwrap();
}
