-- 0003: a compute's usage records, covered.
--
-- A compute's answer sums its usage records (the cost so far) on every
-- GET; with this index the sum reads the index alone, only the records of
-- that compute, instead of every record of the workspace.

CREATE INDEX node_usage_by_compute ON node_usage (compute_key, started_at, ended_at, price_per_hour);
