//! Raw PostgreSQL limits for the benchmarks.
