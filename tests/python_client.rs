//! The Python client and worker library (`clients/python`, package `wp_lite`) against the
//! binary this build made: its own unittest suite — round trips, every typed exception from
//! a real answer, a worker draining 2 000 jobs, heartbeats past the lease, cancellation,
//! SIGTERM with jobs in hand, a server restart mid-run, the command line — runs here, so
//! `make test` covers it. Skipped (with a message) only where python3 is not installed.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_wp-lite");

#[test]
fn the_python_client_suite_passes_against_this_binary() {
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(_) | Err(_) => {
            eprintln!("SKIPPED: python3 is not installed, so clients/python cannot be tested");
            return;
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .current_dir(root)
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "clients/python/tests",
            "-t",
            "clients/python",
        ])
        .env("WP_LITE_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("WP_LITE_URL")
        .env_remove("WP_LITE_TOKEN")
        .output()
        .expect("run python3 -m unittest");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python suite failed:\n{}{report}",
        String::from_utf8_lossy(&out.stdout)
    );
    // unittest ends with "Ran N tests" and "OK" (or "OK (skipped=…)").
    let ran = report
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        ran >= 20,
        "the Python suite ran only {ran} tests:\n{report}"
    );
    assert!(
        !report.contains("skipped="),
        "the Python suite skipped tests it should run here:\n{report}"
    );
    eprintln!("python client suite: {ran} tests passed");
}
