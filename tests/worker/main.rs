//! The worker framework through the library API: the periodic loop driven by a fake
//! ticker (no real sleeping), queue workers with handlers defined here running against a
//! real SQLite store, and a custom worker registered and run inside the app.

mod app;
mod periodic;
mod queue;
