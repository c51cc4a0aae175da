package hub

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/hashicorp/yamux"

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
	keys  map[string]*agentproto.Key // by node ID: each node's agent process key
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
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Close) // runs first: ends the upgraded connections
	return &env{st: st, files: files, hub: h, srv: srv, keys: map[string]*agentproto.Key{}}
}

func cred(nodeID string) string { return "cred-of-" + nodeID }

// newKey returns a fresh agent key, as another agent process would make.
func newKey(t *testing.T) *agentproto.Key {
	t.Helper()
	k, err := agentproto.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// key returns the key of nodeID's own agent process.
func (e *env) key(t *testing.T, nodeID string) *agentproto.Key {
	t.Helper()
	if e.keys[nodeID] == nil {
		e.keys[nodeID] = newKey(t)
	}
	return e.keys[nodeID]
}

// signer signs a request's headers; exporter is the TLS connection's
// keying material for a connect, nil otherwise.
type signer func(h http.Header, method, uri, nodeID string, exporter []byte)

// signedBy signs as key does now.
func signedBy(key *agentproto.Key) signer {
	return func(h http.Header, method, uri, nodeID string, exporter []byte) {
		key.Sign(h, agentproto.Request{Method: method, URI: uri, NodeID: nodeID, Exporter: exporter}, time.Now())
	}
}

// unsigned adds no proof, as an agent of protocol 1 did.
func unsigned(http.Header, string, string, string, []byte) {}

func (e *env) node(t *testing.T, id string, state model.NodeState, jobID string) {
	t.Helper()
	n := model.Node{ID: id, ComputeID: cpuID, State: state, CredentialHash: secret.HashToken(cred(id)),
		CreatedAt: t0, StateSince: t0, JobID: jobID}
	if err := e.st.NodeCreate(t.Context(), n); err != nil {
		t.Fatalf("NodeCreate(%s): %v", id, err)
	}
	// A node past preparing has connected: it is bound to its agent's key.
	if state != model.NodePreparing {
		if err := e.st.NodeBindAgentKey(t.Context(), id, e.key(t, id).Public()); err != nil {
			t.Fatalf("NodeBindAgentKey(%s): %v", id, err)
		}
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
	t      *testing.T
	conn   *yamux.Session // the connection's streams
	stream net.Conn       // the message stream
	enc    *agentproto.Encoder
	dec    *agentproto.Decoder
	sync   int
}

// dial connects as an agent does, over TLS, writing the request by hand
// and signing it with sign. It returns the response, and an agent when the
// server switched protocols.
func (e *env) dial(t *testing.T, nodeID, credential, upgrade string, sign signer) (*http.Response, *agent) {
	t.Helper()
	pool := e.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return dialAddr(t, e.srv.Listener.Addr().String(), pool, nodeID, credential, upgrade, sign)
}

// dialAddr is dial to the hub served at addr over TLS with a certificate
// that pool trusts.
func dialAddr(t *testing.T, addr string, pool *x509.CertPool, nodeID, credential, upgrade string, sign signer) (*http.Response, *agent) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // no test hangs on a lost message
	cs := conn.ConnectionState()
	ekm, err := agentproto.Exporter(&cs)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+credential)
	h.Set(agentproto.NodeHeader, nodeID)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", upgrade)
	sign(h, http.MethodGet, agentproto.ConnectPath, nodeID, ekm)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: kumo\r\n", agentproto.ConnectPath)
	h.Write(conn)
	fmt.Fprint(conn, "\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read connect response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, nil
	}
	mux, err := yamux.Client(&readerConn{r: br, Conn: conn}, agentproto.MuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
	st, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(10 * time.Second))
	return resp, &agent{t: t, conn: mux, stream: st, enc: agentproto.NewEncoder(st), dec: agentproto.NewDecoder(st)}
}

