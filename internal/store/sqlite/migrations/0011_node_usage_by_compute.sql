-- 0011: a compute's usage records, covered, with their times in numbers.
--
-- A compute's answer sums its usage records (the cost so far) on every
-- GET. started_ns and ended_ns are started_at and ended_at as Unix
-- nanoseconds, exact (the text is fixed width, UTC: seconds, then nine
-- digits): NodeCreateUsage writes them with the record, and the trigger
-- below when a record's times change (NodeDelete ends it). The index holds
-- them, so the sum reads the index alone, only that compute's records,
-- and parses no time.
-- (Generated columns would do, but SQLite reads the table for them, even
-- when an index holds them.)

ALTER TABLE node_usage ADD COLUMN started_ns INTEGER;
ALTER TABLE node_usage ADD COLUMN ended_ns INTEGER;

UPDATE node_usage SET
    started_ns = unixepoch(substr(started_at, 1, 19)) * 1000000000 + CAST(substr(started_at, 21, 9) AS INTEGER),
    ended_ns = unixepoch(substr(ended_at, 1, 19)) * 1000000000 + CAST(substr(ended_at, 21, 9) AS INTEGER);

CREATE TRIGGER node_usage_ns_update AFTER UPDATE OF started_at, ended_at ON node_usage BEGIN
    UPDATE node_usage SET
        started_ns = unixepoch(substr(NEW.started_at, 1, 19)) * 1000000000 + CAST(substr(NEW.started_at, 21, 9) AS INTEGER),
        ended_ns = unixepoch(substr(NEW.ended_at, 1, 19)) * 1000000000 + CAST(substr(NEW.ended_at, 21, 9) AS INTEGER)
    WHERE node_id = NEW.node_id;
END;

CREATE INDEX node_usage_by_compute ON node_usage (compute_key, started_ns, ended_ns, price_per_hour);
