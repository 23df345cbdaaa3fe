-- The job table's columns follow PostgreSQL's V20, so that `wp-lite copy` finds the same
-- columns on both sides. There the job row carries the `leased` event of its current (or
-- last, successful) lease instead of an event row. SQLite keeps storing that event as a
-- row, as before, and leaves these columns NULL; the history of a job copied to PostgreSQL
-- is read from its stored events.
ALTER TABLE jobs ADD COLUMN lease_event INTEGER;
ALTER TABLE jobs ADD COLUMN leased_at INTEGER;
ALTER TABLE jobs ADD COLUMN leased_until INTEGER;
