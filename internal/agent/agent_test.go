package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/agentproto"
	"kumo/internal/jobfiles"
	"kumo/internal/jobuser"
	"kumo/internal/jobuser/jobusertest"
	"kumo/internal/runner"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testAgent is an agent.Run in a goroutine.
type testAgent struct {
	cfg    Config
	cancel context.CancelFunc
	errc   chan error
}

func startAgent(t testing.TB, fs *fakeServer, workDir string) *testAgent {
	t.Helper()
	return startAgentWith(t, fs, workDir, nil)
}

// startAgentWith is startAgent with mod applied to the Config first.
func startAgentWith(t testing.TB, fs *fakeServer, workDir string, mod func(*Config)) *testAgent {
	t.Helper()
	if workDir == "" {
		workDir = t.TempDir()
	}
	ta := &testAgent{
		cfg: Config{
			NodeID:       "node-1",
			WorkDir:      workDir,
			URL:          fs.srv.URL,
			CAFile:       fs.caFile,
			Credential:   testCredential,
			Grace:        2 * time.Second,
			ReconnectMin: 5 * time.Millisecond,
			ReconnectMax: 20 * time.Millisecond,
			Log:          slog.New(slog.NewTextHandler(t.Output(), nil)),
		},
		errc: make(chan error, 1),
	}
	if mod != nil {
		mod(&ta.cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta.cancel = cancel
	go func() { ta.errc <- Run(ctx, ta.cfg) }()
	t.Cleanup(func() {
		cancel()
		ta.wait(t)
	})
	return ta
}

// wait waits for Run to return and returns its error.
func (ta *testAgent) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-ta.errc:
		ta.errc <- err // for a second wait
		return err
	case <-time.After(testTimeout):
		t.Fatal("agent.Run did not return")
		return nil
	}
}

func (ta *testAgent) jobDir(runID string) string {
	return filepath.Join(ta.cfg.WorkDir, "jobs", runID)
}

// journalRecord returns the node journal's record of runID; false when
// it holds none (the job is unknown or forgotten).
func (ta *testAgent) journalRecord(runID string) (record, bool) {
	b, _ := os.ReadFile(filepath.Join(ta.cfg.WorkDir, JournalFile))
	rec, ok := replay(b)[runID]
	return rec, ok
}

// eventually polls cond until it holds or the test's deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// gate is a FIFO a job blocks on (`read x < gate`) until the test opens it.
func newGate(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// open releases a job blocked reading the gate.
func open(t *testing.T, gate string) {
	t.Helper()
	f, err := os.OpenFile(gate, os.O_WRONLY, 0) // blocks until the job opens it
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("\n"))
	f.Close()
}

func intp(n int) *int { return &n }

func TestRunJob(t *testing.T) {
	fs := newFakeServer(t)
	startAgent(t, fs, "")
	c, hello := fs.welcome(agentproto.Message{})
	if hello.Protocol != agentproto.Version || hello.NodeID != "node-1" || hello.Address == "" || len(hello.Jobs) != 0 {
		t.Fatalf("hello = %+v, want protocol %d, node-1, an address, no jobs", hello, agentproto.Version)
	}

	tests := []struct {
		name       string
		spec       agentproto.JobSpec
		wantStdout string
		wantStderr string
		wantCode   *int
		wantReason string
	}{
		{
			name:       "exit code",
			spec:       agentproto.JobSpec{Command: "printf out; printf err >&2; exit 3"},
			wantStdout: "outerr", wantCode: intp(3), wantReason: reasonExited,
		},
		{
			name:       "environment",
			spec:       agentproto.JobSpec{Name: "env-job", Command: `printf '%s %s %s %s' "$KUMO_RUN_ID" "$AZUREML_RUN_ID" "$KUMO_NODE_ID" "$FOO"`, Env: map[string]string{"FOO": "bar"}},
			wantStdout: "r-environment env-job node-1 bar", wantCode: intp(0), wantReason: reasonExited,
		},
		{
			name:       "large output",
			spec:       agentproto.JobSpec{Command: "head -c 300000 /dev/zero | tr '\\0' a"},
			wantStdout: strings.Repeat("a", 300000), wantCode: intp(0), wantReason: reasonExited,
		},
		{
			name:     "timeout",
			spec:     agentproto.JobSpec{Command: "sleep 30", Timeout: 50 * time.Millisecond, Grace: time.Second},
			wantCode: intp(128 + int(syscall.SIGTERM)), wantReason: reasonTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "r-" + strings.ReplaceAll(tt.name, " ", "-")
			tt.spec.RunID = id
			c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &tt.spec})
			if st := c.next(agentproto.TypeStarted); st.RunID != id || st.PID <= 0 {
				t.Fatalf("started = %+v, want run %s with a pid", st, id)
			}
			stdout, stderr, done := c.output(id, agentproto.Offsets{}, agentproto.TypeDone)
			if stdout != tt.wantStdout || stderr != tt.wantStderr {
				t.Errorf("output = %.40q, %q; want %.40q, %q", stdout, stderr, tt.wantStdout, tt.wantStderr)
			}
			if diff := cmp.Diff(tt.wantCode, done.ExitCode); diff != "" || done.Reason != tt.wantReason {
				t.Errorf("done = code %v reason %q (%s), want %v %q", done.ExitCode, done.Reason, done.Message, *tt.wantCode, tt.wantReason)
			}
		})
	}

	t.Run("invalid run ID", func(t *testing.T) {
		c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "../x", Command: "true"}})
		if done := c.next(agentproto.TypeDone); done.Reason != reasonError || done.ExitCode != nil {
			t.Errorf("done = %+v, want reason error without exit code", done)
		}
	})
}

