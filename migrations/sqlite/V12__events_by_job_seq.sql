-- Job events were keyed by the job's 36-character text id, with a foreign key to
-- jobs (id). Every event insert (two per job on its way from queued to done) then looked
-- the job up by that text for the foreign-key check, and the row and its index entry each
-- carried the 36 characters. Keyed by the job's integer key (jobs.seq) the row and its
-- index entry are about 40 bytes smaller, and no check runs: events are written only by
-- transitions of a job that exists (inside the writer's transaction that holds it), and
-- the one statement that deletes jobs (retention) deletes their events with them.
--
-- SQLite cannot drop a column's foreign key in place, so the table is rebuilt; every
-- event keeps its id (and so its order).
CREATE TABLE job_events_by_seq (
    id      INTEGER PRIMARY KEY,
    job_seq INTEGER NOT NULL,
    ts      INTEGER NOT NULL,
    event   TEXT NOT NULL,
    details TEXT
);
INSERT INTO job_events_by_seq (id, job_seq, ts, event, details)
SELECT e.id, j.seq, e.ts, e.event, e.details
FROM job_events e JOIN jobs j ON j.id = e.job_id;
DROP TABLE job_events;
ALTER TABLE job_events_by_seq RENAME TO job_events;
CREATE INDEX job_events_by_job ON job_events (job_seq, id);
