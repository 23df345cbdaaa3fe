-- The job table's columns follow PostgreSQL's V19, so that `wp-lite copy` finds the same
-- columns on both sides. There a completion records its `succeeded` event on the job row
-- (finish_event holds the event's id) instead of inserting an event row. SQLite keeps
-- storing that event as a row, as before, and leaves the column NULL; the history of a job
-- copied to PostgreSQL is read from its stored events.
ALTER TABLE jobs ADD COLUMN finish_event INTEGER;
