-- 0013: node presence and the node outbox, for several control plane
-- replicas sharing a database.
--
-- node_presence says which replica holds each node's agent connection and
-- when the agent was last heard from; replicas write it in batches. Rows
-- go with their nodes (NodeDelete). node_messages holds agent messages a
-- replica sends to a node connected to another one, in seq order, until
-- that replica takes them.

CREATE TABLE node_presence (
    node_id   TEXT PRIMARY KEY,
    replica   TEXT NOT NULL,
    last_seen TEXT NOT NULL
) STRICT;

CREATE TABLE node_messages (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id    TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX node_messages_by_node ON node_messages (node_id, seq);
CREATE INDEX node_messages_by_created ON node_messages (created_at);
