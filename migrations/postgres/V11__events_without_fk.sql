-- Each event row checked its job through a foreign key: a trigger per inserted row that
-- looks the job up by its text id and locks it (FOR KEY SHARE), twice per job on its way
-- from queued to done, and on every row of a batch. Events are written only by the
-- transitions of a job that exists (they hold its row lock), and the one statement that
-- deletes jobs (retention) deletes their events in the same transaction, so the check
-- bought nothing that the code does not already keep. Both are named in the store.
ALTER TABLE job_events DROP CONSTRAINT IF EXISTS job_events_job_id_fkey;
