package hub

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/agentproto"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	wsID  = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	cpuID = wsID + "/computes/cpu"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	st    *sqlite.Store
	files *jobfiles.Files
	hub   *Hub
	srv   *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "kumo.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	files, err := jobfiles.New(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{Store: st, Files: files, HeartbeatInterval: 7 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := http.NewServeMux()
	for pattern, handler := range h.Routes() {
		mux.HandleFunc(pattern, handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Close) // runs first: ends the upgraded connections
	return &env{st: st, files: files, hub: h, srv: srv}
}

func cred(nodeID string) string { return "cred-of-" + nodeID }

func (e *env) node(t *testing.T, id string, state model.NodeState, jobID string) {
	t.Helper()
	n := model.Node{ID: id, ComputeID: cpuID, State: state, CredentialHash: secret.HashToken(cred(id)),
		CreatedAt: t0, StateSince: t0, JobID: jobID}
	if err := e.st.NodeCreate(t.Context(), n); err != nil {
		t.Fatalf("NodeCreate(%s): %v", id, err)
	}
}

// job creates a job assigned to nodeID in status.
func (e *env) job(t *testing.T, name, nodeID string, status model.JobStatus, mod func(*model.Job)) model.Job {
	t.Helper()
	j := model.Job{ID: wsID + "/jobs/" + name, WorkspaceID: wsID, Name: name, RunID: "run-" + name, ComputeID: cpuID,
		Command: "echo hi", InstanceCount: 1, Status: status, NodeID: nodeID, Attempts: 1, Seq: 1, CreatedAt: t0}
	if mod != nil {
		mod(&j)
	}
	if err := e.st.JobCreate(t.Context(), j); err != nil {
		t.Fatalf("JobCreate(%s): %v", name, err)
	}
	return j
}

func (e *env) getJob(t *testing.T, runID string) model.Job {
	t.Helper()
	j, err := e.st.JobGetByRunID(t.Context(), runID)
	if err != nil {
		t.Fatalf("JobGetByRunID(%s): %v", runID, err)
	}
	return j
}

func (e *env) getNode(t *testing.T, id string) model.Node {
	t.Helper()
	n, err := e.st.NodeGet(t.Context(), id)
	if err != nil {
		t.Fatalf("NodeGet(%s): %v", id, err)
	}
	return n
}

// agent is a test agent's side of an upgraded connection.
type agent struct {
	t    *testing.T
	conn net.Conn
	enc  *agentproto.Encoder
	dec  *agentproto.Decoder
	sync int
}

// dial connects as an agent does, writing the request by hand. It returns
// the response, and an agent when the server switched protocols.
func (e *env) dial(t *testing.T, nodeID, credential, upgrade string) (*http.Response, *agent) {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // no test hangs on a lost message
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: kumo\r\nAuthorization: Bearer %s\r\n%s: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n",
		agentproto.ConnectPath, credential, agentproto.NodeHeader, nodeID, upgrade)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read connect response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return resp, nil
	}
	return resp, &agent{t: t, conn: conn, enc: agentproto.NewEncoder(conn), dec: agentproto.NewDecoder(br)}
}

// connect dials with the node's credential and says Hello; it returns the
// agent and the server's Welcome.
func (e *env) connect(t *testing.T, nodeID string, hello agentproto.Message) (*agent, agentproto.Message) {
	t.Helper()
	resp, a := e.dial(t, nodeID, cred(nodeID), agentproto.Upgrade)
	if a == nil {
		t.Fatalf("connect: %s, want 101", resp.Status)
	}
	if got := resp.Header.Get("Upgrade"); got != agentproto.Upgrade {
		t.Errorf("101 Upgrade header = %q, want %q", got, agentproto.Upgrade)
	}
	hello.Type, hello.Protocol, hello.NodeID = agentproto.TypeHello, agentproto.Version, nodeID
	a.send(hello)
	return a, a.recv()
}

