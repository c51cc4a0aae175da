package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/jobuser"
	"kumo/internal/jobuser/jobusertest"
)

func TestJobEnv(t *testing.T) {
	tests := []struct {
		name string
		own  map[string]string
		set  map[string]string
		want []string
	}{
		{
			name: "defaults",
			want: []string{"HOME=/j", "LANG=C.UTF-8", "PATH=" + DefaultPath},
		},
		{
			name: "own variables may replace the defaults",
			own:  map[string]string{"PATH": "/opt/bin", "A": "1"},
			want: []string{"A=1", "HOME=/j", "LANG=C.UTF-8", "PATH=/opt/bin"},
		},
		{
			name: "kumo's variables win over the job's",
			own:  map[string]string{"KUMO_RUN_ID": "forged", "CUDA_VISIBLE_DEVICES": "0,1,2,3"},
			set:  map[string]string{"KUMO_RUN_ID": "r1", "AZUREML_RUN_ID": "r1", "CUDA_VISIBLE_DEVICES": ""},
			want: []string{"AZUREML_RUN_ID=r1", "CUDA_VISIBLE_DEVICES=", "HOME=/j", "KUMO_RUN_ID=r1", "LANG=C.UTF-8", "PATH=" + DefaultPath},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, JobEnv("/j", tt.own, tt.set)); diff != "" {
				t.Errorf("JobEnv (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNothingInherited: the process gets Spec.Env and nothing of this
// process's environment.
func TestNothingInherited(t *testing.T) {
	t.Setenv("KUMO_TEST_AGENT_SECRET", "agent-secret")
	c := newCollector("")
	env := JobEnv(t.TempDir(), map[string]string{"MINE": "1"}, nil)
	if _, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "env", Env: env, Output: c.output}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for line := range strings.Lines(c.String(Stdout)) {
		k, _, _ := strings.Cut(line, "=")
		if k != "PWD" && k != "SHLVL" && k != "_" && k != "OLDPWD" { // set by the shell itself
			names = append(names, k)
		}
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"HOME", "LANG", "MINE", "PATH"}, names); diff != "" {
		t.Errorf("job environment names (-want +got):\n%s", diff)
	}
}

// TestRunAsUser: as root, the job runs as Spec.User with no supplementary
// groups, owns its directory and extracted code, and a process it left
// running outside its process group is killed when it ends.
func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	u := jobusertest.User(t)
	dir := jobDir(t)
	c := newCollector("")
	// setsid puts the sleeper in a session of its own, out of the group.
	left := "/tmp/kumo-runner-test-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	t.Cleanup(func() { os.Remove(left) })
	cmd := `id -u; id -g; id -G; setsid sleep 1000 </dev/null >/dev/null 2>&1 & mkdir outputs && echo x > outputs/made.txt; echo x > ` + left
	res, err := Run(context.Background(), Spec{Dir: dir, Command: cmd, Env: JobEnv(dir, nil, nil), User: &u, Output: c.output})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("job failed: %+v, stderr %q", res, c.String(Stderr))
	}
	id := strconv.Itoa(u.UID)
	if got, want := c.String(Stdout), id+"\n"+id+"\n"+id+"\n"; got != want {
		t.Errorf("uid, gid, groups = %q, want %q", got, want)
	}
	if pids := jobuser.Procs(u.UID); len(pids) > 0 {
		jobuser.KillAll(u.UID)
		t.Errorf("processes of the job's uid left after it ended: %v", pids)
	}
	if _, err := os.Lstat(left); !os.IsNotExist(err) {
		t.Errorf("the job's file in /tmp outlived it: %v", err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "outputs", "made.txt")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.UID {
			t.Errorf("%s owned by %d, want %d", p, st.Uid, u.UID)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("job directory mode %v, want 0700", fi.Mode().Perm())
	}

	// Reclaim takes the directory back and drops a planted link.
	if err := os.RemoveAll(filepath.Join(dir, "logs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "logs")); err != nil {
		t.Fatal(err)
	}
	if err := Reclaim(dir, &u); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() {
		t.Errorf("after Reclaim the job directory is owned by %d", st.Uid)
	}
	if _, err := os.Lstat(filepath.Join(dir, "logs")); !os.IsNotExist(err) {
		t.Errorf("planted logs link after Reclaim: %v, want removed", err)
	}
}
