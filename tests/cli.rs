//! The real binary: help, migrate, bad URLs, exit codes, tokens, serve and signals, and
//! two OS processes writing one database file.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");

fn wp(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("WP_LITE_DATABASE_URL")
        .env_remove("WP_LITE_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run wp-lite")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_lists_commands_and_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let o = wp(dir.path(), &["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for cmd in ["serve", "migrate", "workers", "admin-token", "bench"] {
        assert!(t.contains(cmd), "--help lacks {cmd}: {t}");
    }
    let o = wp(dir.path(), &["serve", "--help"]);
    let t = text(&o);
    for var in [
        "WP_LITE_DATABASE_URL",
        "WP_LITE_BIND",
        "WP_LITE_ADMIN_TOKEN",
        "WP_LITE_WORKER_TOKEN",
        "WP_LITE_MAX_BODY_BYTES",
        "WP_LITE_JOB_RETENTION",
        "WP_LITE_LOG_LEVEL",
    ] {
        assert!(t.contains(var), "serve --help lacks {var}");
    }
}

#[test]
fn migrate_twice_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let first = wp(dir.path(), &["migrate"]);
    assert!(first.status.success(), "{}", text(&first));
    let v1 = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(v1.starts_with("schema version "), "{v1}");
    let second = wp(dir.path(), &["migrate"]);
    assert!(second.status.success());
    assert_eq!(String::from_utf8_lossy(&second.stdout), v1);
    assert!(dir.path().join("wp-lite.db").exists());
}

#[test]
fn bad_database_urls_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (url, needle) in [
        ("sqlite::memory:", "memory"),
        ("mysql://root@localhost/x", "unsupported"),
        ("postgres://user:hunter2@127.0.0.1:1/db", "not available in this build"),
    ] {
        let o = wp(dir.path(), &["--database-url", url, "migrate"]);
        assert_eq!(o.status.code(), Some(2), "{url}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains(needle), "{url}: {t}");
        assert!(!t.contains("hunter2"), "the password leaked: {t}");
    }
}

#[test]
fn usage_errors_exit_2_and_log_level_ignores_case() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(wp(dir.path(), &["no-such-command"]).status.code(), Some(2));
    assert_eq!(wp(dir.path(), &["--log-level", "loud", "workers"]).status.code(), Some(2));
    let o = wp(dir.path(), &["--log-level=INFO", "workers"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("jobs.maintenance"));
    let o = wp(dir.path(), &["bench", "--scenario", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn admin_token_is_generated_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let a = wp(dir.path(), &["admin-token"]);
    assert!(a.status.success());
    let b = wp(dir.path(), &["admin-token"]);
    assert_eq!(a.stdout, b.stdout);
    let token = String::from_utf8_lossy(&a.stdout).trim().to_string();
    assert!(token.len() >= 43, "too short: {token}");
    let path = dir.path().join("wp-lite.db.admin-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let o = wp(dir.path(), &["admin-token", "--admin-token", "configured"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "configured");
}

/// A `wp-lite serve` child; its address is read from its JSON log.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir)
            .args(["--log-format", "json", "serve", "--bind", "127.0.0.1:0"])
            .env_remove("WP_LITE_DATABASE_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .expect("read log");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "wp-lite serving" {
                    break v["addr"].as_str().unwrap().to_string();
                }
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        signal(pid, "TERM");
        self.child.wait().unwrap()
    }
}

fn signal(pid: i32, sig: &str) {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_uses_the_generated_token_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let token = std::fs::read_to_string(dir.path().join("wp-lite.db.admin-token")).unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/v1/worker/queues", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/worker/queues", server.base))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{}/readyz", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Two OS processes write one database file while one of them is under load: no client
/// ever sees an error, and every job is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_write_one_database_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("WP_LITE_ADMIN_TOKEN", "two-process-admin-token")];
    let a = Server::start(dir.path(), &env);
    let b = Server::start(dir.path(), &env);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    const PER_CLIENT: usize = 150;
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (http, base_a, base_b) = (http.clone(), a.base.clone(), b.base.clone());
        tasks.push(tokio::spawn(async move {
            // Even clients run enqueue → lease → complete on A; odd ones enqueue on B.
            let base = if c % 2 == 0 { base_a } else { base_b };
            for i in 0..PER_CLIENT {
                let r = http
                    .post(format!("{base}/v1/worker/jobs"))
                    .bearer_auth("two-process-admin-token")
                    .json(&json!({ "type": format!("t{c}"), "input": { "i": i } }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
                if c % 2 == 0 {
                    let r: Value = http
                        .post(format!("{base}/v1/worker/jobs/lease"))
                        .bearer_auth("two-process-admin-token")
                        .json(&json!({ "worker_id": format!("w{c}"), "job_types": [format!("t{c}")] }))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let job = &r["jobs"][0];
                    let r = http
                        .post(format!("{base}/v1/worker/jobs/{}/complete", job["job_id"].as_str().unwrap()))
                        .bearer_auth("two-process-admin-token")
                        .json(&json!({ "worker_id": format!("w{c}"), "lease_token": job["lease_token"] }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q: Value = http
        .get(format!("{}/v1/worker/queues", a.base))
        .bearer_auth("two-process-admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    for item in items {
        let c: usize = item["type"].as_str().unwrap()[1..].parse().unwrap();
        let counts = &item["counts"];
        if c % 2 == 0 {
            assert_eq!(counts["succeeded"], PER_CLIENT as i64, "{item}");
        } else {
            assert_eq!(counts["queued"], PER_CLIENT as i64, "{item}");
        }
    }
    let (sa, sb) = tokio::task::spawn_blocking(move || (a.terminate(), b.terminate()))
        .await
        .unwrap();
    assert_eq!(sa.code(), Some(0));
    assert_eq!(sb.code(), Some(0));
}
