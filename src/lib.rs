//! wp-lite: a job control plane, worker framework and notification service in one binary.
//!
//! Read in this order: the CLI and configuration, the domain types, the storage traits and
//! their SQLite and PostgreSQL implementations, the in-process ready queue, the services that
//! hold the rules, the HTTP layer that exposes them, the workers, and the application that
//! wires it all together. `docs/design.md` tells the same story in prose.

/// Builds the application from a `Config` and runs it.
pub mod app;
/// `wp-lite bench`: the benchmark scenarios.
pub mod bench;
/// Command line (clap derive): every command and option, each with its environment variable.
pub mod cli;
/// The clock, injected everywhere time matters so tests can move it.
pub mod clock;
/// What each command does (dispatch from `main`), and exit codes.
pub mod commands;
/// Typed configuration built from the CLI.
pub mod config;
/// Plain types without I/O and the rules that belong to them: jobs and their state machine,
/// worker input, broadcasts, audiences and inboxes, schedules, metrics.
pub mod domain;
/// Exit codes: the one place that decides them, and `UsageError`.
pub mod exit;
/// The HTTP API: router, extractors, the one error mapping, feature handlers.
pub mod http;
/// `wp-lite users import`: CSV and JSON Lines.
pub mod import;
/// The in-process ready queue and wake-ups (a hint, never the truth).
pub mod queue;
/// Secrets (never printed in `Debug`) and the random tokens wp-lite makes.
pub mod secret;
/// The rules above the store: jobs (long polls, wake-ups), schedules, broadcasts, users,
/// inboxes and their live streams, auth sessions, worker processes.
pub mod service;
/// The stop signal every long-running loop waits on.
pub mod shutdown;
/// The storage traits, `StoreError`, `open(url)` and the one sync→async seam.
pub mod storage;
/// Metrics counted in memory and flushed to the store, their JSON and Prometheus views, and
/// logging initialisation.
pub mod telemetry;
/// The worker framework (periodic and queue workers, the registry, the runner) and the
/// built-in workers: maintenance, broadcast delivery, `notifications.send`, the demo.
pub mod worker;
