package agent

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kumo/internal/agentproto"
)

// TestGangLauncher runs node rank 1's part of a 2-node × 2-process
// PyTorch job through /bin/sh: each process sees its own RANK and
// LOCAL_RANK and the node's variables, writes its own log file, and the
// node's exit code is the failing process's.
func TestGangLauncher(t *testing.T) {
	g := &agentproto.GangSpec{NodeIDs: []string{"n0", "n1"}, Addresses: []string{"10.0.0.1", "10.0.0.2"},
		ProcessesPerNode: 2, Distribution: "PyTorch", MasterPort: 6105}
	env, cmd, err := gangEnv(g, "n1", `echo "$MASTER_ADDR:$MASTER_PORT $WORLD_SIZE $NODE_RANK $RANK $LOCAL_RANK"
		# Process 1 fails only once process 0 has logged, as the launcher then stops the others.
		if [ "$LOCAL_RANK" = 1 ]; then until grep -q . user_logs/std_log_node_1_process_0.txt 2>/dev/null; do sleep 0.05; done; fi
		exit $((LOCAL_RANK * 3))`)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := exec.Command("/bin/sh", "-c", cmd)
	c.Dir = dir
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as the runner starts it: its own process group
	for k, v := range env {
		c.Env = append(c.Env, k+"="+v)
	}
	c.Env = append(c.Env, "PATH="+os.Getenv("PATH"))
	out, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("exit = %v, want code 3 (process 1 exits 3); output:\n%s", err, out)
	}
	for p, want := range []string{"10.0.0.1:6105 4 1 2 0", "10.0.0.1:6105 4 1 3 1"} {
		b, err := os.ReadFile(filepath.Join(dir, "user_logs", "std_log_node_1_process_"+string(rune('0'+p))+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("process %d log = %q, want %q", p, got, want)
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("node output %q lacks process %d's %q", out, p, want)
		}
	}
	if _, _, err := gangEnv(g, "n9", "true"); err == nil {
		t.Error("a node not in the gang got an environment")
	}
}

func TestGangTFConfig(t *testing.T) {
	g := &agentproto.GangSpec{NodeIDs: []string{"n0", "n1"}, Addresses: []string{"a", "b"}, ProcessesPerNode: 2,
		Distribution: "TensorFlow", MasterPort: 7000, Workers: 3}
	tf, err := tfConfig(g, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Cluster map[string][]string
		Task    struct {
			Type  string
			Index int
		}
	}
	if err := json.Unmarshal([]byte(tf), &got); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Cluster["worker"], ",") != "a:7001,a:7002,b:7003" || strings.Join(got.Cluster["ps"], ",") != "b:7004" ||
		got.Task.Type != "ps" || got.Task.Index != 0 {
		t.Errorf("TF_CONFIG = %s", tf)
	}
}

// When one process fails, the launcher stops the others (which would wait
// for it for ever) and exits with the failed one's code.
func TestGangLauncherStopsTheOthers(t *testing.T) {
	_, cmd, err := gangEnv(&agentproto.GangSpec{NodeIDs: []string{"n0"}, Addresses: []string{"127.0.0.1"}, ProcessesPerNode: 2, MasterPort: 6105},
		"n0", `if [ "$LOCAL_RANK" = 1 ]; then exit 5; fi; sleep 600`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Dir = t.TempDir()
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as the runner starts it: its own process group
	out, err := c.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the launcher waited for the sleeping process; output:\n%s", out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
		t.Errorf("exit = %v, want code 5; output:\n%s", err, out)
	}
}
