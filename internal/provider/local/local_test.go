package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/cgroup"
	"kumo/internal/jobuser/jobusertest"
	"kumo/internal/provider"
	"kumo/internal/provider/providertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sleeper is a node command that records its environment and waits.
var sleeper = []string{"/bin/sh", "-c", `env > "$KUMO_WORK_DIR/env.tmp" && mv "$KUMO_WORK_DIR/env.tmp" "$KUMO_WORK_DIR/env.txt"; exec sleep 1000`}

func newLocal(t *testing.T, cfg Config) *Local {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Argv == nil {
		cfg.Argv = sleeper
	}
	if cfg.Grace == 0 {
		cfg.Grace = time.Second
	}
	if cfg.GPUs == nil {
		cfg.GPUs = []string{}
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop whatever a failed test left running.
		got, _ := l.List(context.Background())
		var ids []string
		for _, s := range got {
			ids = append(ids, s.ID)
		}
		l.Delete(context.Background(), ids)
	})
	return l
}

func inst(id string, vcpus int, memMB int64, gpus int) provider.Instance {
	return provider.Instance{
		ID: id, Compute: "cpu-cluster",
		Size:  provider.Size{Name: "S" + strconv.Itoa(vcpus), VCPUs: vcpus, MemoryMB: memMB, GPUs: gpus},
		Agent: provider.AgentConfig{URL: "https://cp.example:8443", CAFile: "/etc/kumo/ca.pem", Credential: "s3cret-" + id, Env: map[string]string{"EXTRA": "yes"}},
	}
}

func readRecord(t *testing.T, l *Local, id string) *record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir(id), "instance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// nodeEnv waits for the node's env.txt and returns it as a map.
func nodeEnv(t *testing.T, l *Local, id string) map[string]string {
	t.Helper()
	p := filepath.Join(l.dir(id), "work", "env.txt")
	for end := time.Now().Add(10 * time.Second); ; {
		b, err := os.ReadFile(p)
		if err == nil {
			env := map[string]string{}
			for line := range strings.Lines(string(b)) {
				k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
				env[k] = v
			}
			return env
		}
		if time.Now().After(end) {
			t.Fatalf("node %s wrote no env.txt", id)
		}
		time.Sleep(5 * time.Millisecond) // the node writes it when it starts
	}
}

func listStates(t *testing.T, l *Local) map[string]provider.InstanceStatus {
	t.Helper()
	got, err := l.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]provider.InstanceStatus{}
	for _, s := range got {
		m[s.ID] = s
	}
	return m
}

func gone(pid int, start uint64) bool { return !alive(pid, start) }

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider { return newLocal(t, Config{}) })
}

func TestNodeEnvironmentAndFiles(t *testing.T) {
	t.Setenv("KUMO_TEST_CONTROL_PLANE_SECRET", "cp-secret")
	l := newLocal(t, Config{Argv: append(sleeper[:2:2], sleeper[2], "{id}", "{credential_file}")})
	ctx := context.Background()
	if err := l.Create(ctx, []provider.Instance{inst("n1", 1, 256, 0)}); err != nil {
		t.Fatal(err)
	}
	env := nodeEnv(t, l, "n1")
	dir := l.dir("n1")
	want := map[string]string{
		"KUMO_NODE_ID": "n1", "KUMO_COMPUTE": "cpu-cluster", "KUMO_CONTROL_PLANE_URL": "https://cp.example:8443",
		"KUMO_CA_FILE": "/etc/kumo/ca.pem", "KUMO_CREDENTIAL_FILE": filepath.Join(dir, "credential"),
		"KUMO_WORK_DIR": filepath.Join(dir, "work"), "KUMO_VM_SIZE": "S1", "KUMO_VCPUS": "1", "KUMO_MEMORY_MB": "256",
		"CUDA_VISIBLE_DEVICES": "", "EXTRA": "yes", "KUMO_LIMITS_NOTE": l.Note(),
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("node env %s = %q, want %q", k, env[k], v)
		}
	}
	for k, v := range env {
		if strings.Contains(v, "s3cret") || strings.Contains(v, "cp-secret") {
			t.Errorf("credential or control plane variable leaked into env %s", k)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "credential"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "credential")); string(b) != "s3cret-n1" {
		t.Errorf("credential file holds %q", b)
	}
	rec := readRecord(t, l, "n1")
	if rec.Instance.Agent.Credential != "" {
		t.Error("record holds the credential")
	}
	if got, want := rec.Argv[3:], []string{"n1", filepath.Join(dir, "credential")}; !cmp.Equal(got, want) {
		t.Errorf("argv placeholders expanded to %q, want %q", got, want)
	}
	// The node is not our child: it survives us.
	if b, _ := os.ReadFile("/proc/" + strconv.Itoa(rec.PID) + "/stat"); strings.Contains(string(b), ") S "+strconv.Itoa(os.Getpid())+" ") {
		t.Error("node process is a child of the control plane")
	}
}