// readerConn reads through r, which holds what was read of Conn ahead.
type readerConn struct {
	r io.Reader
	net.Conn
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connect dials with the node's credential and says Hello; it returns the
// agent and the server's Welcome.
func (e *env) connect(t *testing.T, nodeID string, hello agentproto.Message) (*agent, agentproto.Message) {
	t.Helper()
	resp, a := e.dial(t, nodeID, cred(nodeID), agentproto.Upgrade, signedBy(e.key(t, nodeID)))
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

// connectTo connects to the hub (a replica) served by srv as nodeID's
// agent, and fails the test unless the hub welcomes it.
func (e *env) connectTo(t *testing.T, srv *httptest.Server, nodeID string) *agent {
	t.Helper()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	resp, ag := dialAddr(t, srv.Listener.Addr().String(), pool, nodeID, cred(nodeID), agentproto.Upgrade, signedBy(e.key(t, nodeID)))
	if ag == nil {
		t.Fatalf("connect %s: %s, want 101", nodeID, resp.Status)
	}
	ag.send(agentproto.Message{Type: agentproto.TypeHello, Protocol: agentproto.Version, NodeID: nodeID})
	if m := ag.recv(); m.Type != agentproto.TypeWelcome {
		t.Fatalf("%s's first message = %s, want welcome", nodeID, m.Type)
	}
	return ag
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
	signed := signedBy(newKey(t))
	expired := func(h http.Header, method, uri, nodeID string, ekm []byte) {
		newKey(t).Sign(h, agentproto.Request{Method: method, URI: uri, NodeID: nodeID, Exporter: ekm}, time.Now().Add(-time.Hour))
	}
	noExporter := func(h http.Header, method, uri, nodeID string, _ []byte) { signed(h, method, uri, nodeID, nil) }
	tests := []struct {
		name, node, cred, upgrade string
		sign                      signer
		want                      int
	}{
		{name: "wrong credential", node: "n1", cred: "wrong", upgrade: agentproto.Upgrade, sign: signed, want: http.StatusUnauthorized},
		{name: "another node's credential", node: "n1", cred: cred("gone"), upgrade: agentproto.Upgrade, sign: signed, want: http.StatusUnauthorized},
		{name: "unknown node", node: "n9", cred: cred("n9"), upgrade: agentproto.Upgrade, sign: signed, want: http.StatusUnauthorized},
		{name: "leaving node", node: "gone", cred: cred("gone"), upgrade: agentproto.Upgrade, sign: signed, want: http.StatusForbidden},
		{name: "wrong version", node: "n1", cred: cred("n1"), upgrade: "kumo-agent/99", sign: signed, want: http.StatusUpgradeRequired},
		{name: "protocol 1 agent", node: "n1", cred: cred("n1"), upgrade: "kumo-agent/1", sign: unsigned, want: http.StatusUpgradeRequired},
		{name: "protocol 2 agent", node: "n1", cred: cred("n1"), upgrade: "kumo-agent/2", sign: signed, want: http.StatusUpgradeRequired},
		{name: "no key proof", node: "n1", cred: cred("n1"), upgrade: agentproto.Upgrade, sign: unsigned, want: http.StatusUnauthorized},
		{name: "expired proof", node: "n1", cred: cred("n1"), upgrade: agentproto.Upgrade, sign: expired, want: http.StatusUnauthorized},
		{name: "proof without the connection", node: "n1", cred: cred("n1"), upgrade: agentproto.Upgrade, sign: noExporter, want: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, a := e.dial(t, tt.node, tt.cred, tt.upgrade, tt.sign)
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
	if n := e.getNode(t, "n1"); n.State != model.NodePreparing || n.AgentKey != "" {
		t.Errorf("refused node is %s bound to %q, want still preparing and unbound", n.State, n.AgentKey)
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

	// Exited and Done for another node's job change nothing.
	a.send(agentproto.Message{Type: agentproto.TypeExited, RunID: other.RunID})
	forgedCode := 0
	a.send(agentproto.Message{Type: agentproto.TypeDone, RunID: other.RunID, ExitCode: &forgedCode, Reason: "exited"})
	a.barrier()
	if got := e.getJob(t, other.RunID); got.Status != model.JobPreparing || got.ExitCode != nil || !got.EndedAt.IsZero() {
		t.Errorf("another node's job after this node's Exited and Done: %s exit %v ended %v, want Preparing", got.Status, got.ExitCode, got.EndedAt)
	}
	if n := e.getNode(t, "n2"); n.State != model.NodeRunning || n.JobID != other.ID {
		t.Errorf("the other node after forged reports: %s with job %q, want running %s", n.State, n.JobID, other.ID)
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

// do sends an agent's plain HTTP request signed by nodeID's own agent key
// and returns the status and body.
func (e *env) do(t *testing.T, method, path, nodeID, credential string, body []byte) (int, string) {
	t.Helper()
	return e.doSigned(t, method, path, nodeID, credential, signedBy(e.key(t, nodeID)), body)
}

// doSigned is do with the proof that sign makes.
func (e *env) doSigned(t *testing.T, method, path, nodeID, credential string, sign signer, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	req.Header.Set(agentproto.NodeHeader, nodeID)
	sign(req.Header, method, req.URL.RequestURI(), nodeID, nil)
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
	mine := e.job(t, "mine", "n1", model.JobFinalizing, func(j *model.Job) { j.Attempts = 2 })
	theirs := e.job(t, "theirs", "n2", model.JobFinalizing, func(j *model.Job) { j.Seq = 2 })
	requeued := e.job(t, "requeued", "", model.JobQueued, func(j *model.Job) { j.Seq = 3 })
	e.node(t, "n1", model.NodeRunning, mine.ID)
	e.node(t, "n2", model.NodeRunning, theirs.ID)
	art := makeTar(t, map[string]string{"outputs/model.bin": "weights", "logs/train.log": "step 1"})
	forged := makeTar(t, map[string]string{"outputs/model.bin": "forged"})
	unsafe := makeTar(t, map[string]string{"../../escape": "x"})
	path := func(runID, attempt string) string {
		return agentproto.ArtifactsPath + runID + "/artifacts?" + agentproto.AttemptQuery + "=" + attempt
	}

	tests := []struct {
		name, node, cred, path string
		sign                   signer // nil: the node's own agent key
		body                   []byte
		want                   int
	}{
		{name: "another node's job", node: "n1", cred: cred("n1"), path: path(theirs.RunID, "1"), body: forged, want: http.StatusForbidden},
		{name: "unknown job", node: "n1", cred: cred("n1"), path: path("run-nope", "1"), body: forged, want: http.StatusForbidden},
		{name: "requeued job", node: "n1", cred: cred("n1"), path: path(requeued.RunID, "1"), body: forged, want: http.StatusForbidden},
		{name: "old attempt", node: "n1", cred: cred("n1"), path: path(mine.RunID, "1"), body: forged, want: http.StatusForbidden},
		{name: "no attempt", node: "n1", cred: cred("n1"), path: agentproto.ArtifactsPath + mine.RunID + "/artifacts", body: forged, want: http.StatusBadRequest},
		{name: "wrong credential", node: "n1", cred: "wrong", path: path(mine.RunID, "2"), body: forged, want: http.StatusUnauthorized},
		{name: "credential without proof", node: "n1", cred: cred("n1"), path: path(mine.RunID, "2"), sign: unsigned, body: forged, want: http.StatusUnauthorized},
		{name: "credential from another process", node: "n1", cred: cred("n1"), path: path(mine.RunID, "2"), sign: signedBy(newKey(t)), body: forged, want: http.StatusUnauthorized},
		{name: "another node's process", node: "n1", cred: cred("n1"), path: path(mine.RunID, "2"), sign: signedBy(e.key(t, "n2")), body: forged, want: http.StatusUnauthorized},
		{name: "unsafe tar", node: "n1", cred: cred("n1"), path: path(mine.RunID, "2"), body: unsafe, want: http.StatusBadRequest},
		{name: "own job", node: "n1", cred: cred("n1"), path: path(mine.RunID, "2"), body: art, want: http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sign := tt.sign
			if sign == nil {
				sign = signedBy(e.key(t, tt.node))
			}
			if got, body := e.doSigned(t, http.MethodPut, tt.path, tt.node, tt.cred, sign, tt.body); got != tt.want {
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
	for _, j := range []model.Job{theirs, requeued} {
		dir, err := e.files.JobDir(j.RunID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("a refused upload created job %s's directory", j.Name)
		}
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

// TestKeyBinding: a node is bound to the agent key of its first accepted
// connect; another process holding the node's credential is refused on
// every route, and the bound agent keeps working, reconnections included.
func TestKeyBinding(t *testing.T) {
	e := newEnv(t)
	snap := makeTar(t, map[string]string{"train.py": "print(1)"})
	if _, err := e.files.SaveSnapshot("snap-1", bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	j := e.job(t, "train", "n1", model.JobPreparing, func(j *model.Job) { j.SnapshotID = "snap-1" })
	e.node(t, "n1", model.NodePreparing, j.ID)

	// The first connect binds the node to its key; a replayed proof of it
	// is refused on another connection before and after.
	own := e.key(t, "n1")
	var captured http.Header
	recording := func(h http.Header, method, uri, nodeID string, ekm []byte) {
		signedBy(own)(h, method, uri, nodeID, ekm)
		captured = h.Clone()
	}
	resp, a := e.dial(t, "n1", cred("n1"), agentproto.Upgrade, recording)
	if a == nil {
		t.Fatalf("first connect: %s, want 101", resp.Status)
	}
	a.send(agentproto.Message{Type: agentproto.TypeHello, Protocol: agentproto.Version, NodeID: "n1"})
	if m := a.recv(); m.Type != agentproto.TypeWelcome {
		t.Fatalf("first message %s, want Welcome", m.Type)
	}
	if got := a.barrier(); len(got) != 1 || got[0].Type != agentproto.TypeRun || got[0].Job.Attempt != 1 {
		t.Fatalf("after Welcome the server sent %+v, want Run of attempt 1", got)
	}
	if got := e.getNode(t, "n1").AgentKey; got != own.Public() {
		t.Fatalf("node bound to %q, want the first agent's key %q", got, own.Public())
	}
	replay := func(h http.Header, _, _, _ string, _ []byte) {
		for _, k := range []string{agentproto.KeyHeader, agentproto.TimeHeader, agentproto.SignatureHeader} {
			h.Set(k, captured.Get(k))
		}
	}
	if resp, b := e.dial(t, "n1", cred("n1"), agentproto.Upgrade, replay); b != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed connect proof on another connection: %s, want 401", resp.Status)
	}

	// Another process with the node's credential and its own key.
	thief := signedBy(newKey(t))
	resp, b := e.dial(t, "n1", cred("n1"), agentproto.Upgrade, thief)
	if b != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("connect with the credential from another process: %s, want 401", resp.Status)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), agentproto.KeyMismatchCode) || strings.Contains(string(body), cred("n1")) {
		t.Errorf("refusal body = %s, want code %s and no credential", body, agentproto.KeyMismatchCode)
	}
	if got, body := e.doSigned(t, http.MethodGet, agentproto.SnapshotPath+"snap-1", "n1", cred("n1"), thief, nil); got != http.StatusUnauthorized {
		t.Errorf("snapshot from another process = %d %s, want 401", got, body)
	}
	artPath := agentproto.ArtifactsPath + j.RunID + "/artifacts?" + agentproto.AttemptQuery + "=1"
	forged := makeTar(t, map[string]string{"outputs/forged.txt": "forged"})
	if got, body := e.doSigned(t, http.MethodPut, artPath, "n1", cred("n1"), thief, forged); got != http.StatusUnauthorized {
		t.Errorf("artifacts from another process = %d %s, want 401", got, body)
	}

	// The bound agent is still connected and served.
	if !e.hub.Connected("n1") {
		t.Error("the bound agent lost its connection to a refused one")
	}
	a.send(agentproto.Message{Type: agentproto.TypeStarted, RunID: j.RunID})
	a.barrier()
	if got := e.getJob(t, j.RunID).Status; got != model.JobRunning {
		t.Errorf("job after the bound agent's Started is %s, want Running", got)
	}
	if got, body := e.do(t, http.MethodGet, agentproto.SnapshotPath+"snap-1", "n1", cred("n1"), nil); got != http.StatusOK || body != string(snap) {
		t.Errorf("snapshot for the bound agent = %d (%d bytes), want 200 with the snapshot", got, len(body))
	}
	if got, body := e.do(t, http.MethodPut, artPath, "n1", cred("n1"), makeTar(t, map[string]string{"outputs/real.txt": "real"})); got != http.StatusNoContent {
		t.Errorf("artifacts from the bound agent = %d %s, want 204", got, body)
	}
	dir, err := e.files.JobDir(j.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "outputs", "forged.txt")); err == nil {
		t.Error("the refused upload's file is stored")
	}
	if got := e.getNode(t, "n1").AgentKey; got != own.Public() {
		t.Errorf("node bound to %q after the refusals, want %q", got, own.Public())
	}

	// The same process reconnects (say, after the control plane restarted)
	// with its key: accepted.
	a2, welcome := e.connect(t, "n1", agentproto.Message{Jobs: []agentproto.JobReport{{RunID: j.RunID, State: agentproto.JobRunning}}})
	if welcome.Type != agentproto.TypeWelcome {
		t.Fatalf("reconnect: first message %s, want Welcome", welcome.Type)
	}
	a2.barrier()
}

// TestReportsAfterRequeue: once a job runs on another node, its old node's
// reports and uploads change nothing, even over a connection that was
// accepted while the job was its own.
func TestReportsAfterRequeue(t *testing.T) {
	e := newEnv(t)
	j := e.job(t, "train", "n1", model.JobRunning, nil)
	e.node(t, "n1", model.NodeRunning, j.ID)
	e.node(t, "n2", model.NodeIdle, "")
	a, _ := e.connect(t, "n1", agentproto.Message{Jobs: []agentproto.JobReport{{RunID: j.RunID, State: agentproto.JobRunning}}})
	a.send(agentproto.Message{Type: agentproto.TypeLog, RunID: j.RunID, Stream: "stdout", Data: []byte("first\n")})
	a.barrier()

	// The job is requeued and runs as attempt 2 on n2.
	moved := e.getJob(t, j.RunID)
	moved.NodeID, moved.Attempts = "n2", 2
	if err := e.st.JobUpdate(t.Context(), moved, model.JobRunning, nil, ""); err != nil {
		t.Fatal(err)
	}
	a.send(agentproto.Message{Type: agentproto.TypeLog, RunID: j.RunID, Stream: "stdout", Offset: 6, Data: []byte("stale\n")})
	a.send(agentproto.Message{Type: agentproto.TypeExited, RunID: j.RunID})
	zero := 0
	a.send(agentproto.Message{Type: agentproto.TypeDone, RunID: j.RunID, ExitCode: &zero, Reason: "exited"})
	a.barrier()
	if got := e.getJob(t, j.RunID); got.Status != model.JobRunning || got.NodeID != "n2" || got.ExitCode != nil {
		t.Errorf("job after its old node's reports: %s on %s exit %v, want Running on n2", got.Status, got.NodeID, got.ExitCode)
	}
	var out bytes.Buffer
	if _, err := e.files.ReadLog(j.RunID, jobfiles.Stdout, 0, &out); err != nil || out.String() != "first\n" {
		t.Errorf("stdout = %q (%v), want only what n1 sent while the job was its own", out.String(), err)
	}
	art := makeTar(t, map[string]string{"outputs/stale.txt": "stale"})
	for _, attempt := range []string{"1", "2"} {
		p := agentproto.ArtifactsPath + j.RunID + "/artifacts?" + agentproto.AttemptQuery + "=" + attempt
		if got, body := e.do(t, http.MethodPut, p, "n1", cred("n1"), art); got != http.StatusForbidden {
			t.Errorf("old node's upload for attempt %s = %d %s, want 403", attempt, got, body)
		}
	}
}
