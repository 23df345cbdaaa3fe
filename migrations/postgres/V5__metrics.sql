-- Worker metrics every process flushes (deltas added), so the API process can report the
-- work of all processes and nodes, and counters never go backwards across restarts.
CREATE TABLE metric_counters (
    name  TEXT NOT NULL,
    label TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (name, label)
);

CREATE TABLE metric_stages (
    stage   TEXT PRIMARY KEY,
    count   BIGINT NOT NULL,
    sum_ms  DOUBLE PRECISION NOT NULL,
    -- JSON array: observations per bucket of telemetry::STAGE_BUCKETS (+Inf last).
    buckets TEXT NOT NULL
);
