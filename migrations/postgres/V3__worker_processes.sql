-- Worker processes report themselves here every few seconds (liveness).
CREATE TABLE worker_processes (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    host              TEXT NOT NULL,
    pid               BIGINT NOT NULL,
    state             TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    last_tick_at      BIGINT,
    last_tick_ms      BIGINT,
    heartbeat_ms      BIGINT NOT NULL
);
CREATE INDEX worker_processes_heartbeat ON worker_processes (last_heartbeat_at);
