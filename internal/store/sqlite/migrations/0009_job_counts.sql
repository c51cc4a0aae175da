-- 0009: jobs counted by compute and status as they change.
--
-- job_counts holds, per compute and status, how many jobs there are and
-- how many nodes they need (instance_count, at least 1 each), with the
-- compute's ID as its first job spelled it. Triggers on jobs keep it in
-- step inside the writing transaction, so a count, or the list of computes
-- with work, costs one row per compute and status instead of a scan of
-- the queue. A row whose count fell to 0 is kept; readers skip it.

CREATE TABLE job_counts (
    compute_key TEXT NOT NULL,
    compute_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    jobs        INTEGER NOT NULL,
    nodes       INTEGER NOT NULL,
    PRIMARY KEY (compute_key, status)
) STRICT, WITHOUT ROWID;

INSERT INTO job_counts (compute_key, compute_id, status, jobs, nodes)
    SELECT compute_key, min(compute_id), status, count(*), sum(max(instance_count, 1)) FROM jobs GROUP BY compute_key, status;

CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (compute_key, compute_id, status, jobs, nodes)
        VALUES (NEW.compute_key, NEW.compute_id, NEW.status, 1, max(NEW.instance_count, 1))
        ON CONFLICT (compute_key, status) DO UPDATE SET jobs = jobs + 1, nodes = nodes + excluded.nodes;
END;

CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET jobs = jobs - 1, nodes = nodes - max(OLD.instance_count, 1)
        WHERE compute_key = OLD.compute_key AND status = OLD.status;
END;

CREATE TRIGGER job_counts_update AFTER UPDATE OF compute_key, status, instance_count ON jobs
    WHEN OLD.compute_key IS NOT NEW.compute_key OR OLD.status IS NOT NEW.status
        OR OLD.instance_count IS NOT NEW.instance_count
BEGIN
    UPDATE job_counts SET jobs = jobs - 1, nodes = nodes - max(OLD.instance_count, 1)
        WHERE compute_key = OLD.compute_key AND status = OLD.status;
    INSERT INTO job_counts (compute_key, compute_id, status, jobs, nodes)
        VALUES (NEW.compute_key, NEW.compute_id, NEW.status, 1, max(NEW.instance_count, 1))
        ON CONFLICT (compute_key, status) DO UPDATE SET jobs = jobs + 1, nodes = nodes + excluded.nodes;
END;
