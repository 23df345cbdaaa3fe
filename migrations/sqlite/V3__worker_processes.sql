-- Worker processes report themselves here every few seconds (liveness).
CREATE TABLE worker_processes (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    host              TEXT NOT NULL,
    pid               INTEGER NOT NULL,
    state             TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL,
    last_tick_at      INTEGER,
    last_tick_ms      INTEGER,
    heartbeat_ms      INTEGER NOT NULL
);
CREATE INDEX worker_processes_heartbeat ON worker_processes (last_heartbeat_at);
