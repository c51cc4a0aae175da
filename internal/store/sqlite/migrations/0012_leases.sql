-- 0012: leases, the leader lease among them (see model.Lease).
--
-- One row per lease name. holder is the replica holding it, '' once
-- released; term is the fencing token, +1 on each change of holder. A
-- write that carries a fence (store.WithFence) first reads this row by
-- its key, in the write's own transaction. Times are the local clock's,
-- fixed-width UTC text as elsewhere: SQLite serves one host.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    address     TEXT NOT NULL,
    term        INTEGER NOT NULL,
    acquired_at TEXT NOT NULL,
    renewed_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
) STRICT;