func TestSnapshotAndArtifacts(t *testing.T) {
	fs := newFakeServer(t)
	fs.snapshots["snap-1"] = snapshotTar(t, map[string]string{
		"run.sh": "mkdir -p outputs/sub; printf data > outputs/x.txt; printf nested > outputs/sub/y.txt; printf ran\n",
	})
	ta := startAgent(t, fs, "")
	c, _ := fs.welcome(agentproto.Message{})

	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "r1", Attempt: 3, Command: "sh run.sh", SnapshotID: "snap-1"}})
	c.next(agentproto.TypeStarted)
	stdout, _, exited := c.output("r1", agentproto.Offsets{}, agentproto.TypeExited)
	if stdout != "ran" || exited.ExitCode == nil || *exited.ExitCode != 0 {
		t.Fatalf("stdout %q, exited %+v; want \"ran\", code 0", stdout, exited)
	}
	done := c.next(agentproto.TypeDone)
	if done.ExitCode == nil || *done.ExitCode != 0 || done.Reason != reasonExited {
		t.Errorf("done = %+v, want code 0 reason exited", done)
	}
	select {
	case u := <-fs.uploads:
		want := map[string]string{"outputs/": "", "outputs/x.txt": "data", "outputs/sub/": "", "outputs/sub/y.txt": "nested"}
		if u.runID != "r1" || u.attempt != "3" {
			t.Errorf("upload for %q attempt %q, want r1 attempt 3", u.runID, u.attempt)
		}
		if diff := cmp.Diff(want, u.files); diff != "" {
			t.Errorf("artifacts (-want +got):\n%s", diff)
		}
	default:
		t.Fatal("Done arrived before the artifacts upload")
	}
	if _, err := os.Stat(filepath.Join(ta.jobDir("r1"), "run.sh")); err != nil {
		t.Errorf("snapshot not extracted: %v", err)
	}

	t.Run("missing snapshot", func(t *testing.T) {
		c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "r2", Command: "true", SnapshotID: "nope"}})
		done := c.next(agentproto.TypeDone)
		if done.Reason != reasonError || !strings.Contains(done.Message, "404") {
			t.Errorf("done = %+v, want reason error naming 404", done)
		}
	})
}

func TestCancel(t *testing.T) {
	fs := newFakeServer(t)
	startAgent(t, fs, "")
	c, _ := fs.welcome(agentproto.Message{})
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "r1", Command: "printf up; exec sleep 30"}})
	c.next(agentproto.TypeStarted)
	if _, _, m := c.output("r1", agentproto.Offsets{}, agentproto.TypeLog); string(m.Data) != "up" {
		t.Fatalf("log = %q, want up", m.Data)
	}
	c.send(agentproto.Message{Type: agentproto.TypeCancel, RunID: "r1"})
	done := c.next(agentproto.TypeDone)
	if done.Reason != reasonCanceled || done.ExitCode == nil || *done.ExitCode != 128+int(syscall.SIGTERM) {
		t.Errorf("done = %+v, want reason canceled, code 143", done)
	}
}

