//! The Python example worker (`examples/python_worker.py`, standard library only) against
//! the real binary: it drains a few hundred jobs from `wp-lite serve` — successes, a fatal
//! failure and retryable failures that go back to the queue — and stops cleanly on SIGINT.
//! Skipped (with a message) only where python3 is not installed.

mod common;

use common::signal;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");
const ADMIN: &str = "examples-admin-token-0123456789abcdef";
const JOBS: usize = 300;

/// A child process that is killed if the test fails before it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `wp-lite serve --workers none` (nothing in it handles `py.demo`); returns the child and
/// its base URL, read from the JSON log.
fn serve(dir: &Path) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["--log-format", "json", "serve", "--bind", "127.0.0.1:0"])
        .args(["--workers", "none"])
        .env_remove("WP_LITE_DATABASE_URL")
        .env_remove("WP_LITE_WORKERS")
        .env_remove("RUST_LOG")
        .env("WP_LITE_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wp-lite serve");
    let base = common::serving_base(&mut child);
    (Proc(child), base)
}

fn python3_available() -> bool {
    match Command::new("python3").arg("--version").output() {
        Ok(o) => o.status.success(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("python3 --version: {e}"),
    }
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_worker_drains_jobs_and_stops_cleanly_on_sigint() {
    if !python3_available() {
        eprintln!(
            "SKIPPED: python3 is not installed, so examples/python_worker.py cannot be exercised"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = serve(dir.path());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // 300 jobs: most succeed, every 50th (from the 8th) fails its first attempt
    // retryably, one fails for good.
    let mut ordinary = Vec::new();
    let mut fail_first = Vec::new();
    let mut fatal = String::new();
    for i in 0..JOBS {
        let input = if i == 150 {
            json!({ "fail": "fatal" })
        } else if i % 50 == 7 {
            json!({ "fail_first": true })
        } else {
            json!({ "ms": i % 3 })
        };
        let r = http
            .post(format!("{base}/v1/worker/jobs"))
            .bearer_auth(ADMIN)
            .json(&json!({ "type": "py.demo", "input": input, "max_attempts": 3 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        match (i == 150, i % 50 == 7) {
            (true, _) => fatal = id,
            (_, true) => fail_first.push(id),
            _ => ordinary.push(id),
        }
    }
    assert_eq!(fail_first.len(), 6);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python_worker.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .current_dir(dir.path())
        .env("WP_LITE_URL", &base)
        .env("WP_LITE_TOKEN", ADMIN)
        .env("JOB_TYPES", "py.demo")
        .env("WORKER_ID", "py-example-test")
        .env("WAIT_MS", "2000")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("LEASE_SECONDS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3 examples/python_worker.py");
    let (tx, out) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let err_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let err_thread = {
        let err_text = err_text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut t = err_text.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        })
    };
    let mut python = Proc(child);
    let pid = python.0.id();

    // Bounded poll (there is no event to wait for): done when nothing is leased, the
    // fatal job failed, and whatever is still queued is a fail_first job waiting out its
    // retry backoff (30 s, not waited for) after one attempt.
    let retry_ids: BTreeSet<&str> = fail_first.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let q = get(&http, &base, "/v1/worker/queues").await;
        let counts = q["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "py.demo")
            .map(|i| i["counts"].clone())
            .unwrap_or(Value::Null);
        let queued = get(
            &http,
            &base,
            "/v1/worker/jobs?type=py.demo&status=queued&limit=100",
        )
        .await;
        let waiting_retry = queued["items"].as_array().unwrap().iter().all(|j| {
            retry_ids.contains(j["job_id"].as_str().unwrap())
                && j["attempts"] == 1
                && j["last_error"].as_str().is_some_and(|e| !e.is_empty())
        });
        let n = |k: &str| counts[k].as_i64().unwrap_or(-1);
        if n("leased") == 0
            && n("failed") == 1
            && n("succeeded") + n("queued") == JOBS as i64 - 1
            && waiting_retry
        {
            break;
        }
        if let Some(status) = python.0.try_wait().unwrap() {
            panic!(
                "the python worker exited early ({status}):\n{}",
                err_text.lock().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the python worker did not drain the queue in time: {counts}, queued: {queued}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every job, one by one.
    for id in &ordinary {
        let j = get(&http, &base, &format!("/v1/worker/jobs/{id}")).await;
        assert_eq!(
            (j["status"].as_str(), j["attempts"].as_i64()),
            (Some("succeeded"), Some(1)),
            "{j}"
        );
        assert_eq!(j["result"]["handled_by"], "py-example-test", "{j}");
    }
    let j = get(&http, &base, &format!("/v1/worker/jobs/{fatal}")).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("failed"), Some(1)),
        "{j}"
    );
    assert!(
        j["last_error"].as_str().unwrap().contains("asked to fail"),
        "{j}"
    );
    for id in &fail_first {
        let j = get(&http, &base, &format!("/v1/worker/jobs/{id}")).await;
        match j["status"].as_str() {
            Some("queued") => {
                assert_eq!(j["attempts"], 1, "{j}");
                assert_eq!(j["last_error"], "temporary trouble, try again", "{j}");
            }
            // Only if the 30 s backoff elapsed on a very slow machine.
            Some("succeeded") => assert_eq!(j["attempts"], 2, "{j}"),
            _ => panic!("a fail_first job in an unexpected state: {j}"),
        }
        let events = get(&http, &base, &format!("/v1/worker/jobs/{id}/events")).await;
        let names: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert!(names.starts_with(&["queued", "leased"]), "{names:?}");
        assert!(
            names.len() >= 3,
            "the retryable failure is recorded: {names:?}"
        );
    }

    // Ctrl-C while it long-polls: it exits 0 at once and says so.
    signal(pid, "INT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = python.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the python worker did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut lines = Vec::new();
    while let Ok(l) = out.recv_timeout(Duration::from_secs(5)) {
        lines.push(l);
    }
    err_thread.join().unwrap();
    let stderr = err_text.lock().unwrap().clone();
    let stdout = lines.join("\n");
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        lines.last().is_some_and(|l| l.contains("stopped")),
        "it says it stopped:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");
    let completed = lines.iter().filter(|l| l.ends_with(" completed")).count();
    assert!(
        completed >= ordinary.len(),
        "{completed} completions reported:\n{stdout}"
    );
    assert!(
        lines.iter().any(|l| l == &format!("job {fatal} failed")),
        "the fatal failure is reported:\n{stdout}"
    );

    drop(python);
    signal(server.0.id(), "TERM");
    let mut server = server;
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
}
