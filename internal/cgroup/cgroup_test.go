package cgroup

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as a helper process that allocates memory.
func TestMain(m *testing.M) {
	if n := os.Getenv("KUMO_CGROUP_TEST_ALLOC_MB"); n != "" {
		mb, _ := strconv.Atoi(n)
		io.ReadAll(io.LimitReader(os.Stdin, 1)) // wait until placed in the group
		buf := make([]byte, mb<<20)
		for i := range len(buf) / 4096 {
			buf[i*4096] = 1
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestDetectHost(t *testing.T) {
	h := Detect()
	t.Logf("mode=%s cpu=%v memory=%v note=%q", h.Mode(), h.CPU(), h.Memory(), h.Note())
	if got, want := h.Note() == "", h.CPU() && h.Memory(); got != want {
		t.Errorf("note empty = %v, want %v (cpu %v, memory %v)", got, want, h.CPU(), h.Memory())
	}
	if h.Mode() == ModeNone && !strings.HasPrefix(h.Note(), "limits recorded only: ") {
		t.Errorf("note = %q, want prefix %q", h.Note(), "limits recorded only: ")
	}
}

func TestDetectFiles(t *testing.T) {
	tests := []struct {
		name       string
		cgroup     string
		mountinfo  string // %D is replaced by the temp dir
		files      []string
		wantMode   Mode
		wantNote   string
		wantCPU    bool
		wantMemory bool
	}{
		{
			name:      "nothing mounted",
			cgroup:    "0::/\n",
			mountinfo: "",
			wantMode:  ModeNone,
			wantNote:  "limits recorded only: cgroup v2 not mounted and cgroup v1 cpu controller not mounted and cgroup v1 memory controller not mounted",
		},
		{
			name:   "v2 without cpu and memory, v1 cpu only",
			cgroup: "2:cpu,cpuacct:/a\n0::/\n",
			mountinfo: "40 30 0:37 / %D/unified rw - cgroup2 cgroup2 rw\n" +
				"31 30 0:28 / %D/cpu rw - cgroup cgroup rw,cpu,cpuacct\n",
			files:    []string{"unified/cgroup.controllers:hugetlb", "cpu/a/cpu.cfs_quota_us:-1"},
			wantMode: ModeV1,
			wantNote: "memory limit recorded only: cgroup v2 not delegated (controllers: hugetlb) and cgroup v1 memory controller not mounted",
			wantCPU:  true,
		},
		{
			name:   "v1 both, memory mount of a sub-tree",
			cgroup: "4:memory:/outer/inner\n1:cpu:/\n0::/\n",
			mountinfo: "31 30 0:28 / %D/cpu rw - cgroup cgroup rw,cpu\n" +
				"34 30 0:31 /outer %D/memory rw - cgroup cgroup rw,memory\n",
			files:      []string{"cpu/cpu.cfs_quota_us:-1", "memory/inner/memory.limit_in_bytes:9"},
			wantMode:   ModeV1,
			wantCPU:    true,
			wantMemory: true,
		},
		{
			name:      "v1 memory lacks its file",
			cgroup:    "4:memory:/\n1:cpu:/\n",
			mountinfo: "31 30 0:28 / %D/cpu rw - cgroup cgroup rw,cpu\n34 30 0:31 / %D/memory rw - cgroup cgroup rw,memory\n",
			files:     []string{"cpu/cpu.cfs_quota_us:-1", "memory/tasks:"},
			wantMode:  ModeV1,
			wantNote:  "memory limit recorded only: cgroup v2 not mounted and cgroup v1 memory controller lacks memory.limit_in_bytes",
			wantCPU:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			for _, f := range tt.files {
				name, content, _ := strings.Cut(f, ":")
				p := filepath.Join(d, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cg := filepath.Join(d, "self-cgroup")
			mi := filepath.Join(d, "self-mountinfo")
			os.WriteFile(cg, []byte(tt.cgroup), 0o644)
			os.WriteFile(mi, []byte(strings.ReplaceAll(tt.mountinfo, "%D", d)), 0o644)

			h := detect(cg, mi)
			if h.Mode() != tt.wantMode || h.Note() != tt.wantNote || h.CPU() != tt.wantCPU || h.Memory() != tt.wantMemory {
				t.Errorf("got mode %s cpu %v memory %v note %q\nwant mode %s cpu %v memory %v note %q",
					h.Mode(), h.CPU(), h.Memory(), h.Note(), tt.wantMode, tt.wantCPU, tt.wantMemory, tt.wantNote)
			}
		})
	}
}

// startGated starts cmd with a stdin pipe that the helper reads before doing
// its work, adds it to g, then releases it.
func startGated(t *testing.T, g *Group, cmd *exec.Cmd) {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		if cmd.ProcessState == nil {
			cmd.Wait()
		}
	})
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("\n"))
	in.Close()
}

// newGroup creates a group named for this test and this process, and
// removes it when the test ends, pass or fail (after the test's processes,
// whose cleanups run first), failing the test if a directory stays.
func newGroup(t *testing.T, h *Host, lim Limits) *Group {
	t.Helper()
	name := "kumo-test-" + strings.ToLower(t.Name()) + "-" + strconv.Itoa(os.Getpid())
	g, err := h.New(name, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
		for _, d := range g.Dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("group dir %s still there after Remove (stat err %v)", d, err)
			}
		}
	})
	return g
}

// TestCPUThrottled checks from the group's own counters that the kernel
// enforces a CPU limit. The quota is the smallest the kernel takes (1 ms per
// 100 ms), so a busy loop is throttled in any period in which it runs for
// 1 ms, however loaded the host is; nothing depends on how fast it runs.
func TestCPUThrottled(t *testing.T) {
	h := Detect()
	if !h.CPU() {
		t.Skip("host lacks a usable cpu controller: " + h.Note())
	}
	g := newGroup(t, h, Limits{CPUs: 0.001})
	cmd := exec.Command("/bin/sh", "-c", "read _; while :; do :; done")
	startGated(t, g, cmd)

	deadline := time.Now().Add(time.Minute)
	for {
		st, err := g.CPUStat()
		if err != nil {
			t.Fatal(err)
		}
		if st.Throttled > 0 {
			if st.Throttled > st.Periods {
				t.Errorf("cpu.stat: %d throttled periods of %d", st.Throttled, st.Periods)
			}
			t.Logf("cpu.stat: %+v", st)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("busy loop under a 1 ms per 100 ms limit never throttled: %+v", st)
		}
		time.Sleep(20 * time.Millisecond) // poll cpu.stat; the kernel gives no event
	}
}

func TestMemoryLimitKills(t *testing.T) {
	h := Detect()
	if !h.Memory() {
		t.Skip("host lacks a usable memory controller: " + h.Note())
	}
	g := newGroup(t, h, Limits{MemoryBytes: 32 << 20})
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "KUMO_CGROUP_TEST_ALLOC_MB=256")
	startGated(t, g, cmd)
	err := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("allocating 256 MiB under a 32 MiB limit: got %v, want killed by SIGKILL", err)
	}
}

func TestNewRejectsBadName(t *testing.T) {
	h := Detect()
	for _, name := range []string{"", ".", "..", "a/b"} {
		if _, err := h.New(name, Limits{}); err == nil {
			t.Errorf("New(%q) = nil error, want error", name)
		}
	}
}

func TestRemoveEmpty(t *testing.T) {
	if err := (&Group{}).Remove(); err != nil {
		t.Errorf("Remove of empty group: %v", err)
	}
	if err := (&Group{}).Add(os.Getpid()); err != nil {
		t.Errorf("Add to empty group: %v", err)
	}
}
