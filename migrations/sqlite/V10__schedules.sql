-- Recurring jobs: a cron calendar and the job each run enqueues (a JSON enqueue body).
-- next_run_at is NULL while the schedule is disabled. A run is taken by moving
-- next_run_at from the value a process read (compare-and-set), and its job carries the
-- idempotency key schedule:<name>:<run time>, so each run is enqueued once.
CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    job           TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    overlap       TEXT NOT NULL,
    next_run_at   INTEGER,
    last_run_at   INTEGER,
    last_job_id   TEXT,
    runs_total    INTEGER NOT NULL DEFAULT 0,
    skipped_total INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled = 1;

-- Per job type: paused, and a global limit on how many of its jobs are leased at once.
CREATE TABLE queue_controls (
    type       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    max_leased INTEGER,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
