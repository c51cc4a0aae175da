package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// sshBenchEnv is a cluster of one node whose SSH port is also open
// (remoteLoginPortPublicAccess Enabled), so that the tunnel and a direct
// connection can be measured side by side.
func sshBenchEnv(b *testing.B) (*sshEnv, []string, []string) {
	b.Helper()
	e := newSSHEnv(b, "bench", 1, 1, "PT600S", "Enabled")
	node := waitSSHNode(b, e.s, "bench")
	e.writeSSHConfig(b, "bench")
	if node.Port == 0 {
		b.Fatal("the node has no SSH port")
	}
	known := filepath.Join(e.dir, "known_direct")
	line := fmt.Sprintf("[127.0.0.1]:%d %s\n", node.Port, node.SSHHostKey)
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		b.Fatal(err)
	}
	key := e.withKey(e.key)
	tunnel := append(append([]string{"-F", e.sshCfg}, key...), "bench-0")
	direct := append(append([]string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=yes",
		"-p", strconv.Itoa(int(node.Port)), "-l", sshUser}, key...), "127.0.0.1")
	// The node's port opens once its agent has the cluster's settings.
	waitFor(b, 30*time.Second, "the node's SSH port", func() (bool, string) {
		_, stderr, code := e.run(b, nil, "ssh", append(slices.Clone(direct), "true")...)
		return code == 0, stderr
	})
	return e, tunnel, direct
}

// BenchmarkSSHRoundTrip runs `ssh node true` b.N times through the
// control plane's tunnel (kumo ssh-proxy as the ProxyCommand) and b.N
// times directly to the node's SSH port, and reports each one's p50 and
// p99: a whole connection, key exchange, login and command.
func BenchmarkSSHRoundTrip(b *testing.B) {
	e, tunnel, direct := sshBenchEnv(b)
	once := func(args []string) time.Duration {
		start := time.Now()
		if _, stderr, code := e.run(b, nil, "ssh", append(slices.Clone(args), "true")...); code != 0 {
			b.Fatalf("ssh: exit %d: %s", code, stderr)
		}
		return time.Since(start)
	}
	// b.Loop runs the setup once; the two kinds alternate, so that load
	// from elsewhere weighs on both alike.
	var t, d []time.Duration
	for b.Loop() {
		t = append(t, once(tunnel))
		d = append(d, once(direct))
	}
	reportLatency(b, "tunnel-", t, false)
	reportLatency(b, "direct-", d, false)
}

// BenchmarkSCPThroughput copies a 100 MB file to the node with scp
// through the tunnel and directly, b.N times each (alternating), and
// reports MB/s.
func BenchmarkSCPThroughput(b *testing.B) {
	e, tunnel, direct := sshBenchEnv(b)
	src := filepath.Join(e.dir, "100mb.bin")
	data := make([]byte, 100<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		b.Fatal(err)
	}
	remote := "/tmp/kumo-bench-scp-" + randHex(6)
	b.Cleanup(func() { e.run(b, nil, "ssh", append(slices.Clone(tunnel), "rm -f "+remote)...) })
	scp := func(args []string) time.Duration {
		// ssh's arguments end with the host; scp wants options, then
		// SRC and HOST:DST (and -P for a port).
		host := args[len(args)-1]
		opts := slices.Clone(args[:len(args)-1])
		for i, a := range opts {
			if a == "-p" {
				opts[i] = "-P"
			}
			if a == "-l" { // scp has no -l for the user: name it in the target
				host = opts[i+1] + "@" + host
				opts = append(opts[:i], opts[i+2:]...)
				break
			}
		}
		start := time.Now()
		if _, stderr, code := e.run(b, nil, "scp", append(opts, src, host+":"+remote)...); code != 0 {
			b.Fatalf("scp: exit %d: %s", code, stderr)
		}
		return time.Since(start)
	}
	var t, d time.Duration
	n := 0
	for b.Loop() {
		t += scp(tunnel)
		d += scp(direct)
		n++
	}
	mb := float64(len(data)) / (1 << 20) * float64(n)
	b.ReportMetric(mb/t.Seconds(), "tunnel-MB/s")
	b.ReportMetric(mb/d.Seconds(), "direct-MB/s")
}
