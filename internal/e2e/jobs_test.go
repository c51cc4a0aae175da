package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kumo/api"
)

// lockedBuffer is a bytes.Buffer safe to read while a process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// alternating is a command writing n lines to stdout and to stderr in
// turn, and the std_log it should leave.
func alternating(n int) (command, want string) {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "out %d\nerr %d\n", i, i)
	}
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`, n), b.String()
}

// TestJobListNewestFirstAndFilters: kumo job list shows the newest job
// first with its display name, and --status, --compute and --max-results
// narrow it.
func TestJobListNewestFirstAndFilters(t *testing.T) {
	s := startServer(t, "")
	for _, args := range [][]string{
		{"--name", "first", "--command", "exit 3"},
		{"--name", "second", "--command", "true", "--display-name", "two"},
		{"--name", "third", "--command", "true"},
	} {
		r := kumoCLI(t, s.dir, append([]string{"job", "submit", "--compute", "local"}, args...)...)
		if r.code != 0 || r.stdout != args[1]+"\n" {
			t.Fatalf("job submit %s: exit %d, stdout %q, stderr %q", args[1], r.code, r.stdout, r.stderr)
		}
		waitJob(t, s, args[1], 60*time.Second)
	}
	names := func(table string) []string {
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
			got = append(got, strings.Fields(line)[0])
		}
		return got
	}
	tests := []struct {
		args      []string
		wantNames []string
	}{
		{[]string{"job", "list"}, []string{"third", "second", "first"}},
		{[]string{"job", "list", "--status", "Failed"}, []string{"first"}},
		{[]string{"job", "list", "--status", "completed,failed", "--compute", "azureml:local"}, []string{"third", "second", "first"}},
		{[]string{"job", "list", "--max-results", "2"}, []string{"third", "second"}},
		{[]string{"job", "list", "--compute", "cpu-cluster"}, nil},
	}
	for _, tt := range tests {
		r := kumoCLI(t, s.dir, tt.args...)
		if r.code != 0 {
			t.Errorf("kumo %s: exit %d, stderr %q", strings.Join(tt.args, " "), r.code, r.stderr)
			continue
		}
		if !strings.HasPrefix(r.stdout, "NAME ") || !strings.Contains(strings.SplitN(r.stdout, "\n", 2)[0], "DISPLAY NAME") {
			t.Errorf("kumo %s: header lacks DISPLAY NAME:\n%s", strings.Join(tt.args, " "), r.stdout)
		}
		if got := names(r.stdout); fmt.Sprint(got) != fmt.Sprint(tt.wantNames) {
			t.Errorf("kumo %s: jobs %v, want %v\n%s", strings.Join(tt.args, " "), got, tt.wantNames, r.stdout)
		}
	}
	r := kumoCLI(t, s.dir, "job", "list")
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "second ") && !strings.Contains(line, " two ") {
			t.Errorf("second's row lacks its display name: %q", line)
		}
	}
	r = kumoCLI(t, s.dir, "job", "list", "-o", "json", "--max-results", "1")
	var jobs []api.JobResource
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil || len(jobs) != 1 || jobs[0].Name != "third" {
		t.Errorf("job list -o json --max-results 1: %v %q", err, r.stdout)
	}
	r = kumoCLI(t, s.dir, "job", "list", "--status", "Done")
	if r.code == 0 || !strings.Contains(r.stderr, `status "Done" is not a job status`) {
		t.Errorf("job list --status Done: exit %d, stderr %q; want a failure naming the bad status", r.code, r.stderr)
	}
}

// TestJobStreamWaitsInQueue: --stream says where a queued job stands and
// why, names the job on stderr, and keeps stdout for the job's output,
// which keeps stdout and stderr lines in the order written. kumo job
// stream NAME follows an existing job the same way.
func TestJobStreamWaitsInQueue(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "one", 0, 1, "PT30S")
	submitJob(t, s, "blocker", "one", "sleep 300")
	waitFor(t, 60*time.Second, "blocker to run", func() (bool, string) {
		st := getJob(t, s, "blocker").Properties.Status
		return st == api.JobRunning, string(st)
	})

	command, want := alternating(300)
	cmd := exec.Command(kumo, "job", "submit", "--compute", "one", "--name", "waiter", "--stream", "--command", command)
	cmd.Dir = s.dir
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	waitFor(t, 30*time.Second, "the queue position on stderr", func() (bool, string) {
		return strings.Contains(stderr.String(), "Queued: position 1 on one: MaxNodesReached: "), stderr.String()
	})
	if !strings.HasPrefix(stderr.String(), "RunId: waiter\n") {
		t.Errorf("stderr does not start by naming the job:\n%s", stderr.String())
	}
	if stdout.String() != "" {
		t.Errorf("stdout while queued = %q, want nothing", stdout.String())
	}
	if r := kumoCLI(t, s.dir, "job", "cancel", "blocker"); r.code != 0 {
		t.Fatalf("cancel blocker: exit %d %s", r.code, r.stderr)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("job submit --stream: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("job submit --stream did not end\nstderr:\n%s", stderr.String())
	}
	if stdout.String() != want {
		t.Errorf("--stream stdout is not the job's output in write order; first lines:\n%.200s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "Status: Completed") {
		t.Errorf("stderr lacks the summary:\n%s", stderr.String())
	}

	r := kumoCLI(t, s.dir, "job", "stream", "waiter")
	if r.code != 0 || r.stdout != want || !strings.HasPrefix(r.stderr, "RunId: waiter\n") {
		t.Errorf("job stream waiter: exit %d, stdout %.80q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = kumoCLI(t, s.dir, "job", "stream", "blocker")
	if r.code == 0 || !strings.Contains(r.stderr, "Status: Canceled") || !strings.Contains(r.stderr, "Error: job blocker Canceled") {
		t.Errorf("job stream blocker: exit %d, stderr %q; want a failure saying Canceled", r.code, r.stderr)
	}
	r = kumoCLI(t, s.dir, "job", "stream", "nope")
	if r.code == 0 || !strings.Contains(r.stderr, "ResourceNotFound") {
		t.Errorf("job stream nope: exit %d, stderr %q; want ResourceNotFound", r.code, r.stderr)
	}
}

// TestStdLogOrder: a job's log keeps its stdout and stderr lines in the
// order it wrote them, on a cluster node (through the agent) and on local.
func TestStdLogOrder(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "c1", 0, 1, "PT30S")
	command, want := alternating(1000)
	for _, compute := range []string{"local", "c1"} {
		name := "order-" + compute
		r := kumoCLI(t, s.dir, "job", "submit", "--compute", compute, "--name", name, "--command", "echo A; echo B >&2; "+command)
		if r.code != 0 {
			t.Fatalf("submit on %s: exit %d %s", compute, r.code, r.stderr)
		}
		if j := waitJob(t, s, name, 90*time.Second); j.Properties.Status != api.JobCompleted {
			t.Fatalf("%s: %s %+v", name, j.Properties.Status, j.Properties.Error)
		}
		r = kumoCLI(t, s.dir, "job", "logs", name)
		if r.code != 0 || r.stdout != "A\nB\n"+want {
			t.Errorf("job logs %s: exit %d, output out of order; first lines:\n%.200s", name, r.code, r.stdout)
		}
	}
}

// TestJobOutputsAndSet: ${{outputs.NAME}} names a folder made before the
// command starts and kept with the job; --set overrides fields of the
// job YAML; outputs kumo cannot keep are refused with a clear error.
func TestJobOutputsAndSet(t *testing.T) {
	s := startServer(t, "")
	dir := filepath.Join(s.dir, "proj")
	if err := mkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("job.yml", `$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: echo "$GREETING" > ${{outputs.model}}/greeting.txt && echo wrote ${{outputs.model}}
