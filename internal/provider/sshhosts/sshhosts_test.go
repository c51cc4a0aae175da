package sshhosts

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/internal/provider"
	"kumo/internal/provider/providertest"
	"kumo/internal/provider/sshhosts/sshdtest"
)

// TestMain lets this test binary stand in for kumo on the hosts: copied
// there and run as `kumo agent ...`, it records its arguments and waits.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		cred := ""
		for _, a := range os.Args[2:] {
			if f, ok := strings.CutPrefix(a, "--credential-file="); ok {
				b, _ := os.ReadFile(f)
				cred = string(b)
			}
		}
		os.WriteFile("args.txt", []byte(strings.Join(os.Args[1:], "\n")+"\ncredential="+cred+"\nEXTRA="+os.Getenv("EXTRA")+"\nKUMO_NODE_ID="+os.Getenv("KUMO_NODE_ID")+"\n"), 0o600)
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// newProvider starts an sshd of its own on 127.0.0.1 and returns a
// provider for it, its host directory and the sshd.
func newProvider(t *testing.T, edit func(*Host)) (*Provider, string, *sshdtest.SSHD) {
	t.Helper()
	user, home := sshdtest.NewUser(t)
	s := sshdtest.Start(t, sshdtest.Options{Listen: "127.0.0.1:0", User: user})
	remote := filepath.Join(home, ".kumo-agent")
	h := Host{Name: "h1", Address: s.Addr, User: s.User, KeyFile: s.KeyFile, HostKey: s.HostKey, Dir: remote, VCPUs: 8, MemoryGB: 4}
	if edit != nil {
		edit(&h)
	}
	p, err := New(Config{Dir: t.TempDir(), Hosts: []Host{h}, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		got, _ := p.List(context.Background())
		var ids []string
		for _, st := range got {
			ids = append(ids, st.ID)
		}
		p.Delete(context.Background(), ids)
		p.Close()
	})
	return p, remote, s
}

// agentArgs waits for the stand-in agent of node id to have started and
// returns what it recorded.
func agentArgs(t *testing.T, remote, id string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(remote, "nodes", id, "work", "args.txt"))
		if len(b) > 0 || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(10 * time.Millisecond) // the agent writes it when it starts
	}
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider {
		p, _, _ := newProvider(t, nil)
		return p
	})
}

