//! wp-lite: a job control plane, worker framework and notification service in one binary.
//!
//! Read in this order: the CLI and configuration, the domain types, the storage traits and
//! their SQLite implementation, the in-process ready queue, the services that hold the rules,
//! the HTTP layer that exposes them, and the application that wires it all together.

/// Command line (clap derive): every command and option, each with its environment variable.
pub mod cli;
/// Typed configuration built from the CLI; secrets never print in `Debug`.
pub mod config;
/// Plain types without I/O: jobs, their states and the rules that belong to them.
pub mod domain;
/// The clock, injected everywhere time matters so tests can move it.
pub mod clock;
/// The storage traits, `StoreError`, `open(url)` and the one sync→async seam.
pub mod storage;
/// The in-process ready queue and wake-ups (a hint, never the truth).
pub mod queue;
/// Business rules: jobs, auth sessions.
pub mod service;
/// The HTTP API: router, extractors, the one error mapping, feature handlers.
pub mod http;
/// Logging initialisation.
pub mod telemetry;
/// Maintenance and other background workers.
pub mod worker;
/// Builds the application from a `Config` and runs it.
pub mod app;
/// What each command does (dispatch from `main`), and exit codes.
pub mod commands;
/// `wp-lite users import`: CSV and JSON Lines.
pub mod import;
/// `wp-lite bench`: the benchmark scenarios.
pub mod bench;