func (a *agent) send(m agentproto.Message) {
	a.t.Helper()
	if err := a.enc.Send(m); err != nil {
		a.t.Fatalf("send %s: %v", m.Type, err)
	}
}

func (a *agent) recv() agentproto.Message {
	a.t.Helper()
	m, err := a.dec.Next()
	if err != nil {
		a.t.Fatalf("receive: %v", err)
	}
	return m
}

// barrier waits until the server has handled everything sent before it,
// and returns what the server sent meanwhile. It sends Done for a job that
// does not exist, which the server acknowledges in order.
func (a *agent) barrier() []agentproto.Message {
	a.t.Helper()
	a.sync++
	id := fmt.Sprintf("barrier-%d", a.sync)
	a.send(agentproto.Message{Type: agentproto.TypeDone, RunID: id})
	var got []agentproto.Message
	for {
		m := a.recv()
		if m.Type == agentproto.TypeAck && m.RunID == id {
			return got
		}
		got = append(got, m)
	}
}

func TestConnectRefused(t *testing.T) {
	e := newEnv(t)
	e.node(t, "n1", model.NodePreparing, "")
	e.node(t, "gone", model.NodeLeaving, "")
	tests := []struct {
		name, node, cred, upgrade string
		want                      int
	}{
		{name: "wrong credential", node: "n1", cred: "wrong", upgrade: agentproto.Upgrade, want: http.StatusUnauthorized},
		{name: "another node's credential", node: "n1", cred: cred("gone"), upgrade: agentproto.Upgrade, want: http.StatusUnauthorized},
		{name: "unknown node", node: "n9", cred: cred("n9"), upgrade: agentproto.Upgrade, want: http.StatusUnauthorized},
		{name: "leaving node", node: "gone", cred: cred("gone"), upgrade: agentproto.Upgrade, want: http.StatusForbidden},
		{name: "wrong version", node: "n1", cred: cred("n1"), upgrade: "kumo-agent/99", want: http.StatusUpgradeRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, a := e.dial(t, tt.node, tt.cred, tt.upgrade)
			if a != nil || resp.StatusCode != tt.want {
				t.Fatalf("connect: %s, want %d", resp.Status, tt.want)
			}
			if tt.want == http.StatusUpgradeRequired {
				if got := resp.Header.Get("Upgrade"); got != agentproto.Upgrade {
					t.Errorf("426 Upgrade header = %q, want %q", got, agentproto.Upgrade)
				}
			}
		})
	}
	if e.hub.Connected("n1") {
		t.Error("a refused node is connected")
	}
	if got := e.getNode(t, "n1").State; got != model.NodePreparing {
		t.Errorf("refused node is %s, want still preparing", got)
	}
}