// An evicted job finds the notice file when it gets SIGTERM, and a job
// that ignores SIGTERM is killed at the deadline; both are reported
// preempted.
func TestEvict(t *testing.T) {
	tests := []struct {
		name    string
		command string // prints "up" once it traps TERM
		lead    time.Duration
		want    string // in its output
		kill    bool   // killed with SIGKILL at the deadline
	}{
		{"reads the notice and exits", `trap 'cat "$KUMO_EVICTION_NOTICE_FILE"; exit 0' TERM; printf up; sleep 30 & wait`,
			time.Minute, `"eventType":"Preempt"`, false},
		{"ignores SIGTERM", `trap 'printf got-term' TERM; printf up; while :; do sleep 30 & wait; done`,
			300 * time.Millisecond, "got-term", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeServer(t)
			startAgent(t, fs, "")
			c, _ := fs.welcome(agentproto.Message{})
			c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "r1", Command: tt.command, Grace: time.Minute}})
			c.next(agentproto.TypeStarted)
			if _, _, m := c.output("r1", agentproto.Offsets{}, agentproto.TypeLog); string(m.Data) != "up" {
				t.Fatalf("log = %q, want up", m.Data)
			}
			deadline := time.Now().Add(tt.lead)
			c.send(agentproto.Message{Type: agentproto.TypeEvict, RunID: "r1", Deadline: deadline})
			more, _, done := c.output("r1", agentproto.Offsets{Stdout: 2}, agentproto.TypeDone)
			if !strings.Contains(more, tt.want) {
				t.Errorf("output after the notice = %q, want %q", more, tt.want)
			}
			if done.Reason != agentproto.ReasonPreempted {
				t.Errorf("done = %+v, want reason preempted", done)
			}
			killed := done.ExitCode != nil && *done.ExitCode == 128+int(syscall.SIGKILL)
			if killed != tt.kill {
				t.Errorf("exit code %v: killed = %v, want %v", done.ExitCode, killed, tt.kill)
			}
			if tt.kill && time.Now().Before(deadline) {
				t.Errorf("killed before the deadline")
			}
		})
	}
}

// TestReconnect drops the connection while a job runs and output is
// written; the agent must report the job, resend exactly the bytes from the
// server's offset, and deliver the rest live.
func TestReconnect(t *testing.T) {
	fs := newFakeServer(t)
	ta := startAgent(t, fs, "")
	gate1, gate2 := newGate(t, "gate1"), newGate(t, "gate2")
	c, _ := fs.welcome(agentproto.Message{})
	cmd := "printf first; read x < " + gate1 + "; printf second; read x < " + gate2 + "; printf third"
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "r1", Command: cmd}})
	c.next(agentproto.TypeStarted)
	if _, _, m := c.output("r1", agentproto.Offsets{}, agentproto.TypeLog); string(m.Data) != "first" {
		t.Fatalf("log = %q, want first", m.Data)
	}

	fs.setRefuseAll(http.StatusServiceUnavailable)
	c.Close()
	open(t, gate1)
	eventually(t, "second in std_log.txt", func() bool {
		b, _ := os.ReadFile(filepath.Join(ta.jobDir("r1"), runner.StdLogFile))
		return string(b) == "firstsecond"
	})
	fs.setRefuseAll(0)

	const k = 3
	c, hello := fs.welcome(agentproto.Message{LogOffsets: map[string]agentproto.Offsets{"r1": {Stdout: k}}})
	want := []agentproto.JobReport{{RunID: "r1", State: agentproto.JobRunning, Logs: agentproto.Offsets{Stdout: 11}}}
	if diff := cmp.Diff(want, hello.Jobs); diff != "" {
		t.Errorf("hello jobs (-want +got):\n%s", diff)
	}
	open(t, gate2)
	stdout, _, done := c.output("r1", agentproto.Offsets{Stdout: k}, agentproto.TypeDone)
	if got, want := stdout, "firstsecondthird"[k:]; got != want {
		t.Errorf("output after reconnect = %q, want %q", got, want)
	}
	if done.ExitCode == nil || *done.ExitCode != 0 {
		t.Errorf("done = %+v, want code 0", done)
	}
}

