package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplicasSSH logs in with kumo compute connect-ssh through a replica
// the node's agent is not connected to: the agents are told replica 0's
// URL first, so they connect there, and replica 1 relays the stream
// through replica 0.
func TestReplicasSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes")
	}
	needSSH(t)
	rs := startReplicas(t, 2, fastNodes...)
	s := rs.servers[1]
	e := &sshEnv{s: s, dir: s.dir, cfgPath: filepath.Join(s.dir, ".kumo", "config.json"), key: filepath.Join(s.dir, "id")}
	keygen(t, e.key)
	pub, err := os.ReadFile(e.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	createSSHCluster(t, s, "sshr", 1, 1, "PT120S", strings.TrimSpace(string(pub)))
	node := waitSSHNode(t, s, "sshr")

	out, stderr, code := e.kumo(t, nil, "compute", "connect-ssh", "--name", "sshr", "--private-key-file-path", e.key,
		"--", `echo "node=$KUMO_NODE_ID"; exit 7`)
	if code != 7 || !strings.Contains(out, "node="+node.NodeID) {
		t.Fatalf("connect-ssh through replica 1: exit %d (want 7), stdout %q, stderr %s", code, out, stderr)
	}
}
