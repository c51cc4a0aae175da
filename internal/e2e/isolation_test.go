package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

// hostileScript tries to read what a job must not reach and prints, per
// path, GOT (with what it read) or DENIED; then its environment's names
// between ENV-BEGIN and ENV-END. Unless marker is "", it leaves a process
// running in a session of its own, named by marker, to see whether it
// outlives the job.
func hostileScript(marker string, paths []string) string {
	var b strings.Builder
	b.WriteString(`try() { for f in "$@"; do if [ -d "$f" ]; then if ls -a "$f" >/dev/null 2>&1; then echo "GOT $f: $(ls -a "$f" | tr '\n' ' ')"; else echo "DENIED $f"; fi; elif c=$(head -c 200 "$f" 2>/dev/null) && [ -n "$c" ]; then echo "GOT $f: $c"; else echo "DENIED $f"; fi; done; }` + "\n")
	b.WriteString("try")
	for _, p := range paths {
		b.WriteString(" " + p) // globs expand as the job sees them
	}
	b.WriteString("\n")
	// The agent's (and every other process's) environment.
	b.WriteString(`for e in /proc/[0-9]*/environ; do if tr '\0' '\n' < "$e" | grep -q -e KUMO_CREDENTIAL_FILE -e KUMO_CONTROL_PLANE_URL -e KUMO_TEST_CP_SECRET; then echo "GOT $e"; fi; done 2>/dev/null` + "\n")
	b.WriteString("echo ENV-BEGIN; env | cut -d= -f1; echo ENV-END\n")
	if marker != "" {
		fmt.Fprintf(&b, "setsid sh -c 'sleep 1000; echo %s' </dev/null >/dev/null 2>&1 &\n", marker)
	}
	b.WriteString("echo hostile-done\n")
	return b.String()
}

// procsWith counts live processes whose command line holds marker (a
// string only this test's jobs carry).
func procsWith(marker string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), marker) {
			n++
		}
	}
	return n
}

