//! Every HTTP test, in one binary: a real server on 127.0.0.1:0 over a temporary SQLite
//! file, driven with reqwest. Time is a `ManualClock` the tests move; nothing sleeps to
//! wait for something to happen.

#[path = "../common/live.rs"]
mod live;
mod support;

mod contract;

mod auth;
mod bad_input;
mod batch;
mod concurrency;
mod jobs;
mod notifications;
mod openapi;
mod schedules;
mod streams;
