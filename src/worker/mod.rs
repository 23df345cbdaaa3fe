//! Background workers. The registry is the one list `wp-lite workers` (and later `run`
//! and `serve --workers`) read.

pub mod maintenance;

/// A registered worker: a stable name and what it does.
#[derive(Debug, Clone, Copy)]
pub struct WorkerInfo {
    pub name: &'static str,
    pub description: &'static str,
}

/// Every registered worker.
pub fn registry() -> Vec<WorkerInfo> {
    vec![maintenance::INFO]
}
