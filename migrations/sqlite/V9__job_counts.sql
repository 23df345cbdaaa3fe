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

-- The job list filtered by status, newest first, walks only that status.
CREATE INDEX jobs_by_status ON jobs (status, seq);
