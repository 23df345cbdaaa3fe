-- Recurring jobs: a cron calendar and the job each run enqueues (a JSON enqueue body).
-- next_run_at is NULL while the schedule is disabled. A run is taken by moving
-- next_run_at from the value a process read (compare-and-set), and its job carries the
-- idempotency key schedule:<name>:<run time>, so each run is enqueued once.
CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    job           TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    overlap       TEXT NOT NULL,
    next_run_at   BIGINT,
    last_run_at   BIGINT,
    last_job_id   TEXT,
    runs_total    BIGINT NOT NULL DEFAULT 0,
    skipped_total BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;

-- Per job type: paused, and a global limit on how many of its jobs are leased at once.
CREATE TABLE queue_controls (
    type       TEXT PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT false,
    max_leased BIGINT,
    updated_at BIGINT NOT NULL
);
