-- Queued jobs were in two ready indexes: one by (priority, available_at, created_at) for
-- claims of any type, one by type first for claims that name their types. Every enqueue
-- wrote an entry in both and every lease removed both; the untyped one took about a tenth
-- of the writer's time when enqueueing in batches.
--
-- A claim of any type now reads the head of each type's queue from the per-type index and
-- merges them (the types with queued jobs are found in the same index, one seek per type),
-- so the untyped index has no reader left.
DROP INDEX jobs_ready;
