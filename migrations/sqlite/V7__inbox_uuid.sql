-- Inbox items get a public id that is a UUID (version 7, time-ordered) instead of the
-- row's sequence number, which told a user how many items everyone else had received.
-- The integer key stays inside the store (newest-first order, pruning, counting).
-- `wp_uuid7_at(ms)` is registered by wp-lite on every connection: existing items get a
-- UUID whose time part is their creation time.
ALTER TABLE inbox_items ADD COLUMN uid BLOB;
UPDATE inbox_items SET uid = wp_uuid7_at(created_at);
CREATE UNIQUE INDEX inbox_uid ON inbox_items (uid);
