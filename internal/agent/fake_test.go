package agent

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kumo/internal/agentproto"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 20 * time.Second

const testCredential = "node-secret"

// fakeServer is a minimal control plane: it upgrades connections and hands
// them to the test, serves snapshots, and records artifact uploads.
type fakeServer struct {
	t       testing.TB
	srv     *httptest.Server
	caFile  string
	conns   chan *fakeConn
	uploads chan upload

	mu        sync.Mutex
	refuse    []int // statuses to answer the next connects with, in order
	refuseAll int   // status to answer every connect with while non-zero
	// refuseCode, when set, is the ARM error code of refusals' bodies
	// (plain text otherwise).
	refuseCode string
	attempts   int // connect requests seen
	snapshots  map[string][]byte
	// boundKey is the agent key of the first accepted connect; like the
	// control plane, the fake then refuses every other key with
	// agentproto.KeyMismatchCode.
	boundKey string
}

// upload is one artifacts upload: run ID and the tar's files.
type upload struct {
	runID    string
	attempt  string // the attempt query parameter
	files    map[string]string
	warnings []string // the agentproto.WarningsTrailer
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	fs := &fakeServer{
		t:         t,
		conns:     make(chan *fakeConn, 4),
		uploads:   make(chan upload, 4),
		snapshots: map[string][]byte{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentproto.ConnectPath, fs.connect)
	mux.HandleFunc("GET "+agentproto.SnapshotPath+"{id}", fs.snapshot)
	mux.HandleFunc("PUT "+agentproto.ArtifactsPath+"{runId}/artifacts", fs.artifacts)
	fs.srv = httptest.NewTLSServer(mux)
	t.Cleanup(fs.srv.Close)
	fs.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fs.srv.Certificate().Raw})
	if err := os.WriteFile(fs.caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return fs
}

// authorized checks the credential and the agent key proof, which must
// sign the TLS connection for a connect, and binds the first connect's key.
func (fs *fakeServer) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer "+testCredential || r.Header.Get(agentproto.NodeHeader) != "node-1" {
		http.Error(w, "bad credential", http.StatusUnauthorized)
		return false
	}
	req := agentproto.Request{Method: r.Method, URI: r.URL.RequestURI(), NodeID: "node-1"}
	connect := r.URL.Path == agentproto.ConnectPath
	if connect {
		ekm, err := agentproto.Exporter(r.TLS)
		if err != nil {
			fs.t.Errorf("exporter: %v", err)
		}
		req.Exporter = ekm
	}
	key, err := agentproto.Verify(r.Header, req, time.Now())
	if err != nil {
		fs.t.Errorf("agent request %s %s: %v", r.Method, r.URL, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return false
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.boundKey == "" && connect {
		fs.boundKey = key
	}
	if key != fs.boundKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"node-1 is bound to another agent process"}}`, agentproto.KeyMismatchCode)
		return false
	}
	return true
}

func (fs *fakeServer) connect(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.attempts++
	code := fs.refuseCode
	status := fs.refuseAll
	if status == 0 && len(fs.refuse) > 0 {
		status, fs.refuse = fs.refuse[0], fs.refuse[1:]
	}
	fs.mu.Unlock()
	switch {
	case status == http.StatusUpgradeRequired:
		w.Header().Set("Upgrade", "kumo-agent/7")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, `{"error":{"code":"UnsupportedProtocol","message":"this server speaks kumo-agent/7"}}`)
		return
	case status != 0 && code != "":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"refused by test"}}`, code)
		return
	case status != 0:
		http.Error(w, "refused by test", status)
		return
	}
	if !fs.authorized(w, r) {
		return
	}
	if r.Header.Get("Upgrade") != agentproto.Upgrade || r.Header.Get("Connection") != "Upgrade" {
		http.Error(w, "bad upgrade", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		fs.t.Errorf("hijack: %v", err)
		return
	}
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + agentproto.Upgrade + "\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return
	}
	mux, st, err := agentproto.Accept(conn, rw.Reader, 10*time.Second)
	if err != nil {
		conn.Close()
		return
	}
	fc := &fakeConn{t: fs.t, conn: st, mux: mux, enc: agentproto.NewEncoder(st), msgs: make(chan agentproto.Message, 1024)}
	dec := agentproto.NewDecoder(st)
	fc.wg.Go(func() {
		defer close(fc.msgs)
		for {
			m, err := dec.Next()
			if err != nil {
				return
			}
			fc.msgs <- m
		}
	})
	fs.t.Cleanup(fc.Close)
	fs.conns <- fc
}

