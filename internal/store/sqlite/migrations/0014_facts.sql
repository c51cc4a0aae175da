-- 0014: facts that several control planes on one database agree on
-- through the database, not through one process's memory.
--
-- job_seq holds the last job Seq handed out: JobNextSeq raises it in the
-- write transaction, so two control planes never hand out one Seq twice.
-- A job stored with a larger Seq of its own (a copied store) raises it
-- too, by the triggers below. Seqs are not unique by constraint: jobs with
-- equal Seqs are ordered by ID, as before.
--
-- Nodes' SSH ports are unique (0 means none and may repeat): a node
-- created with a port another node holds is refused. Rows that broke that
-- before (there should be none) are renumbered past the largest port.
--
-- compute_status keeps the autoscaler's failure backoff, so that a
-- restarted or newly elected control plane waits as the old one would.

CREATE TABLE job_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;

INSERT INTO job_seq (id, value) SELECT 1, coalesce(max(seq), 0) FROM jobs;

CREATE TRIGGER job_seq_insert AFTER INSERT ON jobs
WHEN NEW.seq > (SELECT value FROM job_seq WHERE id = 1) BEGIN
    UPDATE job_seq SET value = NEW.seq WHERE id = 1;
END;

CREATE TRIGGER job_seq_update AFTER UPDATE OF seq ON jobs
WHEN NEW.seq <> OLD.seq AND NEW.seq > (SELECT value FROM job_seq WHERE id = 1) BEGIN
    UPDATE job_seq SET value = NEW.seq WHERE id = 1;
END;

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

ALTER TABLE compute_status ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compute_status ADD COLUMN last_failure TEXT;
ALTER TABLE compute_status ADD COLUMN retry_at TEXT;
