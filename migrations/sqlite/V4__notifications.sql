-- Users mirrored from the host application, broadcasts, and inboxes.
CREATE TABLE users (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    email      TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    is_active  INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
-- Audience scans walk active users in seq order (the resume cursor).
CREATE INDEX users_active ON users (seq) WHERE is_active = 1 AND deleted_at IS NULL;

CREATE TABLE broadcasts (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    audience     TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    scheduled_at INTEGER,
    started_at   INTEGER,
    finished_at  INTEGER,
    total        INTEGER NOT NULL DEFAULT 0,
    sent         INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0,
    -- Delivery state: the audience snapshot bound, the resume cursor and the claim.
    snapshot_max INTEGER,
    cursor       INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    deleted_at   INTEGER
);
CREATE INDEX broadcasts_due ON broadcasts (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX broadcasts_sending ON broadcasts (lease_until) WHERE status = 'sending';

-- The deduplicated ids of an explicit_users audience, in order (pos is the cursor).
CREATE TABLE broadcast_recipients (
    broadcast_id TEXT NOT NULL,
    pos          INTEGER NOT NULL,
    user_id      TEXT NOT NULL,
    PRIMARY KEY (broadcast_id, pos)
) WITHOUT ROWID;

-- Content of direct notifications (a broadcast's content lives once, in broadcasts).
CREATE TABLE notification_contents (
    id         INTEGER PRIMARY KEY,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    meta       TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE inbox_items (
    id           INTEGER PRIMARY KEY,
    user_id      TEXT NOT NULL,
    broadcast_id TEXT,
    content_id   INTEGER,
    event_key    TEXT,
    created_at   INTEGER NOT NULL,
    read_at      INTEGER
);
-- One receipt per (user, broadcast): a broadcast is never delivered twice.
CREATE UNIQUE INDEX inbox_user_broadcast ON inbox_items (user_id, broadcast_id)
    WHERE broadcast_id IS NOT NULL;
-- Direct notifications deduplicated by event_id.
CREATE UNIQUE INDEX inbox_user_event ON inbox_items (user_id, event_key)
    WHERE event_key IS NOT NULL;
-- Listing newest first, and counts.
CREATE INDEX inbox_user ON inbox_items (user_id, id);
CREATE INDEX inbox_unread ON inbox_items (user_id) WHERE read_at IS NULL;