func TestAgentFilesAndRelease(t *testing.T) {
	p, remote, _ := newProvider(t, nil)
	ctx := context.Background()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("CA PEM"), 0o644)
	in := provider.Instance{ID: "n1", Compute: "c", Size: provider.Size{Name: "S", VCPUs: 2, MemoryMB: 1024},
		Agent: provider.AgentConfig{URL: "https://10.0.0.1:8443", CAFile: ca, Credential: "top-secret", Env: map[string]string{"EXTRA": "it's here"}}}
	if err := p.Create(ctx, []provider.Instance{in}); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(remote, "nodes", "n1")
	args := agentArgs(t, remote, "n1")
	for _, want := range []string{"--node-id=n1", "--url=https://10.0.0.1:8443", "--ca-file=", "credential=top-secret\n", "EXTRA=it's here\n", "KUMO_NODE_ID=n1\n"} {
		if !strings.Contains(args, want) {
			t.Errorf("agent args %q lack %q", args, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(node, "credential")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file: %v %v, want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(node, "ca.pem")); string(b) != "CA PEM" {
		t.Errorf("ca.pem = %q, want the CA file's content", b)
	}
	rec, _ := os.ReadFile(filepath.Join(p.cfg.Dir, "n1.json"))
	if strings.Contains(string(rec), "top-secret") {
		t.Errorf("local record holds the credential: %s", rec)
	}
	// The executable is copied once and checked by hash.
	exe, _ := os.ReadFile(p.cfg.Executable)
	if got, _ := os.ReadFile(filepath.Join(remote, "bin", "kumo")); string(got) != string(exe) {
		t.Errorf("bin/kumo differs from the executable (%d vs %d bytes)", len(got), len(exe))
	}
	// The host has 4 GiB; 1 GiB is held.
	big := in
	big.ID, big.Size.MemoryMB = "n2", 3*1024+1
	err := p.Create(ctx, []provider.Instance{big})
	var ce *provider.CapacityError
	if !errors.As(err, &ce) {
		t.Errorf("Create over the host's memory = %v, want a *CapacityError", err)
	}
	if n, _ := p.Capacity(ctx, in.Size); n != 3 {
		t.Errorf("Capacity = %d, want 3 (8 vCPUs, 4 GiB; one node of 2 vCPUs, 1 GiB held)", n)
	}
	pid, _ := os.ReadFile(filepath.Join(node, "pid"))
	if err := p.Delete(ctx, []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(node); !os.IsNotExist(err) {
		t.Errorf("node directory after Delete: %v, want it removed", err)
	}
	// A zombie (nothing may reap it here) has no command line.
	if b, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/cmdline"); len(b) > 0 {
		t.Errorf("agent %s still runs after Delete", pid)
	}
}

func TestHostDownMakesNodesStopped(t *testing.T) {
	p, remote, s := newProvider(t, nil)
	ctx := context.Background()
	in := provider.Instance{ID: "n1", Compute: "c", Size: providertest.Size, Agent: provider.AgentConfig{URL: "https://127.0.0.1:1", Credential: "x"}}
	if err := p.Create(ctx, []provider.Instance{in}); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.List(ctx); len(got) != 1 || got[0].State != provider.StateRunning || got[0].Address != "127.0.0.1" {
		t.Fatalf("List = %+v, want n1 Running at 127.0.0.1", got)
	}
	s.Stop()
	got, err := p.List(ctx)
	if err != nil || len(got) != 1 || got[0].State != provider.StateStopped || !strings.Contains(got[0].Reason, "host h1") {
		t.Fatalf("List with sshd down = %+v, %v; want n1 Stopped, naming host h1", got, err)
	}
	// Backing off: no dial, no room.
	if n, _ := p.Capacity(ctx, in.Size); n != 0 {
		t.Errorf("Capacity with the host down = %d, want 0", n)
	}
	if err := p.Delete(ctx, []string{"n1"}); err != nil {
		t.Errorf("Delete with the host down: %v", err)
	}
	if got, _ := p.List(ctx); len(got) != 0 {
		t.Errorf("after Delete, List = %+v, want none", got)
	}
	// Once the host answers again, the agent is stopped and its files go.
	node := filepath.Join(remote, "nodes", "n1")
	if _, err := os.Stat(node); err != nil {
		t.Fatalf("n1's files went while the host was down: %v", err)
	}
	sshdtest.Start(t, sshdtest.Options{Listen: s.Addr, User: s.User, HostKeyFrom: s})
	for p.hosts[0].failures > 0 && time.Now().Before(p.hosts[0].retryAt.Add(5*time.Second)) {
		p.List(ctx)
		time.Sleep(100 * time.Millisecond) // the backoff ends on the clock
	}
	if _, err := os.Stat(node); !os.IsNotExist(err) {
		t.Errorf("n1's files after the host answered again: %v, want them removed", err)
	}
}

func TestFactorySettings(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("not a key"), 0o600)
	hosts := func(h map[string]any) string { b, _ := json.Marshal([]any{h}); return string(b) }
	tests := []struct {
		name     string
		settings map[string]string
		want     string
	}{
		{"no hosts", map[string]string{}, "hosts: at least one"},
		{"unknown setting", map[string]string{"colour": "x"}, "setting colour"},
		{"unknown host field", map[string]string{"hosts": hosts(map[string]any{"adress": "x"})}, "unknown field"},
		{"no address", map[string]string{"hosts": hosts(map[string]any{"user": "u"})}, "hosts[0].address: required"},
		{"no host key", map[string]string{"hosts": hosts(map[string]any{"address": "h", "user": "u", "key_file": key})}, "hosts[0].host_key: required"},
		{"no capacity", map[string]string{"hosts": hosts(map[string]any{"address": "h", "user": "u", "key_file": key, "host_key": "x"})}, "hosts[0].vcpus"},
		{"bad key", map[string]string{"hosts": hosts(map[string]any{"address": "h", "user": "u", "key_file": key, "host_key": "x", "vcpus": 1, "memory_gb": 1})}, "hosts[0].key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Factory(provider.Params{DataDir: t.TempDir(), Settings: tt.settings})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Factory = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestRestartAndOutdatedExecutable: a new provider value on the same
// directory lists and deletes what an old one created, and replaces an
// outdated kumo on the host before starting the next node.
func TestRestartAndOutdatedExecutable(t *testing.T) {
	p1, remote, _ := newProvider(t, nil)
	ctx := context.Background()
	in := provider.Instance{ID: "n1", Compute: "c", Size: providertest.Size, Agent: provider.AgentConfig{URL: "https://127.0.0.1:1", Credential: "x"}}
	if err := p1.Create(ctx, []provider.Instance{in}); err != nil {
		t.Fatal(err)
	}
	p1.Close()
	agentArgs(t, remote, "n1")
	bin := filepath.Join(remote, "bin", "kumo")
	if err := os.WriteFile(bin+".old", []byte("#!/bin/sh\necho outdated\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".old", bin); err != nil { // as an older kumo copied there would be
		t.Fatal(err)
	}
	p2, err := New(p1.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if got, _ := p2.List(ctx); len(got) != 1 || got[0].ID != "n1" || got[0].State != provider.StateRunning {
		t.Fatalf("new provider's List = %+v, want n1 Running", got)
	}
	in.ID = "n2"
	if err := p2.Create(ctx, []provider.Instance{in}); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.ReadFile(p2.cfg.Executable)
	if got, _ := os.ReadFile(bin); string(got) != string(exe) {
		t.Errorf("outdated bin/kumo was not replaced (%d bytes, want %d)", len(got), len(exe))
	}
	if err := p2.Delete(ctx, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := p2.List(ctx); len(got) != 0 {
		t.Errorf("after Delete, List = %+v", got)
	}
}

// TestHostKeyPinned: a host presenting another key than the pinned one is
// refused, and its node is not created.
func TestHostKeyPinned(t *testing.T) {
	other := sshdtest.Start(t, sshdtest.Options{Listen: "127.0.0.1:0"})
	p, _, _ := newProvider(t, func(h *Host) { h.HostKey = other.HostKey })
	in := provider.Instance{ID: "n1", Compute: "c", Size: providertest.Size, Agent: provider.AgentConfig{URL: "https://127.0.0.1:1", Credential: "x"}}
	err := p.Create(context.Background(), []provider.Instance{in})
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("Create against a host with another key = %v, want a host key mismatch", err)
	}
	if got, _ := p.List(context.Background()); len(got) != 0 {
		t.Errorf("List = %+v, want none", got)
	}
}

func TestHostRoom(t *testing.T) {
	cpu := provider.Size{Name: "Standard_D2_v2", VCPUs: 2, MemoryMB: 7 * 1024}
	gpu := provider.Size{Name: "Standard_NC6", VCPUs: 6, MemoryMB: 56 * 1024, GPUs: 1}
	held := func(s provider.Size, gpus ...int) *record {
		return &record{Instance: provider.Instance{Size: s}, GPUs: gpus}
	}
	tests := []struct {
		name     string
		host     Host
		size     provider.Size
		held     []*record
		want     int
		wantGPUs []int
	}{
		{"cpu bound", Host{VCPUs: 5, MemoryGB: 64}, cpu, nil, 2, []int{}},
		{"memory bound", Host{VCPUs: 64, MemoryGB: 15}, cpu, nil, 2, []int{}},
		{"held counts", Host{VCPUs: 4, MemoryGB: 64}, cpu, []*record{held(cpu)}, 1, []int{}},
		{"full", Host{VCPUs: 4, MemoryGB: 64}, cpu, []*record{held(cpu), held(cpu)}, 0, nil},
		{"gpus handed out whole", Host{VCPUs: 24, MemoryGB: 256, GPUs: 2}, gpu, []*record{held(gpu, 0)}, 1, []int{1}},
		{"no gpu left", Host{VCPUs: 24, MemoryGB: 256, GPUs: 1}, gpu, []*record{held(gpu, 0)}, 0, nil},
		{"size not offered", Host{VCPUs: 24, MemoryGB: 256, Sizes: []string{"Standard_D4_v2"}}, cpu, nil, 0, nil},
		{"sizes only: one at a time", Host{Sizes: []string{"standard_d2_v2"}}, cpu, nil, 1, []int{}},
		{"sizes only: busy", Host{Sizes: []string{"Standard_D2_v2"}}, cpu, []*record{held(cpu)}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &host{Host: tt.host}
			n, gpus := h.room(tt.size, tt.held)
			if n != tt.want || len(gpus) != len(tt.wantGPUs) || (len(gpus) > 0 && gpus[0] != tt.wantGPUs[0]) {
				t.Errorf("room = %d, GPUs %v; want %d, GPUs %v", n, gpus, tt.want, tt.wantGPUs)
			}
		})
	}
}
