-- 0004: leases, the leader lease among them (see model.Lease), and the
-- fence check every fenced write runs first (see store.WithFence).
--
-- One row per lease name. holder is the replica holding it, '' once
-- released; term is the fencing token, +1 on each change of holder.
-- Unlike the other tables' times, a lease's are the database server's
-- clock (clock_timestamp()) and stored as timestamptz: replicas on hosts
-- whose clocks disagree must agree on when a lease expires, and the
-- store never returns times a caller gave it here.
CREATE TABLE leases (
    name        TEXT COLLATE "C" PRIMARY KEY,
    holder      TEXT COLLATE "C" NOT NULL,
    address     TEXT COLLATE "C" NOT NULL,
    term        BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- kumo_fence raises SQLSTATE KUMOF unless lease lease_name is held in
-- term lease_term. It locks the lease row FOR SHARE: a takeover, which
-- updates the row, waits until the fenced transaction ends, so no write
-- under an old term commits after the new term begins.
CREATE FUNCTION kumo_fence(lease_name TEXT, lease_term BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM leases
        WHERE name = lease_name AND term = lease_term AND holder <> ''
        FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease % is not held in term %', lease_name, lease_term
            USING ERRCODE = 'KUMOF';
    END IF;
END
$$;
