-- 0010: a compute's nodes by state.
--
-- The dispatcher reads a compute's idle nodes on every pass; with this
-- index that costs the idle nodes, not every node of a large cluster.

CREATE INDEX nodes_by_compute_state ON nodes (compute_key, state, created_at, id);
