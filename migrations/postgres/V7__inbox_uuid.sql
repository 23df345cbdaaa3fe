-- Inbox items get a public id that is a UUID (version 7, time-ordered) instead of the
-- row's sequence number, which told a user how many items everyone else had received.
-- The integer key stays inside the store (newest-first order, pruning, counting).

-- A UUID v7 whose time part is `ms` (Unix milliseconds): a random (v4) UUID with its
-- first 48 bits replaced by the time and its version nibble turned from 4 into 7.
CREATE FUNCTION wp_uuid7(ms BIGINT) RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(ms) FROM 3) FROM 1 FOR 6),
        52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE inbox_items ADD COLUMN uid uuid;
UPDATE inbox_items SET uid = wp_uuid7(created_at);
ALTER TABLE inbox_items
    ALTER COLUMN uid SET DEFAULT wp_uuid7((extract(epoch FROM clock_timestamp()) * 1000)::BIGINT),
    ALTER COLUMN uid SET NOT NULL;
CREATE UNIQUE INDEX inbox_uid ON inbox_items (uid);
