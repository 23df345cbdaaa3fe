//! Queue workers with handlers defined here, run by `queue_worker::run` against a real
//! SQLite store in a temporary directory, on the wall clock.

use chrono::Utc;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use wp_lite::clock::SystemClock;
use wp_lite::domain::{Enqueued, Job, JobId, JobMeta, JobStatus, JobType, NewJob};
use wp_lite::queue::ReadyQueue;
use wp_lite::service::jobs::JobService;
use wp_lite::storage::{self, Db, OpenOptions, Store};
use wp_lite::worker::queue_worker::{self, QueueStats};
use wp_lite::worker::{BoxFuture, HandlerError, QueueHandler, QueueSpec, Worker};

const TYPE: &str = "test.queue";

type HandleFn =
    Arc<dyn Fn(Job) -> BoxFuture<'static, Result<Option<Value>, HandlerError>> + Send + Sync>;

/// A queue worker whose handling is a closure given by each test.
struct TestHandler {
    spec: QueueSpec,
    handle: HandleFn,
}

impl TestHandler {
    fn new<F, Fut>(concurrency: usize, lease: Duration, f: F) -> Arc<Self>
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Option<Value>, HandlerError>> + Send + 'static,
    {
        Arc::new(Self {
            spec: QueueSpec {
                job_types: vec![JobType::parse("type", TYPE).unwrap()],
                concurrency,
                lease,
            },
            handle: Arc::new(move |job| Box::pin(f(job))),
        })
    }
}

impl Worker for TestHandler {
    fn name(&self) -> &str {
        "test.queue"
    }
    fn description(&self) -> &str {
        "a queue worker of the tests"
    }
}

impl QueueHandler for TestHandler {
    fn spec(&self) -> QueueSpec {
        self.spec.clone()
    }
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Option<Value>, HandlerError>> {
        (self.handle)(job)
    }
}

/// A job service over a fresh SQLite file.
struct Env {
    jobs: JobService,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("worker.db").display());
    let store = storage::open(&url, &OpenOptions { migrate: true }).expect("open sqlite");
    let jobs = JobService::new(
        Db::new(store.clone()),
        Arc::new(ReadyQueue::new()),
        Arc::new(SystemClock),
    );
    Env {
        jobs,
        store,
        _dir: dir,
    }
}

impl Env {
    async fn enqueue(&self, input: Value) -> JobId {
        let new = NewJob {
            id: None,
            job_type: JobType::parse("type", TYPE).unwrap(),
            priority: 5,
            max_attempts: 3,
            available_at: None,
            meta: JobMeta::default(),
            input,
        };
        match self.jobs.enqueue(vec![new]).await.unwrap().remove(0) {
            Enqueued::Created(j) => j.id,
            Enqueued::Replayed(_) => panic!("replayed"),
        }
    }

    fn job(&self, id: JobId) -> Job {
        self.store.get_job(id).unwrap()
    }

    fn events(&self, id: JobId) -> Vec<String> {
        self.store
            .job_events(id)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.store.close();
    }
}

