-- The two finished-job indexes said `status IN ('succeeded', 'failed', 'canceled')`. SQLite
-- evaluates a partial index's IN list through a temporary b-tree that it builds on every
-- INSERT and on every UPDATE of a job, for each of the two indexes (about a tenth of the
-- writer's time when enqueueing). The same condition as equalities is three comparisons.
-- Queries that use these indexes state the condition in the same words (or one of its
-- equalities), which is how SQLite knows the partial index covers them.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (updated_at)
    WHERE status = 'succeeded' OR status = 'failed' OR status = 'canceled';

DROP INDEX jobs_finished_by_status;
CREATE INDEX jobs_finished_by_status ON jobs (status, seq)
    WHERE status = 'succeeded' OR status = 'failed' OR status = 'canceled';
