//! Helpers the real-binary test files share: signals, bounded waits, and reading the
//! address a `wp-lite serve` child listens on from its JSON log.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sends `sig` (`TERM`, `INT`, `KILL`, …) to a process.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Waits for a child with a deadline; kills it and fails when it does not exit in time.
pub fn wait_bounded(child: &mut Child, secs: u64, what: &str) -> ExitStatus {
    wait_bounded_logged(child, secs, what, &Arc::default())
}

/// Like [`wait_bounded`]; a failure shows the child's log (as kept by
/// [`serving_base_logged`]), so a slow stop says where it waited.
pub fn wait_bounded_logged(
    child: &mut Child,
    secs: u64,
    what: &str,
    log: &Arc<Mutex<Vec<String>>>,
) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = log.lock().unwrap();
            let tail = &log[log.len().saturating_sub(40)..];
            panic!(
                "{what} did not exit within {secs} s; the end of its log:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a `serve` child's JSON log (its stderr, piped) until the "wp-lite serving" line
/// and returns `http://<addr>`; the rest of the log keeps being drained so the child never
/// blocks on a full pipe.
pub fn serving_base(child: &mut Child) -> String {
    serving_base_logged(child).0
}

/// Like [`serving_base`], keeping every log line (those before the address too).
pub fn serving_base_logged(child: &mut Child) -> (String, Arc<Mutex<Vec<String>>>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let kept: Arc<Mutex<Vec<String>>> = Arc::default();
    let addr = loop {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => panic!(
                "serve exited before listening; its log:\n{}",
                kept.lock().unwrap().join("\n")
            ),
        };
        kept.lock().unwrap().push(line.clone());
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["message"] == "wp-lite serving" {
                break v["addr"].as_str().expect("addr in the log").to_string();
            }
        }
    };
    let rest = kept.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            rest.lock().unwrap().push(line);
        }
    });
    (format!("http://{addr}"), kept)
}

/// A `wp-lite serve` child and the address it serves on. Killed when dropped, so a failing
/// test leaves no process behind.
pub struct Served {
    pub child: Child,
    pub base: String,
}

impl Served {
    /// Spawns `cmd` (a `serve` with `--log-format json`, its stderr piped) and waits until
    /// it listens.
    pub fn spawn(cmd: &mut Command) -> Served {
        let mut child = cmd.spawn().expect("spawn serve");
        let base = serving_base(&mut child);
        Served { child, base }
    }

    /// SIGTERM and a bounded wait for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_bounded(&mut self.child, 60, "serve after SIGTERM")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL schema for one test, dropped (CASCADE) when the guard goes.
pub struct PgSchema {
    pub base: String,
    pub name: String,
}

impl PgSchema {
    pub fn new(base: &str, tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            base: base.to_string(),
            name: format!("wpt_{tag}_{}_{n}_{nanos}", std::process::id()),
        }
    }

    /// The URL that puts wp-lite in this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.base, self.name)
    }

    /// A plain client whose search path is this schema (for checks straight in SQL).
    /// Never call it inside the tokio runtime: the sync client runs its own.
    pub fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.base, postgres::NoTls)
            .expect("connect to WP_LITE_TEST_POSTGRES_URL");
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .unwrap();
        c
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // The sync client runs its own runtime: keep it off any async thread.
        let (url, name) = (self.base.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {}: {dropped:?}", self.name);
        }
    }
}