/// Runs `worker` with `once` (drain until nothing is left) and returns its counters.
async fn drain(worker: Arc<TestHandler>, jobs: &JobService) -> Arc<QueueStats> {
    let (_stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(QueueStats::default());
    let run = queue_worker::run(
        worker,
        jobs.clone(),
        wp_lite::domain::WorkerId::local("test-worker"),
        stop_rx,
        Duration::from_secs(5),
        true,
        stats.clone(),
        Arc::new(|_, _| {}),
    );
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the worker drained the queue in time");
    stats
}

fn counts(s: &QueueStats) -> [u64; 4] {
    [
        s.started.load(Ordering::SeqCst),
        s.completed.load(Ordering::SeqCst),
        s.failed.load(Ordering::SeqCst),
        s.stopped.load(Ordering::SeqCst),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_success_completes_the_job_with_its_result() {
    let env = env();
    let id = env.enqueue(json!({ "n": 7 })).await;
    let worker = TestHandler::new(2, Duration::from_secs(30), |job: Job| async move {
        Ok(Some(json!({ "echo": job.input, "attempt": job.attempts })))
    });
    let stats = drain(worker, &env.jobs).await;
    let job = env.job(id);
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(
        job.result,
        Some(json!({ "echo": { "n": 7 }, "attempt": 1 }))
    );
    assert_eq!(job.attempts, 1);
    assert_eq!(job.lease_owner, None);
    assert_eq!(env.events(id), ["queued", "leased", "succeeded"]);
    assert_eq!(counts(&stats), [1, 1, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_requeues_the_job_with_backoff() {
    let env = env();
    let id = env.enqueue(json!({})).await;
    let worker = TestHandler::new(1, Duration::from_secs(30), |_job: Job| async move {
        Err(HandlerError::Retryable("the upstream is down".into()))
    });
    let before = Utc::now();
    let stats = drain(worker, &env.jobs).await;
    let after = Utc::now();
    let job = env.job(id);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("the upstream is down"));
    // The first backoff is 30 s plus up to 10 % jitter.
    assert!(
        job.available_at >= before + chrono::Duration::seconds(30)
            && job.available_at <= after + chrono::Duration::seconds(33),
        "available_at {} is not 30–33 s after {before}",
        job.available_at
    );
    assert_eq!(env.events(id), ["queued", "leased", "failed", "requeued"]);
    assert_eq!(counts(&stats), [1, 0, 1, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_failure_fails_the_job_for_good() {
    let env = env();
    let id = env.enqueue(json!({})).await;
    let worker = TestHandler::new(1, Duration::from_secs(30), |_job: Job| async move {
        Err(HandlerError::Fatal("the input makes no sense".into()))
    });
    let stats = drain(worker, &env.jobs).await;
    let job = env.job(id);
    assert_eq!(
        job.status,
        JobStatus::Failed,
        "attempts remained, but the error is fatal"
    );
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("the input makes no sense"));
    assert_eq!(
        job.result.as_ref().unwrap()["error"],
        "the input makes no sense"
    );
    assert_eq!(env.events(id), ["queued", "leased", "failed"]);
    assert_eq!(counts(&stats), [1, 0, 1, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_job_longer_than_its_lease() {
    let env = env();
    let id = env.enqueue(json!({})).await;
    // A 1 s lease and a 2.5 s job: without heartbeats the lease is gone before it ends.
    let worker = TestHandler::new(1, Duration::from_secs(1), |_job: Job| async move {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        Ok(Some(json!({ "done": true })))
    });
    let stats = drain(worker, &env.jobs).await;
    let job = env.job(id);
    assert_eq!(
        job.status,
        JobStatus::Succeeded,
        "events: {:?}",
        env.events(id)
    );
    assert_eq!(job.attempts, 1);
    assert_eq!(job.result, Some(json!({ "done": true })));
    let events = env.events(id);
    assert!(events.iter().any(|e| e == "heartbeat"), "{events:?}");
    assert!(
        !events.iter().any(|e| e == "expired" || e == "released"),
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("succeeded"));
    assert_eq!(counts(&stats), [1, 1, 0, 0]);
}

/// Sets its flag when dropped: tells that a handler's future was dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_running_job_stops_its_handler() {
    let env = env();
    let id = env.enqueue(json!({})).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Notify::new());
    let worker = {
        let (dropped, started) = (dropped.clone(), started.clone());
        TestHandler::new(1, Duration::from_secs(1), move |_job: Job| {
            let (dropped, started) = (dropped.clone(), started.clone());
            async move {
                let _guard = SetOnDrop(dropped);
                started.notify_one();
                std::future::pending::<()>().await;
                Ok(Some(json!({ "impossible": true })))
            }
        })
    };
    let jobs = env.jobs.clone();
    let run = tokio::spawn(async move { drain(worker, &jobs).await });
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the handler started");
    assert!(!dropped.load(Ordering::SeqCst));
    let canceled = env.jobs.cancel(id).await.unwrap();
    assert_eq!(canceled.status, JobStatus::Canceled);
    // The next heartbeat (every ⅓ s) learns of the cancel; the loop then has nothing left.
    let stats = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the worker stopped the canceled job")
        .unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler's future was not dropped"
    );
    let job = env.job(id);
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.result, None);
    let events = env.events(id);
    assert!(
        !events.iter().any(|e| e == "succeeded" || e == "failed"),
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("canceled"));
    assert_eq!(counts(&stats), [1, 0, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_concurrency_jobs_run_at_once() {
    let env = env();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(env.enqueue(json!({ "i": i })).await);
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (in_flight, max, ran) = (in_flight.clone(), max.clone(), ran.clone());
        TestHandler::new(3, Duration::from_secs(30), move |_job: Job| {
            let (in_flight, max, ran) = (in_flight.clone(), max.clone(), ran.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            }
        })
    };
    let stats = drain(worker, &env.jobs).await;
    assert_eq!(ran.load(Ordering::SeqCst), 20);
    let max = max.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} jobs ran at once with concurrency 3");
    assert!(
        max > 1,
        "jobs never overlapped (max {max}); concurrency 3 was not used"
    );
    for id in ids {
        assert_eq!(env.job(id).status, JobStatus::Succeeded);
    }
    assert_eq!(counts(&stats), [20, 20, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_releases_the_leases_of_unfinished_jobs() {
    let env = env();
    let id = env.enqueue(json!({})).await;
    let started = Arc::new(Notify::new());
    let worker = {
        let started = started.clone();
        TestHandler::new(1, Duration::from_secs(30), move |_job: Job| {
            let started = started.clone();
            async move {
                started.notify_one();
                std::future::pending::<()>().await;
                Ok(None)
            }
        })
    };
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(QueueStats::default());
    let run = tokio::spawn(queue_worker::run(
        worker,
        env.jobs.clone(),
        wp_lite::domain::WorkerId::local("test-worker"),
        stop_rx,
        Duration::from_millis(200),
        false,
        stats.clone(),
        Arc::new(|_, _| {}),
    ));
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the handler started");
    assert_eq!(env.job(id).status, JobStatus::Leased);
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the worker stopped after the shutdown timeout")
        .unwrap();
    let job = env.job(id);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.lease_owner, None);
    assert_eq!(env.events(id), ["queued", "leased", "released"]);
}

/// `notifications.send` delivers and then completes in two commits; a retry of the same
/// job (after a crash between them) must find the item it already made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_job_without_event_id_delivers_once() {
    use wp_lite::domain::notify::UserId;
    use wp_lite::worker::{send, Built, WorkerEnv, WorkerOptions};
    let e = env();
    let worker_env = WorkerEnv {
        jobs: e.jobs.clone(),
        db: Db::new(e.store.clone()),
        clock: Arc::new(SystemClock),
        options: WorkerOptions::default(),
        broadcast_wake: Arc::default(),
        hub: None,
    };
    let Built::Queue(handler) = send::build(&worker_env).unwrap() else {
        panic!("notifications.send is a queue worker");
    };
    let id = e
        .enqueue(json!({ "user_id": "ann", "title": "t", "body": "b" }))
        .await;
    let job = e.job(id);
    let first = handler.handle(job.clone()).await.unwrap().unwrap();
    let again = handler.handle(job).await.unwrap().unwrap();
    assert_eq!(first["delivered"], true);
    assert_eq!(again["duplicate"], true);
    assert_eq!(first["item_id"], again["item_id"]);
    let ann = UserId::parse("u", "ann").unwrap();
    assert_eq!(e.store.inbox_page(&ann, 50, 0).unwrap().total, 1);
}
