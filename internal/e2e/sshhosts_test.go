package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/provider/sshhosts/sshdtest"
)

// netHost is a "machine" for the SSH-hosts provider: a network namespace
// joined to this one by a veth pair, with an sshd of its own.
type netHost struct {
	ns, addr, gateway string // namespace; its address; the host side's address
	sshd              *sshdtest.SSHD
}

// newNetHost makes namespace ns with address 10.213.<octet>.2, reached
// through a veth pair whose host side is 10.213.<octet>.1, and removes
// both (and every process left in the namespace) at cleanup. Addresses of
// 10.213.0.0/16 exist only on these links, for the test's own traffic.
func newNetHost(t testing.TB, ns string, octet int) *netHost {
	t.Helper()
	h := &netHost{ns: ns, addr: fmt.Sprintf("10.213.%d.2", octet), gateway: fmt.Sprintf("10.213.%d.1", octet)}
	outer := "kv" + ns[5:6] + ns[len(ns)-8:] // at most 15 bytes
	inner := outer + "i"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() {
		killNetNS(ns)
		exec.Command("ip", "link", "del", outer).Run()
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	ip("link", "add", outer, "type", "veth", "peer", "name", inner)
	ip("link", "set", inner, "netns", ns)
	ip("addr", "add", h.gateway+"/24", "dev", outer)
	ip("link", "set", outer, "up")
	ip("-n", ns, "addr", "add", h.addr+"/24", "dev", inner)
	ip("-n", ns, "link", "set", inner, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	ip("-n", ns, "route", "add", "default", "via", h.gateway)
	return h
}

// killNetNS kills every process in network namespace ns: its sshd, the
// sessions it serves and the agents they started.
func killNetNS(ns string) {
	var st syscall.Stat_t
	if syscall.Stat("/run/netns/"+ns, &st) != nil {
		return
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, _ := os.Readlink("/proc/" + e.Name() + "/ns/net"); link == want {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sshRegion is a control plane serving region onprem: two SSH hosts, a
// workspace in it and a cluster "fleet" (Standard_D2_v2, 0 to 2 nodes, 1 s
// idle time) there.
type sshRegion struct {
	t     testing.TB
	s     *server
	ws    string // the workspace's path
	hosts []*netHost
	home  string // the hosts' SSH user's home, shared by both
}

// startSSHRegion makes two hosts as network namespaces, each with a real
// sshd letting in one test user, and a control plane on host a's gateway
// address serving them as region onprem. It skips unless root, with ip and
// sshd.
func startSSHRegion(t testing.TB) *sshRegion {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, veth links and a user for sshd")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) to make network namespaces")
	}
	if _, err := os.Stat(sshdtest.Path); err != nil {
		t.Skipf("needs sshd (%s): install openssh-server", sshdtest.Path)
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(120))
	octet := 2 + 2*int(n.Int64()) // two /24s of 10.213.0.0/16 that parallel runs are unlikely to share
	tag := fmt.Sprintf("%08x", time.Now().UnixNano()&0xffffffff)
	user, home := sshdtest.NewUser(t)
	hosts := []*netHost{newNetHost(t, "kumo-a"+tag, octet), newNetHost(t, "kumo-b"+tag, octet+1)}
	var cfgHosts []map[string]any
	for i, h := range hosts {
		h.sshd = sshdtest.Start(t, sshdtest.Options{Listen: h.addr + ":22", User: user, NetNS: h.ns})
		cfgHosts = append(cfgHosts, map[string]any{"name": "host-" + "ab"[i:i+1], "address": h.addr, "user": user,
			"key_file": h.sshd.KeyFile, "host_key": h.sshd.HostKey, "dir": ".kumo-agent-" + "ab"[i:i+1],
			"vcpus": 2, "memory_gb": 8})
	}
	hostsJSON, _ := json.Marshal(cfgHosts)
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	// JSON is YAML.
	doc := fmt.Sprintf(`regions:
  - name: onprem
    provider: sshhosts
    settings:
      connect_timeout: 2s
      grace: 1s
      hosts: %s
`, hostsJSON)
	if err := os.WriteFile(regions, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	// The control plane listens on host a's gateway; host b reaches it
	// through its own gateway, this namespace's routing.
	s := startServer(t, dir, append([]string{"--addr", hosts[0].gateway + ":0", "--regions", regions}, fastNodes...)...)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out := s.out.String()
		t.Logf("kumo up output (last 4 KiB):\n%s", out[max(0, len(out)-4096):])
		logs, _ := filepath.Glob(filepath.Join(home, ".kumo-agent-*", "nodes", "*", "agent.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b[max(0, len(b)-2048):])
		}
	})
	r := &sshRegion{t: t, s: s, ws: strings.TrimSuffix(workspacePath, "default") + "onprem", hosts: hosts, home: home}
	if status, raw := s.request(context.Background(), "PUT", r.ws, map[string]any{"location": "onprem"}); status/100 != 2 {
		t.Fatalf("create workspace in region onprem: %d %s", status, raw)
	}
	body := map[string]any{"properties": map[string]any{"computeType": "AmlCompute", "properties": map[string]any{
		"vmSize": "Standard_D2_v2", "scaleSettings": map[string]any{"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": "PT1S"}}}}
	if status, raw := s.request(context.Background(), "PUT", r.ws+"/computes/fleet", body); status != 201 {
		t.Fatalf("create cluster: %d %s", status, raw)
	}
	return r
}

func (r *sshRegion) compute() api.ComputeResource {
	status, raw := r.s.request(context.Background(), "GET", r.ws+"/computes/fleet", nil)
	var c api.ComputeResource
	if status != 200 || json.Unmarshal(raw, &c) != nil {
		r.t.Fatalf("get cluster: %d %s", status, raw)
	}
	return c
}

func (r *sshRegion) job(name string) api.JobResource {
	status, raw := r.s.request(context.Background(), "GET", r.ws+"/jobs/"+name, nil)
	var j api.JobResource
	if status != 200 || json.Unmarshal(raw, &j) != nil {
		r.t.Fatalf("get job %s: %d %s", name, status, raw)
	}
	return j
}

func (r *sshRegion) log(name string) string {
	_, raw := r.s.request(context.Background(), "GET", r.ws+"/jobs/"+name+"/logs", nil)
	return string(raw)
}

func (r *sshRegion) submit(name, command string) {
	body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: command, ComputeID: "fleet"}}
	if status, raw := r.s.request(context.Background(), "PUT", r.ws+"/jobs/"+name, body); status != 201 {
		r.t.Fatalf("submit %s: %d %s", name, status, raw)
	}
}

// runStarted submits a trivial job, waits for it to complete and returns
// when its process started (the agent's start time).
func (r *sshRegion) runStarted(name string) time.Time {
	r.submit(name, "true")
	r.waitDone(name)
	started, err := time.Parse(api.TimeFormat, r.job(name).Properties.StartTime)
	if err != nil {
		r.t.Fatal(err)
	}
	return started
}

// waitDone waits until the jobs completed, failing if one did not.
func (r *sshRegion) waitDone(names ...string) {
	r.t.Helper()
	waitFor(r.t, 60*time.Second, "jobs "+strings.Join(names, ", "), func() (bool, string) {
		for _, name := range names {
			switch j := r.job(name); j.Properties.Status {
			case api.JobCompleted:
			case api.JobFailed, api.JobCanceled:
				r.t.Fatalf("job %s ended %s: %+v\n%s", name, j.Properties.Status, j.Properties.Error, r.log(name))
			default:
				return false, name + " " + string(j.Properties.Status)
			}
		}
		return true, ""
	})
}

// waitEmpty waits until the cluster has no nodes.
func (r *sshRegion) waitEmpty() {
	r.t.Helper()
	waitFor(r.t, 30*time.Second, "scale down to 0", func() (bool, string) {
		n := r.compute().Properties.Properties.CurrentNodeCount
		return n == 0, fmt.Sprint(n)
	})
}

// TestSSHHostsRegion: a region of two SSH hosts (network namespaces with
// their own addresses, each running a real sshd) scales a cluster 0 → 2
// across both as jobs queue, runs the jobs there, returns to 0; a host
// whose sshd and agent stop mid-job has its node made unusable and the job
// runs again on the other host.
func TestSSHHostsRegion(t *testing.T) {
	r := startSSHRegion(t)
	hosts, home, submit, logOf, job := r.hosts, r.home, r.submit, r.log, r.job

	// 0 → 2: a D2_v2 takes all of a host's 2 vCPUs, so the two queued jobs
	// get a node on each host.
	// Each job waits (up to 30 s) until both have started, so they run at
	// once, on two nodes.
	show := fmt.Sprintf(`echo "addr: $(hostname -I)"; touch %[1]s/$AZUREML_RUN_ID.started; n=0; until [ $(ls %[1]s | grep -c started) = 2 ] || [ $n = 300 ]; do sleep 0.1; n=$((n+1)); done`, home)
	submit("j1", show)
	submit("j2", show)
	r.waitDone("j1", "j2")
	seen := map[string]bool{}
	for _, name := range []string{"j1", "j2"} {
		for _, h := range hosts {
			if strings.Contains(logOf(name), "addr: "+h.addr) {
				seen[h.addr] = true
			}
		}
	}
	if len(seen) != 2 {
		t.Errorf("jobs ran on %v, want one on each host (%s, %s); logs:\n%s\n%s", seen, hosts[0].addr, hosts[1].addr, logOf("j1"), logOf("j2"))
	}
	r.waitEmpty()
	for i, h := range hosts {
		if ents, _ := os.ReadDir(filepath.Join(home, ".kumo-agent-"+"ab"[i:i+1], "nodes")); len(ents) != 0 {
			t.Errorf("host %s keeps node files after scale-down: %v", h.addr, ents)
		}
	}

	// A host that stops answering mid-job: its node is unusable and the
	// job runs again on the other host.
	// Each attempt also notes where it ran in a file of the test's.
	ran := filepath.Join(home, "j3.ran")
	// (before it prints where it runs, so the test never kills an attempt
	// that has not noted itself yet).
	submit("j3", fmt.Sprintf(`echo "$(hostname -I)" >> %s; echo "addr: $(hostname -I)"; sleep 4; echo finished`, ran))
	var first *netHost
	waitFor(t, 60*time.Second, "j3 to start", func() (bool, string) {
		l := logOf("j3")
		for _, h := range hosts {
			if strings.Contains(l, "addr: "+h.addr) {
				first = h
			}
		}
		return first != nil, string(job("j3").Properties.Status)
	})
	killNetNS(first.ns) // its sshd, and the agent and job with it
	first.sshd.Stop()
	other := hosts[0]
	if first == hosts[0] {
		other = hosts[1]
	}
	r.waitDone("j3")
	b, _ := os.ReadFile(ran)
	attempts := strings.Fields(string(b))
	if len(attempts) != 2 || attempts[0] != first.addr || attempts[1] != other.addr || !strings.Contains(logOf("j3"), "finished") {
		t.Errorf("j3 ran on %v (log %q); want it started on %s, then run again to the end on %s", attempts, logOf("j3"), first.addr, other.addr)
	}
	// kumo compute list-usage shows each host's capacity, and which one is
	// not answering.
	usage := mustCLI(t, r.s.dir, "compute", "list-usage", "-w", "onprem").stdout
	for _, want := range []string{
		fmt.Sprintf("Host host-%s vCPUs (region onprem, not answering)", map[bool]string{true: "a", false: "b"}[first == hosts[0]]),
		fmt.Sprintf("Host host-%s vCPUs (region onprem)", map[bool]string{true: "b", false: "a"}[first == hosts[0]]),
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("kumo compute list-usage lacks %q:\n%s", want, usage)
		}
	}
	// The node of the stopped host was made unusable, saying why.
	firstName := "host-" + map[bool]string{true: "a", false: "b"}[first == hosts[0]]
	status, raw := r.s.request(context.Background(), "GET", r.ws+"/computes/fleet/events", nil)
	if status != 200 || !strings.Contains(string(raw), "NodeUnusable") || !strings.Contains(string(raw), firstName) {
		t.Errorf("cluster events: %d %s; want a NodeUnusable event naming %s", status, raw, firstName)
	}
}

