-- The job table's text keys compare byte by byte. Under the database's collation (say
-- en_US.UTF-8, or even C.UTF-8, which PostgreSQL does not treat as plain C) every comparison
-- in jobs_id_key, jobs_ready_by_type and jobs_idempotency went through the C library's
-- strcoll, and an enqueue, a lease and a completion each insert into jobs_id_key. Under
-- "C" they are memcmp: about 10 % off inserting and updating 100 000 jobs on the test
-- machine. Equality is unchanged (PostgreSQL's deterministic collations only call byte-equal
-- strings equal). Where jobs are ordered by type, it is now byte order, as on SQLite. The
-- table is not rewritten; its indexes on these columns are rebuilt.
ALTER TABLE jobs
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN type TYPE TEXT COLLATE "C",
    ALTER COLUMN idempotency_key TYPE TEXT COLLATE "C";
