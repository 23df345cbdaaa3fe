-- Users mirrored from the host application, broadcasts, and inboxes.
CREATE TABLE users (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    email      TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    is_active  BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
-- Audience scans walk active users in seq order (the resume cursor).
CREATE INDEX users_active ON users (seq) WHERE is_active = 1 AND deleted_at IS NULL;

CREATE TABLE broadcasts (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    audience     TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    scheduled_at BIGINT,
    started_at   BIGINT,
    finished_at  BIGINT,
    total        BIGINT NOT NULL DEFAULT 0,
    sent         BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0,
    skipped      BIGINT NOT NULL DEFAULT 0,
    -- Delivery state: the audience snapshot bound, the resume cursor and the claim.
    snapshot_max BIGINT,
    cursor       BIGINT NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    deleted_at   BIGINT
);
CREATE INDEX broadcasts_due ON broadcasts (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX broadcasts_sending ON broadcasts (lease_until) WHERE status = 'sending';

-- The deduplicated ids of an explicit_users audience, in order (pos is the cursor).
CREATE TABLE broadcast_recipients (
    broadcast_id TEXT NOT NULL,
    pos          BIGINT NOT NULL,
    user_id      TEXT NOT NULL,
    PRIMARY KEY (broadcast_id, pos)
);

-- Content of direct notifications (a broadcast's content lives once, in broadcasts).
CREATE TABLE notification_contents (
    id         BIGSERIAL PRIMARY KEY,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    meta       TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE inbox_items (
    id           BIGSERIAL PRIMARY KEY,
    user_id      TEXT NOT NULL,
    broadcast_id TEXT,
    content_id   BIGINT,
    event_key    TEXT,
    created_at   BIGINT NOT NULL,
    read_at      BIGINT
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
