-- 0005: the node's SSH host key.
--
-- host_key is the node's SSH host public key in authorized_keys form, as
-- its agent reported it in Hello ('' until then, or when it serves no SSH);
-- listNodes publishes it and its fingerprint for known_hosts.

ALTER TABLE nodes ADD COLUMN host_key TEXT NOT NULL DEFAULT '';
