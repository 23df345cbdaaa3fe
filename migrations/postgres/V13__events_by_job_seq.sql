-- Job events were keyed by the job's 36-character text id. Keyed by the job's integer key
-- (jobs.seq) each row and its index entry are about 40 bytes smaller, and the event
-- inserts of a batch carry integers. Events are written only by transitions of a job that
-- exists (they hold its row lock), and the one statement that deletes jobs (retention)
-- deletes their events with it, so no foreign key is needed (see V11).
ALTER TABLE job_events ADD COLUMN job_seq BIGINT;
UPDATE job_events e SET job_seq = j.seq FROM jobs j WHERE j.id = e.job_id;
-- Without the foreign key, an event could only lose its job to a delete outside wp-lite.
DELETE FROM job_events WHERE job_seq IS NULL;
ALTER TABLE job_events ALTER COLUMN job_seq SET NOT NULL;
DROP INDEX job_events_by_job;
ALTER TABLE job_events DROP COLUMN job_id;
CREATE INDEX job_events_by_job ON job_events (job_seq, id);
