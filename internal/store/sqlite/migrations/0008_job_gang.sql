-- 0008: multi-node gang jobs.
--
-- distribution is a JSON object (see distributionRow in job.go): how the
-- job's processes find each other; NULL means one process per node.
-- node_ids is a JSON array of a gang job's nodes in rank order while it
-- holds any ("" for a rank awaiting a replacement); NULL for a one-node
-- job. Both are written with the job's status in the same statement.

ALTER TABLE jobs ADD COLUMN distribution TEXT;
ALTER TABLE jobs ADD COLUMN node_ids TEXT;
