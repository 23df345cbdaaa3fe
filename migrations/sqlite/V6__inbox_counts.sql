-- Per-user inbox counts, kept by delivery, read marks and retention, so an inbox page
-- costs the same for 10 items as for 10 000.
CREATE TABLE inbox_counts (
    user_id TEXT PRIMARY KEY,
    total   INTEGER NOT NULL,
    unread  INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO inbox_counts (user_id, total, unread)
SELECT user_id, COUNT(*), SUM(read_at IS NULL) FROM inbox_items GROUP BY user_id;
