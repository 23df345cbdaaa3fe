-- Jobs, their event history and per-type counters. Times are milliseconds since the epoch
-- (BIGINT), as in the SQLite schema, so both backends hold the same values.
CREATE TABLE jobs (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    status          TEXT NOT NULL,
    priority        BIGINT NOT NULL,
    idempotency_key TEXT,
    code_version    TEXT,
    model_version   TEXT,
    config_hash     TEXT,
    budget_tag      TEXT,
    cost_cap_eur    TEXT,
    input           TEXT NOT NULL,
    result          TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    max_attempts    BIGINT NOT NULL,
    available_at    BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    lease_token     TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Idempotency: one key per type.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (type, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Leasing scans only queued rows, so its cost does not grow with finished history.
CREATE INDEX jobs_ready ON jobs (priority, available_at, created_at) WHERE status = 'queued';
CREATE INDEX jobs_ready_by_type ON jobs (type, priority, available_at, created_at)
    WHERE status = 'queued';
-- Lease reclaim.
CREATE INDEX jobs_lease_until ON jobs (lease_until) WHERE status = 'leased';
-- Retention.
CREATE INDEX jobs_finished ON jobs (updated_at)
    WHERE status IN ('succeeded', 'failed', 'canceled');

CREATE TABLE job_events (
    id      BIGSERIAL PRIMARY KEY,
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ts      BIGINT NOT NULL,
    event   TEXT NOT NULL,
    details TEXT
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE job_type_counters (
    type                 TEXT PRIMARY KEY,
    leases_expired_total BIGINT NOT NULL DEFAULT 0
);
