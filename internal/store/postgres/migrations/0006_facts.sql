-- 0006: facts that several control planes on one database agree on
-- through the database, not through one process's memory.
--
-- job_seq holds the last job Seq handed out: JobNextSeq raises it under
-- the row's lock, so two control planes never hand out one Seq twice.
-- A job stored with a larger Seq of its own (a copied store) raises it
-- too, by the trigger below. Seqs are not unique by constraint: jobs with
-- equal Seqs are ordered by ID, as before.
--
-- Nodes' SSH ports are unique (0 means none and may repeat): a node
-- created with a port another node holds is refused. Rows that broke that
-- before (there should be none) are renumbered past the largest port.
--
-- compute_status keeps the autoscaler's failure backoff, so that a
-- restarted or newly elected control plane waits as the old one would.

CREATE TABLE job_seq (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);

INSERT INTO job_seq (id, value) SELECT 1, coalesce(max(seq), 0) FROM jobs;

CREATE FUNCTION job_seq_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_seq SET value = NEW.seq WHERE id = 1 AND value < NEW.seq;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_seq_insert AFTER INSERT ON jobs
FOR EACH ROW EXECUTE FUNCTION job_seq_follow();

CREATE TRIGGER job_seq_update AFTER UPDATE OF seq ON jobs
FOR EACH ROW WHEN (NEW.seq <> OLD.seq) EXECUTE FUNCTION job_seq_follow();

UPDATE nodes SET ssh_port = d.base + d.rn
FROM (
    SELECT x.id,
           (SELECT max(ssh_port) FROM nodes) AS base,
           row_number() OVER (ORDER BY x.ssh_port, x.id) AS rn
    FROM nodes x
    WHERE x.ssh_port > 0 AND EXISTS (SELECT 1 FROM nodes y WHERE y.ssh_port = x.ssh_port AND y.id < x.id)
) AS d
WHERE nodes.id = d.id;

CREATE UNIQUE INDEX nodes_by_ssh_port ON nodes (ssh_port) WHERE ssh_port > 0;

ALTER TABLE compute_status ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE compute_status ADD COLUMN last_failure TEXT COLLATE "C";
ALTER TABLE compute_status ADD COLUMN retry_at TEXT COLLATE "C";