// TestDoneAfterReconnect lets a job end while the agent is disconnected:
// Hello reports it, Done follows Welcome, a repeated Run resends Done, and
// Ack makes the agent forget it and remove its directory.
func TestDoneAfterReconnect(t *testing.T) {
	fs := newFakeServer(t)
	ta := startAgent(t, fs, "")
	gate := newGate(t, "gate")
	c, _ := fs.welcome(agentproto.Message{})
	spec := &agentproto.JobSpec{RunID: "r1", Command: "read x < " + gate + "; printf bye; exit 4"}
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: spec})
	c.next(agentproto.TypeStarted)

	fs.setRefuseAll(http.StatusServiceUnavailable)
	c.Close()
	open(t, gate)
	eventually(t, "journal to show the job ended", func() bool {
		rec, ok := ta.journalRecord("r1")
		return ok && rec.State == agentproto.JobExited && rec.Final
	})
	fs.setRefuseAll(0)

	c, hello := fs.welcome(agentproto.Message{LogOffsets: map[string]agentproto.Offsets{"r1": {Stdout: 3}}})
	want := []agentproto.JobReport{{RunID: "r1", State: agentproto.JobExited, ExitCode: intp(4), Reason: reasonExited, Logs: agentproto.Offsets{Stdout: 3}}}
	if diff := cmp.Diff(want, hello.Jobs); diff != "" {
		t.Errorf("hello jobs (-want +got):\n%s", diff)
	}
	if done := c.next(agentproto.TypeDone); done.RunID != "r1" || done.ExitCode == nil || *done.ExitCode != 4 {
		t.Errorf("done = %+v, want r1 code 4", done)
	}

	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: spec})
	if done := c.next(agentproto.TypeDone); done.RunID != "r1" || done.ExitCode == nil || *done.ExitCode != 4 {
		t.Errorf("repeated run: got %+v, want Done again", done)
	}

	c.send(agentproto.Message{Type: agentproto.TypeAck, RunID: "r1"})
	eventually(t, "journal to forget the job", func() bool {
		_, ok := ta.journalRecord("r1")
		return !ok
	})
	eventually(t, "job directory removed", func() bool {
		_, err := os.Stat(ta.jobDir("r1"))
		return errors.Is(err, os.ErrNotExist)
	})
	c.Close()
	if _, hello := fs.welcome(agentproto.Message{}); len(hello.Jobs) != 0 {
		t.Errorf("hello after ack reports %+v, want no jobs", hello.Jobs)
	}
}

// TestRestart starts an agent on a work directory whose journal holds a job
// that was running (its process still alive), one that ended, and one
// acknowledged: in the node's journal (whose last record was torn by a
// crash, and which holds a record of a job whose directory is gone), or in
// the per-job files of agents before it.
func TestRestart(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "node journal", true: "per-job files"}[legacy], func(t *testing.T) {
			testRestart(t, legacy)
		})
	}
}