// BenchmarkSSHHostsNodeReady measures, on region onprem of two SSH hosts
// (see startSSHRegion), the time from submitting a trivial job to a cluster
// scaled to 0 until the job's process starts on the new node: the node's
// creation over SSH (executable already on the hosts after the warm-up),
// its agent's start and registration, and the dispatch. After each job the
// cluster returns to 0. Run with -benchtime=20x for BENCHMARKS.md.
func BenchmarkSSHHostsNodeReady(b *testing.B) {
	r := startSSHRegion(b)
	r.submit("warm", "true") // copies kumo to a host
	r.waitDone("warm")
	r.waitEmpty()
	benchNodeReady(b, "b", r.runStarted, r.waitEmpty)
}

// BenchmarkLocalNodeReady is BenchmarkSSHHostsNodeReady on region local:
// each trivial job goes to a cluster at 0 nodes, and the figure runs from
// its submission until its process started on the new node.
func BenchmarkLocalNodeReady(b *testing.B) {
	s := startServer(b, "", fastNodes...)
	createCluster(b, s, "cold", 0, 1, "PT1S")
	benchNodeReady(b, "c", func(name string) time.Time {
		submitJob(b, s, name, "cold", "true")
		j := waitJob(b, s, name, 60*time.Second)
		started, err := time.Parse(api.TimeFormat, j.Properties.StartTime)
		if j.Properties.Status != api.JobCompleted || err != nil {
			b.Fatalf("job %s: %s %v", name, j.Properties.Status, err)
		}
		return started
	}, func() {
		waitFor(b, 30*time.Second, "scale down to 0", func() (bool, string) { return nodeCount(getCompute(b, s, "cold")) == 0, "" })
	})
}
