package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kumo/api"
)

// leadsRE matches what a replica prints when it takes the controller
// lease.
var leadsRE = regexp.MustCompile(`replica (\S+) leads the controllers \(term (\d+)\)`)

// replicaSet is several kumo up replicas on one PostgreSQL database,
// sharing the files, work and node-record directories (as replicas on
// shared storage would) and the CA, each on a port of its own.
type replicaSet struct {
	t       testing.TB
	root    string
	flags   []string // the flags every replica gets
	dirs    []string
	addrs   []string
	servers []*server
}

// startReplicas starts n replicas and waits until each serves.
func startReplicas(t testing.TB, n int, extra ...string) *replicaSet {
	t.Helper()
	root := t.TempDir()
	reachable(t, root)
	ownerOf(t).addDir(root)
	db := postgresFor(t, root)
	records := filepath.Join(root, "node-records")
	regions := filepath.Join(root, "regions.yaml")
	doc := fmt.Sprintf("regions:\n  - name: local\n    provider: local\n    settings:\n      dir: %s\n", records)
	if err := os.WriteFile(regions, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{t: t, root: root}
	var urls []string
	rs.addrs = freeAddrs(t, n)
	for i := range n {
		rs.dirs = append(rs.dirs, filepath.Join(root, "r"+strconv.Itoa(i)))
		urls = append(urls, "https://"+rs.addrs[i])
	}
	rs.flags = append([]string{"--database", db, "--work-dir", filepath.Join(root, "work"), "--files-dir", filepath.Join(root, "files"),
		"--regions", regions, "--agent-url", strings.Join(urls, ","), "--local-compute", "off"}, ownUIDs()...)
	rs.flags = append(rs.flags, extra...)
	rs.servers = make([]*server, n)
	t.Cleanup(func() {
		if t.Failed() {
			for i, s := range rs.servers {
				if s != nil {
					out := s.out.String()
					t.Logf("replica %d output (last 6000 bytes):\n%s", i, out[max(0, len(out)-6000):])
				}
			}
		}
	})
	for i := range n {
		if err := os.MkdirAll(rs.dirs[i], 0o700); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			// One CA for all: the agents trust any replica they reach.
			data := filepath.Join(rs.dirs[i], "data")
			if err := os.MkdirAll(data, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"ca.pem", "ca-key.pem"} {
				b, err := os.ReadFile(filepath.Join(rs.dirs[0], "data", f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(data, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		rs.start(i)
	}
	return rs
}

// start (re)starts replica i on its address.
func (rs *replicaSet) start(i int) {
	rs.t.Helper()
	rs.servers[i] = startServer(rs.t, rs.dirs[i], append(slices.Clip(rs.flags), "--addr", rs.addrs[i], "--replica", "r"+strconv.Itoa(i))...)
}

// freeAddrs returns n loopback addresses, each with a port of its own
// that is free now.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	// All are held until all are picked: a port closed at once could be
	// handed out again by the next pick.
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// alive reports whether replica i's process still runs.
func (rs *replicaSet) alive(i int) bool {
	return rs.servers[i] != nil && rs.servers[i].cmd.ProcessState == nil
}

// term returns the highest term a replica has said it leads, and which
// replica said so; -1 when none has.
func (rs *replicaSet) term() (term int, replica int) {
	term, replica = 0, -1
	for i, s := range rs.servers {
		if s == nil {
			continue
		}
		for _, m := range leadsRE.FindAllStringSubmatch(s.out.String(), -1) {
			if n, _ := strconv.Atoi(m[2]); n > term {
				term, replica = n, i
			}
		}
	}
	return term, replica
}

// leader waits until a live replica leads with a term above after, and
// returns it and its term.
func (rs *replicaSet) leader(after int, timeout time.Duration) (replica, term int) {
	rs.t.Helper()
	waitFor(rs.t, timeout, fmt.Sprintf("a leader of a term after %d", after), func() (bool, string) {
		term, replica = rs.term()
		return term > after && replica >= 0 && rs.alive(replica), fmt.Sprintf("term %d on replica %d", term, replica)
	})
	return replica, term
}

// any returns a live replica other than not.
func (rs *replicaSet) any(not int, k int) *server {
	for j := range rs.servers {
		i := (k + j) % len(rs.servers)
		if i != not && rs.alive(i) {
			return rs.servers[i]
		}
	}
	rs.t.Fatal("no live replica")
	return nil
}

// nodeRecords counts the local provider's node records (one directory
// per node it started and has not released).
func (rs *replicaSet) nodeRecords() int {
	ents, _ := os.ReadDir(filepath.Join(rs.root, "node-records"))
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			n++
		}
	}
	return n
}

// TestReplicasFailover runs three replicas on one PostgreSQL, submits 200
// short jobs through all of them, and kill -9s the leader twice while
// they run; then it stops the third leader with SIGSTOP until another
// leads, and resumes it. Every job completes exactly once, as its own
// output shows; no node is duplicated or left behind; each new leader
// takes over, and a resumed former leader steps down.
func TestReplicasFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three control planes")
	}
	const maxNodes, jobs = 4, 200
	// Heartbeats are frequent, but a node's silence must outlast a
	// failover (about 4 s) before it counts as lost: a node declared lost
	// has its job requeued, which would run it twice.
	rs := startReplicas(t, 3, "--heartbeat-interval", "200ms", "--heartbeat-timeout", "15s", "--boot-timeout", "30s")
	leader, term := rs.leader(0, 30*time.Second)
	createCluster(t, rs.servers[leader], "cpu", 0, maxNodes, "PT2S")

	outDir := filepath.Join(rs.root, "outputs")
	if err := os.Mkdir(outDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(outDir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	name := func(i int) string { return fmt.Sprintf("job-%03d", i) }
	submit := func(from, to int) {
		for i := from; i < to; i++ {
			s := rs.any(-1, i)
			submitJob(t, s, name(i), "cpu", fmt.Sprintf("echo ran >> %s/%s; sleep 0.1; echo done-%s", outDir, name(i), name(i)))
		}
	}
	// Nodes never exceed the cluster's maximum, whoever leads.
	var mu sync.Mutex
	maxSeen := 0
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			mu.Lock()
			maxSeen = max(maxSeen, rs.nodeRecords())
			mu.Unlock()
		}
	}()
	done := func() int {
		n := 0
		for i := range jobs {
			if b, err := os.ReadFile(filepath.Join(outDir, name(i))); err == nil && len(b) > 0 {
				n++
			}
		}
		return n
	}
	killLeader := func(after int) {
		t.Helper()
		waitFor(t, 3*time.Minute, fmt.Sprintf("%d jobs to have run", after), func() (bool, string) {
			n := done()
			return n >= after, strconv.Itoa(n)
		})
		killed := leader
		start := time.Now()
		rs.servers[killed].kill()
		leader, term = rs.leader(term, 60*time.Second)
		t.Logf("kill -9 of replica %d: replica %d leads term %d after %v", killed, leader, term, time.Since(start).Round(time.Millisecond))
		rs.start(killed) // it rejoins as a follower
	}

	submit(0, 100)
	killLeader(30)
	submit(100, 150)
	killLeader(90)
	submit(150, jobs)

	// A leader stopped (not killed) loses its lease; resumed, it must
	// step down rather than act on its old term.
	stopped := leader
	if err := rs.servers[stopped].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var newLeader int
	waitFor(t, 60*time.Second, "another replica to lead", func() (bool, string) {
		tm, r := rs.term()
		newLeader = r
		return tm > term && r != stopped, fmt.Sprintf("term %d on replica %d", tm, r)
	})
	term, leader = rs.term()
	t.Logf("SIGSTOP of replica %d: replica %d leads term %d after %v", stopped, newLeader, term, time.Since(start).Round(time.Millisecond))
	if err := rs.servers[stopped].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the resumed former leader to step down", func() (bool, string) {
		out := rs.servers[stopped].out.String()
		return strings.Contains(out, "no longer leads"), lastLine(out)
	})

	for i := range jobs {
		j := waitJob(t, rs.any(-1, i), name(i), 3*time.Minute)
		if j.Properties.Status != api.JobCompleted {
			t.Errorf("%s ended %s", name(i), j.Properties.Status)
		}
		b, err := os.ReadFile(filepath.Join(outDir, name(i)))
		if err != nil || string(b) != "ran\n" {
			t.Errorf("%s ran %d times (want once): %v", name(i), strings.Count(string(b), "ran"), err)
		}
	}
	if log := jobLog(t, rs.any(-1, 7), name(7)); !strings.Contains(log, "done-"+name(7)) {
		t.Errorf("log of %s lacks its output: %q", name(7), log)
	}
	// The cluster returns to zero nodes: no node record or process is left
	// for a node no replica knows.
	waitFor(t, 2*time.Minute, "the cluster to scale to zero and its node records to go", func() (bool, string) {
		c := getCompute(t, rs.any(-1, 0), "cpu")
		return nodeCount(c) == 0 && rs.nodeRecords() == 0, fmt.Sprintf("%d nodes, %d records", nodeCount(c), rs.nodeRecords())
	})
	close(stop)
	<-watched
	if maxSeen > maxNodes {
		t.Errorf("%d nodes at once, more than the maximum %d", maxSeen, maxNodes)
	}
}

// BenchmarkReplicaFailover kill -9s the leader of two replicas b.N times
// and reports how long the other takes to lead, from the kill to its
// taking the lease (p50, p99, max).
func BenchmarkReplicaFailover(b *testing.B) {
	rs := startReplicas(b, 2)
	leader, term := rs.leader(0, 30*time.Second)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		killed := leader
		rs.servers[killed].kill()
		leader, term = rs.leader(term, 60*time.Second)
		lat = append(lat, time.Since(start))
		rs.start(killed)
	}
	slices.Sort(lat)
	reportLatency(b, "failover", lat, true)
}
