-- 0003: the agent key a node is bound to.
--
-- agent_key is the public key of the agent process whose first connect the
-- control plane accepted ('' until then). It is set once, by
-- NodeBindAgentKey, and never by NodeUpdate: every later agent request for
-- the node must be signed by it.

ALTER TABLE nodes ADD COLUMN agent_key TEXT NOT NULL DEFAULT '';
