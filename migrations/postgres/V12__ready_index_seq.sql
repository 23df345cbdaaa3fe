-- Claims take ready jobs in (priority, available_at, created_at, seq) order, but the ready
-- indexes stopped at created_at. Jobs enqueued in the same millisecond — every batch — tie
-- on all three, and for a large tie PostgreSQL chose to read every queued row and sort
-- them on disk to lease the first hundred (19 ms per claim with 50 000 queued jobs, against
-- 0.15 ms with seq in the index). With seq as the last key the claim reads exactly the rows
-- it leases, in order, with no sort.
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (priority, available_at, created_at, seq)
    WHERE status = 'queued';
DROP INDEX jobs_ready_by_type;
CREATE INDEX jobs_ready_by_type ON jobs (type, priority, available_at, created_at, seq)
    WHERE status = 'queued';