func testRestart(t *testing.T, legacy bool) {
	work := t.TempDir()
	orphan := exec.Command("sleep", "30")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { orphan.Wait(); close(waited) }()
	t.Cleanup(func() {
		orphan.Process.Kill()
		<-waited
	})
	journals := map[string]record{
		"r-lost":  {RunID: "r-lost", State: agentproto.JobRunning, PID: orphan.Process.Pid, PIDStart: procStart(orphan.Process.Pid)},
		"r-done":  {RunID: "r-done", State: agentproto.JobExited, Final: true, Result: &result{ExitCode: intp(0), Reason: reasonExited, Time: time.Now()}},
		"r-acked": {},
	}
	var lines []byte
	for id, rec := range journals {
		dir := filepath.Join(work, "jobs", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if id == "r-acked" {
			if !legacy {
				for _, r := range []record{{RunID: id, State: agentproto.JobRunning}, {RunID: id, Acked: true}} {
					b, _ := json.Marshal(r)
					lines = append(append(lines, b...), '\n')
				}
			}
			continue
		}
		b, _ := json.Marshal(rec)
		if legacy {
			if err := os.WriteFile(legacyJournalPath(dir), b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		lines = append(append(lines, b...), '\n')
	}
	if !legacy {
		b, _ := json.Marshal(record{RunID: "r-gone", State: agentproto.JobExited, Final: true, Result: &result{Reason: reasonExited}})
		lines = append(append(lines, b...), '\n')
		b, _ = json.Marshal(record{RunID: "r-done", Acked: true})
		lines = append(lines, b[:len(b)-3]...) // torn: the ack never made it whole
		if err := os.WriteFile(filepath.Join(work, JournalFile), lines, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	fs := newFakeServer(t)
	ta := startAgent(t, fs, work)
	select {
	case <-waited:
	case <-time.After(testTimeout):
		t.Fatal("the lost job's process still runs")
	}
	c, hello := fs.welcome(agentproto.Message{})
	got := map[string]agentproto.JobReport{}
	for _, r := range hello.Jobs {
		got[r.RunID] = r
	}
	want := map[string]agentproto.JobReport{
		"r-lost": {RunID: "r-lost", State: agentproto.JobExited, Reason: reasonError, Message: restartMessage},
		"r-done": {RunID: "r-done", State: agentproto.JobExited, ExitCode: intp(0), Reason: reasonExited},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hello jobs (-want +got):\n%s", diff)
	}
	dones := map[string]string{}
	for range 2 {
		m := c.next(agentproto.TypeDone)
		dones[m.RunID] = m.Reason
	}
	if diff := cmp.Diff(map[string]string{"r-lost": reasonError, "r-done": reasonExited}, dones); diff != "" {
		t.Errorf("done reasons (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(ta.jobDir("r-acked")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the acknowledged job's directory: %v, want it removed", err)
	}
	for _, id := range []string{"r-lost", "r-done"} {
		if _, err := os.Stat(legacyJournalPath(ta.jobDir(id))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("per-job journal file of %s: %v, want it removed", id, err)
		}
		if rec, ok := ta.journalRecord(id); !ok || rec.State != agentproto.JobExited || rec.Result == nil {
			t.Errorf("node journal record of %s = %+v, %v; want it exited", id, rec, ok)
		}
	}
	for _, id := range []string{"r-acked", "r-gone"} {
		if _, ok := ta.journalRecord(id); ok {
			t.Errorf("node journal holds %s, want it forgotten", id)
		}
	}
}

func TestShutdown(t *testing.T) {
	fs := newFakeServer(t)
	ta := startAgent(t, fs, "")
	c, _ := fs.welcome(agentproto.Message{})
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "r1", Command: "exec sleep 30"}})
	pid := c.next(agentproto.TypeStarted).PID
	c.send(agentproto.Message{Type: agentproto.TypeShutdown, Reason: "scale down"})
	if done := c.next(agentproto.TypeDone); done.Reason != reasonCanceled {
		t.Errorf("done = %+v, want reason canceled", done)
	}
	if err := ta.wait(t); err != nil {
		t.Errorf("Run = %v, want nil after shutdown", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("job process %d: kill 0 = %v, want ESRCH", pid, err)
	}
}

func TestConnectRefused(t *testing.T) {
	t.Run("wrong version", func(t *testing.T) {
		fs := newFakeServer(t)
		fs.setRefuseAll(http.StatusUpgradeRequired)
		err := startAgent(t, fs, "").wait(t)
		if !errors.Is(err, ErrProtocolVersion) {
			t.Fatalf("Run = %v, want ErrProtocolVersion", err)
		}
		for _, s := range []string{agentproto.Upgrade, "kumo-agent/7"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %s", err, s)
			}
		}
	})
	t.Run("work directory removed while disconnected", func(t *testing.T) {
		fs := newFakeServer(t)
		fs.setRefuseAll(http.StatusServiceUnavailable)
		ta := startAgent(t, fs, "")
		eventually(t, "a connect attempt", func() bool {
			fs.mu.Lock()
			defer fs.mu.Unlock()
			return fs.attempts > 0
		})
		if err := os.RemoveAll(ta.cfg.WorkDir); err != nil {
			t.Fatal(err)
		}
		if err := ta.wait(t); err == nil || !strings.Contains(err.Error(), "removed") {
			t.Errorf("Run = %v, want an error saying the work directory was removed", err)
		}
	})
	// A restarted agent makes a new key; the control plane binds the node
	// to the key of its first connect and refuses it. The agent stops (its
	// node is replaced) rather than retry forever.
	t.Run("restarted agent's new key", func(t *testing.T) {
		fs := newFakeServer(t)
		work := t.TempDir()
		first := startAgent(t, fs, work)
		fs.welcome(agentproto.Message{})
		first.cancel()
		if err := first.wait(t); err != nil {
			t.Fatalf("first Run = %v", err)
		}
		err := startAgent(t, fs, work).wait(t)
		if !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("restarted Run = %v, want ErrKeyMismatch", err)
		}
		if !strings.Contains(err.Error(), "another agent process") {
			t.Errorf("error %q does not say why", err)
		}
	})
	t.Run("node removed", func(t *testing.T) {
		fs := newFakeServer(t)
		fs.refuseAll, fs.refuseCode = http.StatusForbidden, agentproto.NodeRemovedCode
		if err := startAgent(t, fs, "").wait(t); !errors.Is(err, ErrNodeRemoved) {
			t.Fatalf("Run = %v, want ErrNodeRemoved", err)
		}
	})
	t.Run("credential refused then accepted", func(t *testing.T) {
		fs := newFakeServer(t)
		fs.refuse = []int{http.StatusUnauthorized, http.StatusForbidden}
		startAgent(t, fs, "")
		if _, hello := fs.welcome(agentproto.Message{}); hello.NodeID != "node-1" {
			t.Errorf("hello = %+v, want node-1", hello)
		}
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if len(fs.refuse) != 0 {
			t.Errorf("%d refusals left, want the agent to have retried through them", len(fs.refuse))
		}
	})
}

// BenchmarkRunTrivial measures Run → Started and Run → Done for `true`
// through the agent, the fake server and TLS on loopback.
func BenchmarkRunTrivial(b *testing.B) {
	fs := newFakeServer(b)
	startAgent(b, fs, "")
	c, _ := fs.welcome(agentproto.Message{})
	var started, done []time.Duration
	for i := 0; b.Loop(); i++ {
		id := "r" + strconv.Itoa(i)
		t0 := time.Now()
		c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: id, Command: "true"}})
		c.next(agentproto.TypeStarted)
		started = append(started, time.Since(t0))
		c.next(agentproto.TypeDone)
		done = append(done, time.Since(t0))
		c.send(agentproto.Message{Type: agentproto.TypeAck, RunID: id})
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"started", started}, {"done", done}} {
		slices.Sort(m.d)
		b.ReportMetric(float64(m.d[len(m.d)/2].Microseconds()), m.name+"-p50-µs")
		b.ReportMetric(float64(m.d[len(m.d)*99/100].Microseconds()), m.name+"-p99-µs")
	}
}

