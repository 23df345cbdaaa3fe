-- Jobs per type and status, kept by the writers, so per-queue counts never count the
-- jobs table. Each writer transaction appends its sums to job_count_deltas (appends never
-- wait on each other); the maintenance loop folds them into job_counts.
CREATE TABLE job_counts (
    type   TEXT NOT NULL,
    status TEXT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (type, status)
);

CREATE TABLE job_count_deltas (
    id     BIGSERIAL PRIMARY KEY,
    type   TEXT NOT NULL,
    status TEXT NOT NULL,
    n      BIGINT NOT NULL
);

-- Counted under a share lock, so no writer commits a job between the count and the table.
LOCK TABLE jobs IN SHARE MODE;
INSERT INTO job_counts (type, status, n)
SELECT type, status, COUNT(*) FROM jobs GROUP BY type, status;

-- The job list filtered by a finished status (the statuses history piles up in), newest
-- first, walks only that status. Partial, so that no query on queued or leased jobs can
-- pick it over their own indexes, and leasing does not touch it.
CREATE INDEX jobs_finished_by_status ON jobs (status, seq)
    WHERE status IN ('succeeded', 'failed', 'canceled');