func TestRestartListsAndDeletes(t *testing.T) {
	dir := t.TempDir()
	l1 := newLocal(t, Config{Dir: dir})
	ctx := context.Background()
	if err := l1.Create(ctx, []provider.Instance{inst("n1", 1, 64, 0), inst("n2", 1, 64, 0)}); err != nil {
		t.Fatal(err)
	}
	before := listStates(t, l1)
	rec := readRecord(t, l1, "n1")

	l2 := newLocal(t, Config{Dir: dir}) // a restarted control plane
	after := listStates(t, l2)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("List after restart differs (-before +after):\n%s", diff)
	}
	if after["n1"].State != provider.StateRunning {
		t.Errorf("n1 = %+v, want Running", after["n1"])
	}
	if err := l2.Create(ctx, []provider.Instance{inst("n1", 1, 64, 0)}); err != nil {
		t.Fatal(err)
	}
	if again := readRecord(t, l2, "n1"); again.PID != rec.PID {
		t.Errorf("repeated Create restarted n1: pid %d, was %d", again.PID, rec.PID)
	}
	if err := l2.Delete(ctx, []string{"n1", "unknown"}); err != nil {
		t.Fatal(err)
	}
	if !gone(rec.PID, rec.StartTime) {
		t.Errorf("n1's process %d still runs after Delete", rec.PID)
	}
	if _, err := os.Stat(l2.dir("n1")); !os.IsNotExist(err) {
		t.Errorf("n1's directory remains: %v", err)
	}
}