compute: azureml:cpu-cluster
display_name: original
environment_variables: {GREETING: hello}
outputs:
  model:
    type: uri_folder
    mode: rw_mount
`)
	r := kumoCLI(t, dir, "job", "create", "-f", "job.yml", "--name", "out1", "--stream",
		"--set", "compute=azureml:local", "--set", "environment_variables.GREETING=bonjour", "--set", "display_name=renamed")
	if r.code != 0 || r.stdout != "wrote outputs/model\n" {
		t.Fatalf("job create --set --stream: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = kumoCLI(t, dir, "job", "show", "out1")
	if !strings.Contains(r.stdout, "Display name: renamed") || !strings.Contains(r.stdout, "Compute:      local") {
		t.Errorf("job show out1 lacks the --set fields:\n%s", r.stdout)
	}
	r = kumoCLI(t, dir, "job", "show", "out1", "-o", "json")
	var j api.JobResource
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatal(err)
	}
	if o := j.Properties.Outputs["model"]; o == nil || o.JobOutputType != "uri_folder" || o.URI != "outputs/model" {
		t.Errorf("job JSON outputs = %+v, want model as a uri_folder at outputs/model", j.Properties.Outputs)
	}
	dl := t.TempDir()
	if r := kumoCLI(t, dir, "job", "download", "out1", "--download-path", dl); r.code != 0 {
		t.Fatalf("download: exit %d %s", r.code, r.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(dl, "outputs", "model", "greeting.txt")); err != nil || string(got) != "bonjour\n" {
		t.Errorf("downloaded outputs/model/greeting.txt = %q, %v; want bonjour", got, err)
	}

	write("mlflow.yml", "command: echo ${{outputs.m}}\ncompute: local\noutputs: {m: {type: mlflow_model}}\n")
	r = kumoCLI(t, dir, "job", "create", "-f", "mlflow.yml")
	if r.code == 0 || !strings.Contains(r.stderr, `output m: type "mlflow_model" is not supported`) {
		t.Errorf("mlflow_model output: exit %d, stderr %q; want a refusal naming the type", r.code, r.stderr)
	}
	r = kumoCLI(t, dir, "job", "submit", "--compute", "local", "--command", "ls ${{outputs.nope}}")
	if r.code == 0 || !strings.Contains(r.stderr, "does not declare: nope") {
		t.Errorf("undeclared output: exit %d, stderr %q; want a refusal naming it", r.code, r.stderr)
	}
	r = kumoCLI(t, dir, "job", "create", "-f", "job.yml", "--set", "compute")
	if r.code == 0 || !strings.Contains(r.stderr, `--set "compute" is not PATH=VALUE`) {
		t.Errorf("--set without a value: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := kumoCLI(t, dir, "job", "list"); strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("refused jobs were stored:\n%s", r.stdout)
	}
}

// TestJobFailureShowsOneID: a failed job's error states its exit code
// once, and users see the job's name, not the run ID, except in the JSON;
// the job itself gets its name in AZUREML_RUN_ID, as in AML.
func TestJobFailureShowsOneID(t *testing.T) {
	s := startServer(t, "")
	r := kumoCLI(t, s.dir, "job", "submit", "--compute", "local", "--name", "bad", "--stream", "--command", `echo "oops in $AZUREML_RUN_ID" >&2; exit 3`)
	if r.code == 0 || r.stdout != "oops in bad\n" {
		t.Fatalf("failing job: exit %d, stdout %q; want a failure with the job's output", r.code, r.stdout)
	}
	if n := strings.Count(r.stderr, "3"); n != 1 || !strings.Contains(r.stderr, "Error: job bad Failed: UserError: the command exited with code 3\n") {
		t.Errorf("stderr has %d threes, want the exit code once:\n%s", n, r.stderr)
	}
	j := getJob(t, s, "bad")
	for _, args := range [][]string{{"job", "show", "bad"}, {"job", "list"}} {
		r := kumoCLI(t, s.dir, args...)
		if strings.Contains(r.stdout, j.Properties.RunID) {
			t.Errorf("kumo %s shows the run ID %s:\n%s", strings.Join(args, " "), j.Properties.RunID, r.stdout)
		}
	}
	if r := kumoCLI(t, s.dir, "job", "show", "bad", "-o", "json"); !strings.Contains(r.stdout, `"runId": "`+j.Properties.RunID+`"`) {
		t.Errorf("job show -o json lacks properties.runId:\n%s", r.stdout)
	}
}

// TestEndTimeKeptAcrossControlPlaneDown: a job that ends while the
// control plane is down keeps the end time its node recorded, not the
// time the control plane heard of it.
func TestEndTimeKeptAcrossControlPlaneDown(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "one", 0, 1, "PT30S")
	submitJob(t, s, "short", "one", "sleep 2")
	waitFor(t, 60*time.Second, "short to run", func() (bool, string) {
		st := getJob(t, s, "short").Properties.Status
		return st == api.JobRunning, string(st)
	})
	runID := getJob(t, s, "short").Properties.RunID
	s.kill()
	// The node's agent journals how the job ended; wait for that.
	var ended time.Time
	waitFor(t, 60*time.Second, "the node to record the end", func() (bool, string) {
		var paths []string
		// The journal lives in the node's work directory, beside the data
		// directory: one JSON record per line, the last of a job counting.
		_ = filepath.WalkDir(filepath.Join(s.dir, "data-jobs"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "jobs.journal" {
				paths = append(paths, p)
			}
			return nil
		})
		for _, p := range paths {
			b, _ := os.ReadFile(p)
			for line := range strings.Lines(string(b)) {
				var rec struct {
					RunID  string `json:"runId"`
					State  string `json:"state"`
					Result *struct {
						Time time.Time `json:"time"`
					} `json:"result"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil && rec.RunID == runID && rec.State == "exited" && rec.Result != nil {
					ended = rec.Result.Time
					return true, ""
				}
			}
		}
		return false, fmt.Sprint(paths)
	})
	restarted := time.Now()
	s2 := startServer(t, s.dir, append(fastNodes, "--addr", strings.TrimPrefix(s.base, "https://"))...)
	j := waitJob(t, s2, "short", 60*time.Second)
	if j.Properties.Status != api.JobCompleted {
		t.Fatalf("short: %s %+v", j.Properties.Status, j.Properties.Error)
	}
	end, err := time.Parse(time.RFC3339Nano, j.Properties.EndTime)
	if err != nil {
		t.Fatal(err)
	}
	if d := end.Sub(ended); d < -time.Millisecond || d > time.Millisecond || !end.Before(restarted) {
		t.Errorf("end time %s, want the node's %s (before the restart at %s)", end, ended, restarted)
	}
}
