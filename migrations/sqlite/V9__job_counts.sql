-- Jobs per type and status, kept by the writers (a sum per transaction, written with the
-- jobs it counts), so per-queue counts never count the jobs table.
CREATE TABLE job_counts (
    type   TEXT NOT NULL,
    status TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (type, status)
) WITHOUT ROWID;

INSERT INTO job_counts (type, status, n)
SELECT type, status, COUNT(*) FROM jobs GROUP BY type, status;

-- The job list filtered by a finished status (the statuses history piles up in), newest
-- first, walks only that status. Partial, so that no query on queued or leased jobs can
-- pick it over their own indexes, and leasing does not touch it.
CREATE INDEX jobs_finished_by_status ON jobs (status, seq)
    WHERE status IN ('succeeded', 'failed', 'canceled');