func TestStoppedDetection(t *testing.T) {
	l := newLocal(t, Config{})
	ctx := context.Background()
	if err := l.Create(ctx, []provider.Instance{inst("killed", 1, 64, 0), inst("reused", 1, 64, 0), inst("broken", 1, 64, 0)}); err != nil {
		t.Fatal(err)
	}
	k := readRecord(t, l, "killed")
	syscall.Kill(k.PID, syscall.SIGKILL)
	// A record whose pid now belongs to another process (same pid, other start time).
	r := readRecord(t, l, "reused")
	r.StartTime++
	if err := writeRecord(l.dir("reused"), r); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !gone(k.PID, k.StartTime); {
		if time.Now().After(end) {
			t.Fatal("killed node still alive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := listStates(t, l)
	for _, id := range []string{"killed", "reused"} {
		if got[id].State != provider.StateStopped || !strings.Contains(got[id].Reason, "agent.log") {
			t.Errorf("%s = %+v, want Stopped with a reason naming agent.log", id, got[id])
		}
	}
	if got["broken"].State != provider.StateRunning {
		t.Errorf("broken = %+v, want Running", got["broken"])
	}
	// Delete still cleans up, and kills the real process of "reused".
	if err := l.Delete(ctx, []string{"killed", "reused"}); err != nil {
		t.Fatal(err)
	}
	if !gone(r.PID, r.StartTime-1) {
		t.Error("reused's real process survived Delete")
	}
}

func TestBadArgvIsStopped(t *testing.T) {
	l := newLocal(t, Config{Argv: []string{"/nonexistent/kumo", "agent"}})
	if err := l.Create(context.Background(), []provider.Instance{inst("n1", 1, 64, 0)}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); listStates(t, l)["n1"].State != provider.StateStopped; {
		if time.Now().After(end) {
			t.Fatalf("n1 = %+v, want Stopped", listStates(t, l)["n1"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(l.dir("n1"), "agent.log"))
	if !strings.Contains(string(b), "nonexistent") {
		t.Errorf("agent.log = %q, want the shell's error", b)
	}
}

func TestDeleteEndsProcessTree(t *testing.T) {
	// The node ignores SIGTERM and has a child in a process group of its
	// own, as the job runner makes them.
	argv := []string{"/bin/sh", "-c", `trap '' TERM; set -m; sleep 1000 & echo $! > "$KUMO_WORK_DIR/child.tmp"; mv "$KUMO_WORK_DIR/child.tmp" "$KUMO_WORK_DIR/child.pid"; while :; do wait; done`}
	l := newLocal(t, Config{Argv: argv, Grace: 200 * time.Millisecond})
	ctx := context.Background()
	if err := l.Create(ctx, []provider.Instance{inst("n1", 1, 64, 0)}); err != nil {
		t.Fatal(err)
	}
	var child int
	for end := time.Now().Add(10 * time.Second); child == 0; {
		b, _ := os.ReadFile(filepath.Join(l.dir("n1"), "work", "child.pid"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(end) {
			t.Fatal("no child.pid")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cst, _ := readStat(child)
	rec := readRecord(t, l, "n1")
	if err := l.Delete(ctx, []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	if !gone(rec.PID, rec.StartTime) || !gone(child, cst.startTime) {
		t.Errorf("after Delete: node alive %v, child alive %v", !gone(rec.PID, rec.StartTime), !gone(child, cst.startTime))
	}
}

func TestCapacity(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t, Config{HostCPUs: 2, CPUOvercommit: 3, HostMemoryMB: 1000, GPUs: []string{"0", "1", "2"}, DisableLimits: true})
	steps := []struct {
		in       provider.Instance
		resource string // "" means it fits
		free     int64
	}{
		{in: inst("a", 2, 400, 0)},
		{in: inst("b", 2, 400, 2)},
		{in: inst("c", 2, 400, 0), resource: "memory", free: 200},
		{in: inst("d", 1, 100, 2), resource: "gpu", free: 1},
		{in: inst("e", 1, 100, 1)},
		{in: inst("f", 2, 100, 0), resource: "cpu", free: 1},
	}
	for _, s := range steps {
		err := l.Create(ctx, []provider.Instance{s.in})
		var ce *provider.CapacityError
		switch {
		case s.resource == "" && err != nil:
			t.Errorf("Create(%s) = %v, want it to fit", s.in.ID, err)
		case s.resource != "" && (!errors.As(err, &ce) || ce.Resource != s.resource || ce.Free != s.free):
			t.Errorf("Create(%s) = %v, want CapacityError for %s with %d free", s.in.ID, err, s.resource, s.free)
		case ce != nil:
			t.Logf("%s: %v", s.in.ID, err)
		}
	}
	// GPUs are disjoint.
	if b, e := nodeEnv(t, l, "b")["CUDA_VISIBLE_DEVICES"], nodeEnv(t, l, "e")["CUDA_VISIBLE_DEVICES"]; b != "0,1" || e != "2" {
		t.Errorf("CUDA_VISIBLE_DEVICES: b=%q e=%q, want 0,1 and 2", b, e)
	}
	if n, _ := l.Capacity(ctx, provider.Size{VCPUs: 2, MemoryMB: 10}); n != 0 {
		t.Errorf("Capacity = %d, want 0", n)
	}
	if err := l.Delete(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Capacity(ctx, provider.Size{VCPUs: 1, MemoryMB: 100}); n != 3 {
		t.Errorf("Capacity after deleting a = %d, want 3 (vCPUs: 3 free; memory: 5 fit)", n)
	}
	if n, _ := l.Capacity(ctx, provider.Size{VCPUs: 1, GPUs: 1}); n != 0 {
		t.Errorf("GPU capacity = %d, want 0", n)
	}
	// A dead instance holds nothing.
	syscall.Kill(readRecord(t, l, "e").PID, syscall.SIGKILL)
	for end := time.Now().Add(10 * time.Second); ; {
		if n, _ := l.Capacity(ctx, provider.Size{GPUs: 1}); n == 1 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("dead instance still holds its GPU")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNoGPUHost(t *testing.T) {
	l := newLocal(t, Config{})
	err := l.Create(context.Background(), []provider.Instance{inst("g", 1, 64, 1)})
	var ce *provider.CapacityError
	if !errors.As(err, &ce) || ce.Resource != "gpu" || ce.Total != 0 {
		t.Fatalf("Create of a GPU size on a host without GPUs = %v, want a gpu CapacityError", err)
	}
	if want := "insufficient gpu for size S1: need 1 GPUs, 0 GPUs free of 0"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("disabled", func(t *testing.T) {
		l := newLocal(t, Config{DisableLimits: true})
		l.Create(ctx, []provider.Instance{inst("n1", 1, 64, 0)})
		if got := listStates(t, l)["n1"].Note; !strings.HasPrefix(got, "limits recorded only") {
			t.Errorf("note = %q", got)
		}
	})
	t.Run("cgroup", func(t *testing.T) {
		h := cgroup.Detect()
		if !h.CPU() || !h.Memory() {
			t.Skip("host lacks cgroup controllers: " + h.Note())
		}
		l := newLocal(t, Config{})
		if err := l.Create(ctx, []provider.Instance{inst("n1", 1, 128, 0)}); err != nil {
			t.Fatal(err)
		}
		rec := readRecord(t, l, "n1")
		if rec.Cgroup == nil || len(rec.Cgroup.Dirs) == 0 {
			t.Fatalf("no cgroup recorded: %+v", rec)
		}
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(rec.PID) + "/cgroup")
		if name := l.cgroupName("n1"); !strings.Contains(string(b), "/"+name+"\n") {
			t.Errorf("node's /proc/pid/cgroup lacks %s:\n%s", name, b)
		}
		want := map[string]string{"cpu.cfs_quota_us": "100000", "memory.limit_in_bytes": strconv.Itoa(128 << 20)}
		for _, d := range rec.Cgroup.Dirs {
			for f, v := range want {
				if got, err := os.ReadFile(filepath.Join(d, f)); err == nil && strings.TrimSpace(string(got)) != v {
					t.Errorf("%s/%s = %s, want %s", d, f, got, v)
				}
			}
		}
		if err := l.Delete(ctx, []string{"n1"}); err != nil {
			t.Fatal(err)
		}
		for _, d := range rec.Cgroup.Dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("cgroup %s remains after Delete", d)
			}
		}
	})
}

func TestParseNvidiaSMI(t *testing.T) {
	tests := []struct {
		out  string
		want []string
	}{
		{"", []string{}},
		{"GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n", []string{"0", "1"}},
		{"No devices were found\n", []string{}},
		{"GPU 0: A (UUID: GPU-x)\n  MIG 1g.10gb Device 0: (UUID: MIG-y)\n", []string{"0"}},
	}
	for _, tt := range tests {
		if got := parseNvidiaSMI(tt.out); !cmp.Equal(got, tt.want) {
			t.Errorf("parseNvidiaSMI(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}

// TestJobUIDsAndWorkDir: as root, each node gets a uid of the range that no
// other node holds, passed to its command; its work directory is under
// WorkDir (mode 0711); Delete kills what still runs as the uid and removes
// the work directory.
func TestJobUIDsAndWorkDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("job uids need root")
	}
	work := filepath.Join(t.TempDir(), "work")
	dir := t.TempDir()
	r := jobusertest.Block(t, 2, dir) // the provider finds both its own
	l := newLocal(t, Config{Dir: dir, WorkDir: work, JobUIDs: &r, Argv: append(sleeper[:2:2], sleeper[2], "{job_uid}")})
	ctx := context.Background()
	if err := l.Create(ctx, []provider.Instance{inst("n1", 1, 64, 0), inst("n2", 1, 64, 0)}); err != nil {
		t.Fatal(err)
	}
	uids := map[int]string{}
	for _, id := range []string{"n1", "n2"} {
		rec := readRecord(t, l, id)
		if !r.Contains(rec.JobUID) {
			t.Errorf("%s: job uid %d, want one of %s", id, rec.JobUID, r)
		}
		if other, dup := uids[rec.JobUID]; dup {
			t.Errorf("%s and %s share job uid %d", id, other, rec.JobUID)
		}
		uids[rec.JobUID] = id
		if got := rec.Argv[3]; got != strconv.Itoa(rec.JobUID) {
			t.Errorf("%s: {job_uid} expanded to %q, want %d", id, got, rec.JobUID)
		}
		fi, err := os.Stat(filepath.Join(work, id))
		if err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("%s: work dir %v, mode %v; want 0711", id, err, fi.Mode())
		}
	}
	err := l.Create(ctx, []provider.Instance{inst("n3", 1, 64, 0)})
	if err == nil || !strings.Contains(err.Error(), "job uid") {
		t.Errorf("third node with two uids: err %v, want every uid held", err)
	}

	// A job's process that left the node's session and cgroup.
	uid := readRecord(t, l, "n1").JobUID
	esc := exec.Command("sleep", "1000")
	esc.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if err := esc.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { esc.Wait(); close(waited) }()
	if err := l.Delete(ctx, []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		esc.Process.Kill()
		t.Error("a process of the node's job uid survived Delete")
	}
	if _, err := os.Stat(filepath.Join(work, "n1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir after Delete: %v, want gone", err)
	}
	if err := l.Create(ctx, []provider.Instance{inst("n3", 1, 64, 0)}); err != nil {
		t.Errorf("a deleted node's uid is not reused: %v", err)
	}
}
