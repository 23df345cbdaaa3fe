//! Helpers the real-binary test files share: signals, bounded waits, and reading the
//! address a `wp-lite serve` child listens on from its JSON log.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus};
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
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a `serve` child's JSON log (its stderr, piped) until the "wp-lite serving" line
/// and returns `http://<addr>`; the rest of the log keeps being drained so the child never
/// blocks on a full pipe.
pub fn serving_base(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("read the log");
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["message"] == "wp-lite serving" {
                break v["addr"].as_str().expect("addr in the log").to_string();
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    format!("http://{addr}")
}
