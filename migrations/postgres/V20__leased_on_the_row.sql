-- A lease no longer inserts a `leased` event row while the lease lasts: the job row carries
-- that event, as it carries a completion's since V19. lease_event is the event's id, taken
-- from the events' own sequence when the job is leased; leased_at is the lease's start and
-- leased_until the end it was given then (heartbeats move lease_until, not this). The
-- worker is lease_owner and the attempt is attempts, which neither a heartbeat nor a
-- completion changes.
--
-- A lease that ends any other way than in success (a failure, a release, an expiry, a
-- cancel) stores the event as a row, with the same id, time and details, in the statement
-- that ends it, and clears lease_event: from then on the row's lease columns belong to no
-- event. So a drained job (leased once, then completed) writes no event row at all, and a
-- job's history reads as it did when every event was a row.
--
-- Jobs leased before this version keep their stored `leased` event (lease_event is NULL
-- on them), and so do jobs copied from SQLite. The columns are NULL by default, so adding
-- them does not rewrite the table.
ALTER TABLE jobs
    ADD COLUMN lease_event BIGINT,
    ADD COLUMN leased_at BIGINT,
    ADD COLUMN leased_until BIGINT;