func TestHello(t *testing.T) {
	e := newEnv(t)
	e.node(t, "n1", model.NodePreparing, "")
	a, welcome := e.connect(t, "n1", agentproto.Message{Address: "10.0.0.9", Note: "limits recorded only"})
	want := agentproto.Message{Type: agentproto.TypeWelcome, Protocol: agentproto.Version, HeartbeatInterval: 7 * time.Second}
	if diff := cmp.Diff(want, welcome); diff != "" {
		t.Errorf("Welcome (-want +got):\n%s", diff)
	}
	if got := a.barrier(); len(got) != 0 {
		t.Errorf("after Welcome the server sent %v, want nothing", got)
	}
	n := e.getNode(t, "n1")
	if n.State != model.NodeIdle || n.Address != "10.0.0.9" || n.Note != "limits recorded only" {
		t.Errorf("node = %s at %q (%q), want idle at 10.0.0.9 with its note", n.State, n.Address, n.Note)
	}
	if !e.hub.Connected("n1") {
		t.Error("Connected(n1) = false after Hello")
	}
	if _, ok := e.hub.LastSeen("n1"); !ok {
		t.Error("LastSeen(n1) not set after Hello")
	}
	// The hub delivers messages to the connected agent.
	if err := e.hub.Send("n1", agentproto.Message{Type: agentproto.TypeShutdown, Reason: "bye"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := a.recv(); got.Type != agentproto.TypeShutdown || got.Reason != "bye" {
		t.Errorf("received %+v, want Shutdown", got)
	}
	if err := e.hub.Send("n2", agentproto.Message{Type: agentproto.TypeCancel}); err == nil {
		t.Error("Send to an unconnected node: error = nil")
	}
}

func TestJobLifecycle(t *testing.T) {
	e := newEnv(t)
	j := e.job(t, "train", "n1", model.JobPreparing, nil)
	e.node(t, "n1", model.NodeRunning, j.ID)
	other := e.job(t, "other", "n2", model.JobPreparing, func(j *model.Job) { j.Seq = 2 })
	e.node(t, "n2", model.NodeRunning, other.ID)

	// The agent lost the Run message with its connection: Hello reports
	// nothing and the server sends the job again.
	a, welcome := e.connect(t, "n1", agentproto.Message{})
	if welcome.Type != agentproto.TypeWelcome {
		t.Fatalf("first message %s, want Welcome", welcome.Type)
	}
	got := a.barrier()
	if len(got) != 1 || got[0].Type != agentproto.TypeRun || got[0].Job == nil || got[0].Job.RunID != j.RunID {
		t.Fatalf("after Welcome the server sent %+v, want Run of %s", got, j.RunID)
	}

	// Started; a Started for another node's job changes nothing.
	a.send(agentproto.Message{Type: agentproto.TypeStarted, RunID: j.RunID, PID: 42, Time: t0.Add(time.Minute)})
	a.send(agentproto.Message{Type: agentproto.TypeStarted, RunID: other.RunID, PID: 43})
	a.barrier()
	if got := e.getJob(t, j.RunID); got.Status != model.JobRunning || !got.StartedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("after Started job is %s since %v, want Running since %v", got.Status, got.StartedAt, t0.Add(time.Minute))
	}
	if got := e.getJob(t, other.RunID).Status; got != model.JobPreparing {
		t.Errorf("another node's job is %s after this node's Started, want Preparing", got)
	}

	// Log chunks, one of them resent after a reconnect.
	for _, m := range []agentproto.Message{
		{RunID: j.RunID, Stream: "stdout", Offset: 0, Data: []byte("hel")},
		{RunID: j.RunID, Stream: "stderr", Offset: 0, Data: []byte("warn\n")},
		{RunID: j.RunID, Stream: "stdout", Offset: 0, Data: []byte("hello\n")},
		{RunID: j.RunID, Stream: "stdout", Offset: 0, Data: []byte("hello\n")},
		{RunID: other.RunID, Stream: "stdout", Offset: 0, Data: []byte("forged\n")}, // another node's job
	} {
		m.Type = agentproto.TypeLog
		a.send(m)
	}
	a.barrier()
	logs := map[string]string{}
	for _, s := range []string{jobfiles.Stdout, jobfiles.Stderr, jobfiles.StdLog} {
		var buf bytes.Buffer
		if _, err := e.files.ReadLog(j.RunID, s, 0, &buf); err != nil {
			t.Fatal(err)
		}
		logs[s] = buf.String()
	}
	wantLogs := map[string]string{"stdout": "hello\n", "stderr": "warn\n", "std_log": "helwarn\nlo\n"}
	if diff := cmp.Diff(wantLogs, logs); diff != "" {
		t.Errorf("job logs (-want +got):\n%s", diff)
	}
	var forged bytes.Buffer
	if _, err := e.files.ReadLog(other.RunID, jobfiles.StdLog, 0, &forged); err != nil || forged.Len() != 0 {
		t.Errorf("a node wrote another node's job log: %q, %v", forged.String(), err)
	}

	a.send(agentproto.Message{Type: agentproto.TypeExited, RunID: j.RunID})
	a.barrier()
	if got := e.getJob(t, j.RunID).Status; got != model.JobFinalizing {
		t.Errorf("after Exited job is %s, want Finalizing", got)
	}

	zero := 0
	a.send(agentproto.Message{Type: agentproto.TypeDone, RunID: j.RunID, ExitCode: &zero, Reason: "exited"})
	if got := a.recv(); got.Type != agentproto.TypeAck || got.RunID != j.RunID {
		t.Errorf("answer to Done = %+v, want Ack of %s", got, j.RunID)
	}
	done := e.getJob(t, j.RunID)
	if done.Status != model.JobCompleted || done.ExitCode == nil || *done.ExitCode != 0 || done.EndedAt.IsZero() {
		t.Errorf("after Done job is %s with exit code %v ended %v, want Completed with 0", done.Status, done.ExitCode, done.EndedAt)
	}
	if n := e.getNode(t, "n1"); n.State != model.NodeIdle || n.JobID != "" {
		t.Errorf("after Done node is %s with job %q, want idle with none", n.State, n.JobID)
	}

	// A repeated Done (the Ack was lost) is acknowledged again.
	a.send(agentproto.Message{Type: agentproto.TypeDone, RunID: j.RunID, ExitCode: &zero})
	if got := a.recv(); got.Type != agentproto.TypeAck || got.RunID != j.RunID {
		t.Errorf("answer to a repeated Done = %+v, want Ack of %s", got, j.RunID)
	}
}

func TestReconnectWithUnknownJobs(t *testing.T) {
	e := newEnv(t)
	e.node(t, "n1", model.NodeIdle, "")
	e.node(t, "n2", model.NodeIdle, "")
	mine := e.job(t, "mine", "n1", model.JobRunning, nil)
	theirs := e.job(t, "theirs", "n2", model.JobRunning, func(j *model.Job) { j.Seq = 2 })
	finished := e.job(t, "finished", "n1", model.JobCompleted, func(j *model.Job) { j.Seq = 3 })
	if err := e.files.Append(mine.RunID, jobfiles.Stdout, 0, []byte("12345")); err != nil {
		t.Fatal(err)
	}
	// The node row does not know about "mine" (for example it was reset);
	// what matters here is what the server answers per reported job.
	code := 0
	a, welcome := e.connect(t, "n1", agentproto.Message{Jobs: []agentproto.JobReport{
		{RunID: "run-vanished-exited", State: agentproto.JobExited, ExitCode: &code},
		{RunID: "run-vanished-running", State: agentproto.JobRunning},
		{RunID: theirs.RunID, State: agentproto.JobRunning},
		{RunID: finished.RunID, State: agentproto.JobExited, ExitCode: &code},
		{RunID: mine.RunID, State: agentproto.JobRunning, Logs: agentproto.Offsets{Stdout: 9}},
	}})
	wantOffsets := map[string]agentproto.Offsets{mine.RunID: {Stdout: 5}}
	if diff := cmp.Diff(wantOffsets, welcome.LogOffsets); diff != "" {
		t.Errorf("Welcome log offsets (-want +got):\n%s", diff)
	}
	type msg struct {
		Type  agentproto.Type
		RunID string
	}
	var got []msg
	for _, m := range a.barrier() {
		got = append(got, msg{m.Type, m.RunID})
	}
	want := []msg{
		{agentproto.TypeAck, "run-vanished-exited"},
		{agentproto.TypeCancel, "run-vanished-running"},
		{agentproto.TypeCancel, theirs.RunID},
		{agentproto.TypeAck, finished.RunID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages after Welcome (-want +got):\n%s", diff)
	}
}

func makeTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// do sends an agent's plain HTTP request and returns the status and body.
func (e *env) do(t *testing.T, method, path, nodeID, credential string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	req.Header.Set(agentproto.NodeHeader, nodeID)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestArtifacts(t *testing.T) {
	e := newEnv(t)
	mine := e.job(t, "mine", "n1", model.JobFinalizing, nil)
	theirs := e.job(t, "theirs", "n2", model.JobFinalizing, func(j *model.Job) { j.Seq = 2 })
	e.node(t, "n1", model.NodeRunning, mine.ID)
	e.node(t, "n2", model.NodeRunning, theirs.ID)
	art := makeTar(t, map[string]string{"outputs/model.bin": "weights", "logs/train.log": "step 1"})
	unsafe := makeTar(t, map[string]string{"../../escape": "x"})
	path := func(runID string) string { return agentproto.ArtifactsPath + runID + "/artifacts" }

	tests := []struct {
		name, node, cred, runID string
		body                    []byte
		want                    int
	}{
		{name: "another node's job", node: "n1", cred: cred("n1"), runID: theirs.RunID, body: art, want: http.StatusForbidden},
		{name: "unknown job", node: "n1", cred: cred("n1"), runID: "run-nope", body: art, want: http.StatusForbidden},
		{name: "wrong credential", node: "n1", cred: "wrong", runID: mine.RunID, body: art, want: http.StatusUnauthorized},
		{name: "unsafe tar", node: "n1", cred: cred("n1"), runID: mine.RunID, body: unsafe, want: http.StatusBadRequest},
		{name: "own job", node: "n1", cred: cred("n1"), runID: mine.RunID, body: art, want: http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, body := e.do(t, http.MethodPut, path(tt.runID), tt.node, tt.cred, tt.body); got != tt.want {
				t.Errorf("PUT artifacts = %d %s, want %d", got, body, tt.want)
			}
		})
	}

	dir, err := e.files.JobDir(mine.RunID)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"outputs/model.bin": "weights", "logs/train.log": "step 1"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("stored %s = %q (err %v), want %q", name, got, err, want)
		}
	}
	theirDir, err := e.files.JobDir(theirs.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(theirDir); err == nil {
		t.Error("a refused upload created the other job's directory")
	}
}

func TestSnapshot(t *testing.T) {
	e := newEnv(t)
	snap := makeTar(t, map[string]string{"train.py": "print(1)"})
	for _, id := range []string{"snap-1", "snap-2"} {
		if _, err := e.files.SaveSnapshot(id, bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
	}
	mine := e.job(t, "mine", "n1", model.JobPreparing, func(j *model.Job) { j.SnapshotID = "snap-1" })
	theirs := e.job(t, "theirs", "n2", model.JobPreparing, func(j *model.Job) { j.SnapshotID = "snap-2"; j.Seq = 2 })
	missing := e.job(t, "missing", "n4", model.JobPreparing, func(j *model.Job) { j.SnapshotID = "snap-gone"; j.Seq = 3 })
	e.node(t, "n1", model.NodeRunning, mine.ID)
	e.node(t, "n2", model.NodeRunning, theirs.ID)
	e.node(t, "n3", model.NodeIdle, "")
	e.node(t, "n4", model.NodeRunning, missing.ID)

	tests := []struct {
		name, node, cred, id string
		want                 int
	}{
		{name: "own job's", node: "n1", cred: cred("n1"), id: "snap-1", want: http.StatusOK},
		{name: "another job's", node: "n1", cred: cred("n1"), id: "snap-2", want: http.StatusForbidden},
		{name: "node without a job", node: "n3", cred: cred("n3"), id: "snap-1", want: http.StatusForbidden},
		{name: "wrong credential", node: "n1", cred: cred("n2"), id: "snap-1", want: http.StatusUnauthorized},
		{name: "not stored", node: "n4", cred: cred("n4"), id: "snap-gone", want: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, body := e.do(t, http.MethodGet, agentproto.SnapshotPath+tt.id, tt.node, tt.cred, nil)
			if got != tt.want {
				t.Fatalf("GET snapshot = %d %s, want %d", got, body, tt.want)
			}
			if got == http.StatusOK && body != string(snap) {
				t.Errorf("snapshot body is %d bytes, want the %d bytes stored", len(body), len(snap))
			}
			if got != http.StatusOK && strings.Contains(body, "print(1)") {
				t.Error("a refused request got the snapshot")
			}
		})
	}
}
