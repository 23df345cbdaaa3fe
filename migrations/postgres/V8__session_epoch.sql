-- Which admin token a session was opened with (a fingerprint, never the token): a
-- restart with another admin token ends every session opened with the old one.
-- Sessions from before this migration have none, so they end too.
ALTER TABLE sessions ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
