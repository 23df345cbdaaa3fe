-- Per-user inbox counts, kept by delivery, read marks and retention, so an inbox page
-- costs the same for 10 items as for 10 000.
CREATE TABLE inbox_counts (
    user_id TEXT PRIMARY KEY,
    total   BIGINT NOT NULL,
    unread  BIGINT NOT NULL
);

INSERT INTO inbox_counts (user_id, total, unread)
SELECT user_id, COUNT(*), COUNT(*) FILTER (WHERE read_at IS NULL) FROM inbox_items GROUP BY user_id;
