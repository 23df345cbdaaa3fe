-- Finished jobs were in two indexes: jobs_finished (updated_at), which pruning walked in
-- order of finish time, and jobs_finished_by_status (status, seq), which lists and counts
-- them. Every completion wrote an entry in both.
--
-- Pruning now walks jobs_finished_by_status up to the last job created before the cut-off
-- (a job created after it cannot have finished before it), found by a binary search of the
-- primary key, and deletes those of them that finished before the cut-off. jobs_finished
-- has no reader left.
DROP INDEX jobs_finished;