// TestLogLimit runs a job that prints far past its LogLimit: it completes,
// the agent sends little more than the limit, and the node's log file stays
// within the limit and ends with the cut line.
func TestLogLimit(t *testing.T) {
	fs := newFakeServer(t)
	ta := startAgent(t, fs, "")
	c, _ := fs.welcome(agentproto.Message{})
	const limit = 1 << 20
	spec := agentproto.JobSpec{RunID: "r-loud", LogLimit: limit,
		Command: "echo start; head -c 20971520 /dev/zero | tr '\\0' a; echo end >&2"}
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &spec})
	c.next(agentproto.TypeStarted)
	stdout, stderr, done := c.output(spec.RunID, agentproto.Offsets{}, agentproto.TypeDone)
	if done.ExitCode == nil || *done.ExitCode != 0 {
		t.Errorf("done = %+v, want exit code 0", done)
	}
	// The chunk that passes the limit is sent whole (the control plane cuts
	// it); nothing after it.
	if sent := len(stdout) + len(stderr); sent <= limit || sent > limit+64<<10 {
		t.Errorf("sent %d bytes of output, want just over the limit %d", sent, limit)
	}
	line := jobfiles.CutLine("stdout", limit, limit)
	b, err := os.ReadFile(filepath.Join(ta.jobDir(spec.RunID), runner.StdLogFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := limit + 1 + len(line); len(b) != want || !strings.HasPrefix(string(b), "start\n") || !strings.HasSuffix(string(b), "\n"+line) {
		t.Errorf("node's std_log holds %d bytes ending %q, want %d ending with the cut line %q", len(b), b[max(0, len(b)-200):], want, line)
	}

	// The control plane, cutting at the same limit (which there counts a
	// few bytes of index too), stores at most the limit and its own cut
	// line.
	files, err := jobfiles.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files.SetLogLimit(limit)
	if err := files.Append(spec.RunID, "stdout", 0, []byte(stdout)); !errors.Is(err, jobfiles.ErrLogCut) {
		t.Fatalf("Append = %v, want ErrLogCut", err)
	}
	var stored bytes.Buffer
	if _, err := files.ReadLog(spec.RunID, jobfiles.StdLog, 0, &stored); err != nil {
		t.Fatal(err)
	}
	if got := stored.String(); len(got) > limit+1+len(line) || !strings.HasPrefix(got, "start\n") || !strings.Contains(got[len(got)-len(line):], "[kumo] log cut: stdout") {
		t.Errorf("stored std_log holds %d bytes ending %q, want at most %d ending with the cut line", len(got), got[max(0, len(got)-len(line)):], limit+1+len(line))
	}
}

// TestJobEnvironmentAndUser: a job sees only the documented variables
// (none of the agent's own), kumo's win over the job's, and, as root with
// Config.JobUser, it runs as that uid in a 0700 directory of its own, and
// the journal beside it is the agent's alone.
func TestJobEnvironmentAndUser(t *testing.T) {
	t.Setenv("KUMO_TEST_AGENT_SECRET", "agent-secret")
	fs := newFakeServer(t)
	work := t.TempDir()
	root := os.Geteuid() == 0
	var user *jobuser.User
	if root {
		if err := os.Chmod(filepath.Dir(work), 0o711); err != nil {
			t.Fatal(err)
		}
		u := jobusertest.User(t)
		user = &u
	}
	ta := startAgentWith(t, fs, work, func(cfg *Config) {
		cfg.JobUser = user
		cfg.JobEnv = map[string]string{"CUDA_VISIBLE_DEVICES": "1"}
	})
	c, _ := fs.welcome(agentproto.Message{})
	spec := &agentproto.JobSpec{RunID: "r1", Command: "env | sort; id -u; stat -c %a .",
		Env: map[string]string{"MINE": "yes", "KUMO_RUN_ID": "forged", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}}
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: spec})
	c.next(agentproto.TypeStarted)
	stdout, _, _ := c.output("r1", agentproto.Offsets{}, agentproto.TypeDone) // no artifacts: no Exited
	fi, err := os.Stat(filepath.Join(work, JournalFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal: %v, mode %v; want 0600", err, fi.Mode())
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 2 {
		t.Fatalf("job printed %q", stdout)
	}
	env, tail := lines[:len(lines)-2], lines[len(lines)-2:]
	want := []string{"AZUREML_RUN_ID=r1", "CUDA_VISIBLE_DEVICES=1", "HOME=" + ta.jobDir("r1"),
		"KUMO_EVICTION_NOTICE_FILE=" + filepath.Join(ta.jobDir("r1"), NoticeFile), "KUMO_NODE_ID=node-1",
		"KUMO_RUN_ID=r1", "LANG=C.UTF-8", "MINE=yes", "PATH=" + runner.DefaultPath, "PWD=" + ta.jobDir("r1")}
	var got []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SHLVL=") && !strings.HasPrefix(kv, "_=") && !strings.HasPrefix(kv, "OLDPWD=") {
			got = append(got, kv)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("job environment (-want +got):\n%s", diff)
	}
	wantUID := strconv.Itoa(os.Getuid())
	if root {
		wantUID = strconv.Itoa(user.UID)
	}
	if tail[0] != wantUID || tail[1] != "700" {
		t.Errorf("job uid and directory mode = %q, want %s and 700", tail, wantUID)
	}
}

// TestLogLimitFollowsNoLinks: a job that replaces its log files with links
// to another file before passing the limit does not get that file cut.
func TestLogLimitFollowsNoLinks(t *testing.T) {
	fs := newFakeServer(t)
	startAgent(t, fs, "")
	c, _ := fs.welcome(agentproto.Message{})
	victim := filepath.Join(t.TempDir(), "victim")
	want := strings.Repeat("keep me\n", 1000)
	if err := os.WriteFile(victim, []byte(want), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := agentproto.JobSpec{RunID: "r-links", LogLimit: 1000, Command: "for f in stdout stderr std_log; do ln -sf " + victim +
		" user_logs/$f.txt; done; head -c 100000 /dev/zero | tr '\\0' a"}
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &spec})
	c.next(agentproto.TypeStarted)
	if _, _, done := c.output(spec.RunID, agentproto.Offsets{}, agentproto.TypeDone); done.ExitCode == nil || *done.ExitCode != 0 {
		t.Errorf("done = %+v, want exit code 0", done)
	}
	if got, err := os.ReadFile(victim); err != nil || string(got) != want {
		t.Errorf("the linked file holds %d bytes (%v), want its %d bytes untouched", len(got), err, len(want))
	}
}
