package jobuser

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    Range
		wantErr string
	}{
		{in: "900000-999999", want: Range{900000, 999999}},
		{in: "5000-5000", want: Range{5000, 5000}},
		{in: "0-100", wantErr: "below 1000"},
		{in: "2000-1000", wantErr: "ends before"},
		{in: "1000-3000000000", wantErr: "above"},
		{in: "1000-2147483647", wantErr: "above"},
		{in: "1000", wantErr: "START-END"},
		{in: "a-b", wantErr: "START-END"},
		{in: strings.Repeat("9", 1000) + "-1", wantErr: "START-END"},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRange(%.20q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Errorf("ParseRange error echoes the whole input: %d bytes", len(err.Error()))
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		r            Range
		nodes, local Range
	}{
		{Range{900000, 999999}, Range{900000, 998975}, Range{998976, 999999}},
		{Range{1000, 1007}, Range{1000, 1005}, Range{1006, 1007}},
		{Range{1000, 1001}, Range{1000, 1000}, Range{1001, 1001}},
		{Range{1000, 1000}, Range{1000, 1000}, Range{1000, 1000}},
	}
	for _, tt := range tests {
		n, l := tt.r.Split()
		if n != tt.nodes || l != tt.local {
			t.Errorf("%v.Split() = %v, %v; want %v, %v", tt.r, n, l, tt.nodes, tt.local)
		}
	}
}

func TestFree(t *testing.T) {
	r := Range{2000, 2002}
	used := map[int]bool{}
	var got []int
	for {
		uid, ok := r.Free(func(u int) bool { return used[u] })
		if !ok {
			break
		}
		used[uid] = true
		got = append(got, uid)
	}
	if diff := cmp.Diff([]int{2000, 2001, 2002}, got); diff != "" {
		t.Errorf("uids handed out (-want +got):\n%s", diff)
	}
	delete(used, 2001)
	if uid, ok := r.Free(func(u int) bool { return used[u] }); !ok || uid != 2001 {
		t.Errorf("after freeing 2001: Free = %d, %v", uid, ok)
	}
}

func TestProcUIDMatches(t *testing.T) {
	status := func(state, uids string) string {
		return "Name:\tsleep\nState:\t" + state + "\nUid:\t" + uids + "\nGid:\t0\t0\t0\t0\n"
	}
	tests := []struct {
		status string
		want   bool
	}{
		{status("S (sleeping)", "910000\t910000\t910000\t910000"), true},
		{status("S (sleeping)", "0\t910000\t0\t0"), true},  // effective
		{status("S (sleeping)", "0\t0\t910000\t0"), true},  // saved
		{status("S (sleeping)", "0\t0\t0\t910000"), false}, // filesystem uid only
		{status("Z (zombie)", "910000\t910000\t910000\t910000"), false},
		{status("R (running)", "9100001\t9100001\t9100001\t9100001"), false},
	}
	for _, tt := range tests {
		if got := procUIDMatches(tt.status, "910000"); got != tt.want {
			t.Errorf("procUIDMatches(%q) = %v, want %v", tt.status, got, tt.want)
		}
	}
}

// TestKillAll: a process that left its process group and session still
// dies with its uid.
func TestKillAll(t *testing.T) {
	if !Enabled() {
		t.Skip("running as another uid needs root")
	}
	uid := testUID(t)
	var waited []chan struct{}
	for range 2 {
		cmd := exec.Command("sleep", "1000")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		waited = append(waited, done)
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
	}
	if n := len(Procs(uid)); n != 2 {
		t.Errorf("Procs before KillAll = %d processes, want 2", n)
	}
	if err := KillAll(uid); err != nil {
		t.Fatal(err)
	}
	for _, done := range waited {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a process of the uid survived KillAll")
		}
	}
	if err := KillAll(os.Getuid()); err == nil {
		t.Error("KillAll of this process's own uid: no error")
	}
}

// TestChownDoesNotFollowLinks: a link in a job's tree is re-owned itself;
// what it points to is not.
func TestChownDoesNotFollowLinks(t *testing.T) {
	if !Enabled() {
		t.Skip("chown needs root")
	}
	dir, outside := t.TempDir(), filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "sub", "link")); err != nil {
		t.Fatal(err)
	}
	id := testUID(t)
	u := User{UID: id, GID: id}
	if err := Chown(dir, u); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "sub"), filepath.Join(dir, "sub", "link")} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.UID || int(st.Gid) != u.GID {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, u.UID, u.GID)
		}
	}
	fi, _ := os.Stat(outside)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) == u.UID {
		t.Error("Chown followed a symbolic link out of the tree")
	}
}

func TestCheckReachable(t *testing.T) {
	base := t.TempDir()
	open, closed := filepath.Join(base, "open"), filepath.Join(base, "closed")
	for d, mode := range map[string]os.FileMode{open: 0o711, closed: 0o700} {
		if err := os.Mkdir(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(base), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := CheckReachable(filepath.Join(open, "jobs")); err != nil {
		t.Errorf("under a searchable directory: %v", err)
	}
	err := CheckReachable(filepath.Join(closed, "jobs"))
	if err == nil || !strings.Contains(err.Error(), closed) {
		t.Errorf("under a 0700 directory: err %v, want one naming %s", err, closed)
	}
}

// TestRemoveTemp: what the uid left in /tmp goes; what others own stays.
func TestRemoveTemp(t *testing.T) {
	if !Enabled() {
		t.Skip("chown needs root")
	}
	uid := testUID(t)
	tmp := t.TempDir()
	old := TempDirs
	TempDirs = []string{tmp}
	t.Cleanup(func() { TempDirs = old })
	mine, theirs := filepath.Join(tmp, "left-by-job"), filepath.Join(tmp, "someone-else")
	for _, p := range []string{filepath.Join(mine, "sub"), theirs} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(theirs, filepath.Join(tmp, "link-by-job")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{mine, filepath.Join(mine, "sub"), filepath.Join(tmp, "link-by-job")} {
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTemp(uid); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(tmp)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if diff := cmp.Diff([]string{"someone-else"}, left); diff != "" {
		t.Errorf("left in the temporary directory (-want +got):\n%s", diff)
	}
}

// TestSession reads a process's session ID: a child started with setsid
// leads its own session, and this process's is the kernel's.
func TestSession(t *testing.T) {
	want, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := Session(os.Getpid()); !ok || got != want {
		t.Errorf("Session(self) = %d, %v; want %d", got, ok, want)
	}
	cmd := exec.Command("sleep", "10")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if got, ok := Session(cmd.Process.Pid); !ok || got != cmd.Process.Pid {
		t.Errorf("Session(setsid child) = %d, %v; want its own pid %d", got, ok, cmd.Process.Pid)
	}
	if _, ok := Session(1 << 30); ok {
		t.Error("Session of a pid that does not exist reported ok")
	}
}

// testUID claims a uid for the test alone (see ClaimBlock), so that a
// second copy of this test running beside it never uses the same one.
func testUID(t *testing.T) int {
	t.Helper()
	owner := t.TempDir()
	r, err := ClaimBlock(Range{First: 910000, Last: 919999}, 1, owner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { KillAll(r.First); Release(r.First, owner) })
	return r.First
}