func (fs *fakeServer) snapshot(w http.ResponseWriter, r *http.Request) {
	if !fs.authorized(w, r) {
		return
	}
	fs.mu.Lock()
	b, ok := fs.snapshots[r.PathValue("id")]
	fs.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

func (fs *fakeServer) artifacts(w http.ResponseWriter, r *http.Request) {
	if !fs.authorized(w, r) {
		return
	}
	files := map[string]string{}
	tr := tar.NewReader(r.Body)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	io.Copy(io.Discard, r.Body) // the trailer comes with the body's end
	fs.uploads <- upload{runID: r.PathValue("runId"), attempt: r.URL.Query().Get(agentproto.AttemptQuery), files: files,
		warnings: r.Trailer.Values(agentproto.WarningsTrailer)}
	w.WriteHeader(http.StatusNoContent)
}

// setRefuseAll makes every connect get status (0: accept again).
func (fs *fakeServer) setRefuseAll(status int) {
	fs.mu.Lock()
	fs.refuseAll = status
	fs.mu.Unlock()
}

// accept waits for the agent's next connection.
func (fs *fakeServer) accept() *fakeConn {
	fs.t.Helper()
	select {
	case c := <-fs.conns:
		return c
	case <-time.After(testTimeout):
		fs.t.Fatal("no agent connection")
		return nil
	}
}

// welcome accepts a connection, reads Hello and answers with w.
func (fs *fakeServer) welcome(w agentproto.Message) (*fakeConn, agentproto.Message) {
	fs.t.Helper()
	c := fs.accept()
	hello := c.next(agentproto.TypeHello)
	w.Type = agentproto.TypeWelcome
	w.Protocol = agentproto.Version
	c.send(w)
	return c, hello
}

// fakeConn is the server's end of one agent connection.
type fakeConn struct {
	t    testing.TB
	conn net.Conn
	mux  io.Closer // the connection's streams; closing it ends the connection
	enc  *agentproto.Encoder
	msgs chan agentproto.Message // closed when the connection ends
	wg   sync.WaitGroup
	once sync.Once
}

// Close closes the connection and waits for its reader.
func (c *fakeConn) Close() {
	c.once.Do(func() {
		c.mux.Close()
		c.wg.Wait()
	})
}

func (c *fakeConn) send(m agentproto.Message) {
	c.t.Helper()
	if err := c.enc.Send(m); err != nil {
		c.t.Fatalf("send %s: %v", m.Type, err)
	}
}

// next returns the next message other than a heartbeat, which must be of
// type want.
func (c *fakeConn) next(want agentproto.Type) agentproto.Message {
	c.t.Helper()
	m := c.recv()
	if m.Type != want {
		c.t.Fatalf("got message %+v, want type %s", m, want)
	}
	return m
}

// recv returns the next message other than a heartbeat.
func (c *fakeConn) recv() agentproto.Message {
	c.t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatal("connection closed")
			}
			if m.Type == agentproto.TypeHeartbeat {
				continue
			}
			return m
		case <-timeout:
			c.t.Fatal("no message")
		}
	}
}

// output collects a job's Log messages until a message of type until,
// which it returns. It fails on a gap or overlap in either stream: each
// Log must start where the previous one ended, the first at from.
func (c *fakeConn) output(runID string, from agentproto.Offsets, until agentproto.Type) (stdout, stderr string, end agentproto.Message) {
	c.t.Helper()
	var bufs [2]bytes.Buffer
	next := [2]int64{from.Stdout, from.Stderr}
	for {
		m := c.recv()
		if m.RunID != runID {
			c.t.Fatalf("message for run %q, want %q: %+v", m.RunID, runID, m)
		}
		if m.Type == until {
			return bufs[0].String(), bufs[1].String(), m
		}
		if m.Type != agentproto.TypeLog {
			c.t.Fatalf("got %s while collecting output until %s: %+v", m.Type, until, m)
		}
		i := 0
		if m.Stream == "stderr" {
			i = 1
		}
		if m.Offset != next[i] {
			c.t.Fatalf("%s chunk at offset %d, want %d", m.Stream, m.Offset, next[i])
		}
		bufs[i].Write(m.Data)
		next[i] += int64(len(m.Data))
	}
}

// snapshotTar returns a tar of files.
func snapshotTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