// checkHostile asserts what a hostile job's log shows: nothing read (when
// kumo runs as root), no secret in it, and only the documented variables.
func checkHostile(t *testing.T, name, log string, secrets []string, allowed []string) {
	t.Helper()
	if !strings.Contains(log, "hostile-done") {
		t.Fatalf("%s did not finish its script:\n%s", name, log)
	}
	if os.Geteuid() == 0 {
		for line := range strings.Lines(log) {
			if strings.HasPrefix(line, "GOT ") {
				t.Errorf("%s read what it must not: %s", name, strings.TrimSpace(line))
			}
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(log, s) {
			t.Errorf("%s's log holds a secret (%.12s...)", name, s)
		}
	}
	_, rest, _ := strings.Cut(log, "ENV-BEGIN\n")
	envText, _, _ := strings.Cut(rest, "ENV-END")
	shell := []string{"PWD", "SHLVL", "_", "OLDPWD"} // set by the shell itself
	for n := range strings.Lines(envText) {
		n = strings.TrimSpace(n)
		if n != "" && !slices.Contains(allowed, n) && !slices.Contains(shell, n) {
			t.Errorf("%s's environment holds %s, which is not a documented job variable", name, n)
		}
	}
}

// TestJobsCannotReachKumo: hostile jobs on compute "local" and on a
// cluster node try to read the client config (with the owner token), the
// data directory, the database, the CA key, every node credential, another
// running job's files and the agent's environment. As root, all of it is
// refused; either way their environment holds only documented variables,
// a process they leave behind dies with them, and node job directories go
// once the jobs' artifacts are stored.
func TestJobsCannotReachKumo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Log("not root: jobs run as the test's user, so only the environment is checked")
	}
	t.Setenv("KUMO_TEST_CP_SECRET", "control-plane-env-secret")
	s := startServer(t, "", fastNodes...)
	data := filepath.Join(s.dir, "data")
	work := data + "-jobs"
	createCluster(t, s, "iso", 2, 2, "PT5M")
	waitFor(t, 60*time.Second, "two idle nodes", func() (bool, string) {
		c := getCompute(t, s, "iso")
		return c.Properties.Properties.NodeStateCounts.IdleNodeCount == 2, fmt.Sprintf("%+v", *c.Properties.Properties.NodeStateCounts)
	})

	// Victims: one running job on a node and one on local, each holding a
	// file of its own.
	submitJob(t, s, "victim-node", "iso", "echo victim-node-secret > mine.txt; echo ready; sleep 120")
	submitJob(t, s, "victim-local", "local", "echo victim-local-secret > mine.txt; echo ready; sleep 120")
	for _, v := range []string{"victim-node", "victim-local"} {
		waitFor(t, 30*time.Second, v+" to run", func() (bool, string) {
			return strings.Contains(jobLog(t, s, v), "ready"), string(getJob(t, s, v).Properties.Status)
		})
	}
	victimRuns := []string{getJob(t, s, "victim-node").Properties.RunID, getJob(t, s, "victim-local").Properties.RunID}

	nodeIDs, err := os.ReadDir(filepath.Join(data, "nodes"))
	if err != nil || len(nodeIDs) != 2 {
		t.Fatalf("node directories: %v, %v", nodeIDs, err)
	}
	secrets := []string{s.cfg.Token, "victim-node-secret", "victim-local-secret", "control-plane-env-secret", "PRIVATE KEY"}
	paths := []string{
		filepath.Join(s.dir, ".kumo", "config.json"), filepath.Join(s.dir, ".kumo"),
		data, filepath.Join(data, "kumo.db"), filepath.Join(data, "ca-key.pem"), filepath.Join(data, "server-key.pem"),
		filepath.Join(data, "nodes"), filepath.Join(data, "nodes", "*", "credential"),
		"../../../../*/credential", "../../../../../*/nodes/*/credential", "../../../../../data/nodes/*/credential",
		filepath.Join(work, "nodes"), filepath.Join(work, "local"), filepath.Join(work, "nodes", "*", "jobs", "*", "mine.txt"),
		filepath.Join(work, "local", "*", "mine.txt"),
	}
	for _, n := range nodeIDs {
		cred := filepath.Join(data, "nodes", n.Name(), "credential")
		b, err := os.ReadFile(cred)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(b)))
		paths = append(paths, cred, filepath.Join(work, "nodes", n.Name(), "jobs"))
		for _, run := range victimRuns {
			paths = append(paths, filepath.Join(work, "nodes", n.Name(), "jobs", run, "mine.txt"))
		}
		paths = append(paths, filepath.Join(work, "nodes", n.Name(), "jobs.journal"))
	}
	for _, run := range victimRuns {
		paths = append(paths, filepath.Join(work, "local", run, "mine.txt"), filepath.Join(work, "local", run))
	}

	// The paths are right: each is there, so DENIED means refused.
	mustExist := []string{filepath.Join(s.dir, ".kumo", "config.json"), filepath.Join(data, "kumo.db"), filepath.Join(data, "ca-key.pem"),
		filepath.Join(work, "local", victimRuns[1], "mine.txt")}
	for _, n := range nodeIDs {
		mustExist = append(mustExist, filepath.Join(data, "nodes", n.Name(), "credential"))
	}
	if m, _ := filepath.Glob(filepath.Join(work, "nodes", "*", "jobs", victimRuns[0], "mine.txt")); len(m) != 1 {
		t.Errorf("the node victim's file: found %q, want one", m)
	}
	for _, p := range mustExist {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a path the hostile jobs try is not there: %v", err)
		}
	}

	marker := "" // as another user, nothing would kill what it leaves
	if os.Geteuid() == 0 {
		marker = fmt.Sprintf("kumo-escapee-%d", time.Now().UnixNano())
	}
	script := hostileScript(marker, paths)
	submitJob(t, s, "hostile-local", "local", script)
	submitJob(t, s, "hostile-node", "iso", script) // on the other node
	common := []string{"PATH", "HOME", "LANG", "KUMO_RUN_ID", "AZUREML_RUN_ID", "CUDA_VISIBLE_DEVICES"}
	for name, allowed := range map[string][]string{"hostile-local": common, "hostile-node": append(common, "KUMO_NODE_ID", "KUMO_EVICTION_NOTICE_FILE")} {
		j := waitJob(t, s, name, 60*time.Second)
		log := jobLog(t, s, name)
		if j.Properties.Status != api.JobCompleted {
			t.Errorf("%s: %s %+v\n%s", name, j.Properties.Status, j.Properties.Error, log)
		}
		t.Logf("%s printed:\n%s", name, log)
		checkHostile(t, name, log, secrets, allowed)
	}
	if os.Geteuid() == 0 {
		waitFor(t, 10*time.Second, "the hostile jobs' leftover processes to be killed", func() (bool, string) {
			n := procsWith(marker)
			return n == 0, fmt.Sprintf("%d left", n)
		})
	}

	for _, v := range []string{"victim-node", "victim-local"} {
		if out, err := run(t, s.dir, "job", "cancel", v); err != nil {
			t.Fatalf("cancel %s: %v %s", v, err, out)
		}
		waitJob(t, s, v, 30*time.Second)
	}
	// Node job directories go once the control plane has the artifacts.
	waitFor(t, 30*time.Second, "node and local job directories to be removed", func() (bool, string) {
		left, _ := filepath.Glob(filepath.Join(work, "nodes", "*", "jobs", "*"))
		local, _ := filepath.Glob(filepath.Join(work, "local", "*"))
		left = append(left, local...)
		return len(left) == 0, strings.Join(left, " ")
	})
	for _, p := range []string{data, filepath.Join(data, "kumo.db"), filepath.Join(data, "ca-key.pem")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]os.FileMode{true: 0o700, false: 0o600}[fi.IsDir()]; fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
}

// TestLocalComputeOff: with --local-compute=off a job for compute "local"
// is refused with an ARM error and nothing is created.
func TestLocalComputeOff(t *testing.T) {
	s := startServer(t, "", "--local-compute=off")
	if !strings.Contains(s.out.String(), `Compute "local" is disabled`) {
		t.Errorf("kumo up does not say compute local is disabled:\n%s", s.out)
	}
	body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: "echo hi", ComputeID: "local"}}
	status, raw := s.request(context.Background(), "PUT", workspacePath+"/jobs/refused", body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(raw, &e); status != 400 || err != nil || e.Error.Code != "LocalComputeDisabled" {
		t.Errorf("submit to local: %d %s; want 400 LocalComputeDisabled", status, raw)
	}
	if status, raw := s.request(context.Background(), "GET", workspacePath+"/jobs/refused", nil); status != 404 {
		t.Errorf("refused job: GET answered %d %s, want 404", status, raw)
	}
}
