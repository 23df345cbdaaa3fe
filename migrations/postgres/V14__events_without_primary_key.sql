-- Every job writes two event rows on its way from queued to done (leased, succeeded), and each
-- went into two indexes: the primary key on the event id and (job_seq, id). Every read and
-- write of events names the job (its history, the heartbeat that updates its own last event,
-- retention), so (job_seq, id) serves them all, and ids stay unique by their sequence (and
-- `copy` moves the sequence past the ids it copies). Without the primary key an event is one
-- index entry instead of two.
ALTER TABLE job_events DROP CONSTRAINT job_events_pkey;
