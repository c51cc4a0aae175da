-- 0007: when each node's agent first registered (its boot ended), so that
-- the API can estimate when a queued job starts from recent boot times.
-- NULL while the node is preparing, and for nodes stored before this.

ALTER TABLE nodes ADD COLUMN ready_at TEXT;
