-- 0007: SSH logins in node presence, and the replicas table, for several
-- control plane replicas sharing a database.
--
-- ssh_open and ssh_last_closed are what the replica holding a node last
-- recorded of its SSH logins ('' is never). replicas lists the running
-- replicas: where each is reached, the SHA-256 of its per-process secret
-- (never the secret), and when it last refreshed its row.

ALTER TABLE node_presence ADD COLUMN ssh_open INTEGER NOT NULL DEFAULT 0;
ALTER TABLE node_presence ADD COLUMN ssh_last_closed TEXT COLLATE "C" NOT NULL DEFAULT '';

CREATE TABLE replicas (
    name         TEXT COLLATE "C" PRIMARY KEY,
    address      TEXT COLLATE "C" NOT NULL,
    secret_hash  TEXT COLLATE "C" NOT NULL,
    heartbeat_at TEXT COLLATE "C" NOT NULL
);
