-- Every writer transaction that moves jobs appends its per-type sums to job_count_deltas, and
-- each row took a value from the table's sequence and an entry in its primary key: about a
-- fifth of that statement's time, once per commit. Nothing reads a delta by its id — the
-- maintenance loop folds them all at once (DELETE … RETURNING) and the queue counts sum them
-- all — so the table is a heap of appends. Dropping the column drops its key and sequence.
ALTER TABLE job_count_deltas DROP COLUMN id;
