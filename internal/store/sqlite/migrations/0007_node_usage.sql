-- 0007: when each node's agent first registered (its boot ended), so that
-- the API can estimate when a queued job starts from recent boot times.
-- NULL while the node is preparing, and for nodes stored before this.

ALTER TABLE nodes ADD COLUMN ready_at TEXT;

-- node_usage is each node's billing record (see model.NodeUsage): written
-- with the node by NodeCreateUsage, ended by NodeDelete at the node's
-- state_since (when it left service), and kept after the node is gone, so
-- that costs over any time range can be reported. price_per_hour is USD.
CREATE TABLE node_usage (
    node_id        TEXT PRIMARY KEY,
    compute_id     TEXT NOT NULL,
    compute_key    TEXT NOT NULL,
    workspace_key  TEXT NOT NULL,
    workspace_id   TEXT NOT NULL,
    vm_size        TEXT NOT NULL,
    priority       TEXT NOT NULL,
    price_per_hour REAL NOT NULL,
    started_at     TEXT NOT NULL,
    ended_at       TEXT             -- NULL while the node is in service
) STRICT;

CREATE INDEX node_usage_by_workspace ON node_usage (workspace_key, started_at);
