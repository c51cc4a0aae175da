package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/agentproto"
)

// TestStolenNodeCredentialRefused: while a job runs on a cluster node,
// another process that read the node's credential file (as a job that
// escaped its sandbox could) tries to connect as the node and to upload the
// job's artifacts. Both are refused, and the real job completes with its
// own output.
func TestStolenNodeCredentialRefused(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "shared", 0, 1, "PT30S")
	// The job runs long enough for the attempts below (about ten seconds).
	submitJob(t, s, "victim", "shared",
		"echo real-start; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; mkdir -p outputs; echo real > outputs/result.txt; echo real-end")
	var node, runID string
	waitFor(t, 60*time.Second, "victim to run", func() (bool, string) {
		j := getJob(t, s, "victim")
		node, runID = j.Properties.NodeID, j.Properties.RunID
		return j.Properties.Status == api.JobRunning, string(j.Properties.Status)
	})
	cred, err := os.ReadFile(filepath.Join(s.dir, "data", "nodes", node, "credential"))
	if err != nil {
		t.Fatalf("read the node's credential as an attacker would: %v", err)
	}
	thief := &stolen{s: s, node: node, credential: strings.TrimSpace(string(cred))}
	if thief.key, err = agentproto.NewKey(); err != nil {
		t.Fatal(err)
	}

	// Connect as the node, with a proof of the thief's own key, and with
	// none.
	if status, code := thief.connect(t, true); status != http.StatusUnauthorized || code != agentproto.KeyMismatchCode {
		t.Errorf("connect with the stolen credential = %d %s, want 401 %s", status, code, agentproto.KeyMismatchCode)
	}
	if status, _ := thief.connect(t, false); status != http.StatusUnauthorized {
		t.Errorf("connect with the stolen credential and no proof = %d, want 401", status)
	}
	// Upload forged artifacts for the job's attempt.
	if status, code := thief.upload(t, runID); status != http.StatusUnauthorized {
		t.Errorf("artifacts upload with the stolen credential = %d %s, want 401", status, code)
	}
	if j := getJob(t, s, "victim"); j.Properties.Status != api.JobRunning || j.Properties.NodeID != node {
		t.Errorf("victim after the attempts: %s on %q, want still running on %s", j.Properties.Status, j.Properties.NodeID, node)
	}

	j := waitJob(t, s, "victim", 60*time.Second)
	if j.Properties.Status != api.JobCompleted || j.Properties.Attempts != 1 {
		t.Fatalf("victim: %s after %d attempts %+v, want Completed on its first", j.Properties.Status, j.Properties.Attempts, j.Properties.Error)
	}
	if log := jobLog(t, s, "victim"); !strings.Contains(log, "real-start") || !strings.Contains(log, "real-end") || strings.Contains(log, "forged") {
		t.Errorf("victim's log = %q, want its own output only", log)
	}
	dl := t.TempDir()
	if out, err := run(t, s.dir, "job", "download", "victim", "--download-path", dl); err != nil {
		t.Fatalf("download: %v %s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(dl, "outputs", "result.txt")); err != nil || strings.TrimSpace(string(got)) != "real" {
		t.Errorf("outputs/result.txt = %q, %v; want the job's own", got, err)
	}
	if _, err := os.Stat(filepath.Join(dl, "outputs", "forged.txt")); err == nil {
		t.Error("the forged artifact was stored")
	}
	if !strings.Contains(s.out.String(), "key mismatch") || strings.Contains(s.out.String(), thief.credential) {
		t.Errorf("the control plane's log should record the refusals without the credential:\n%s", s.out)
	}
}

// TestRestartedAgentReplaced: an agent restarted by hand is a new process
// with a new key, so the control plane refuses it: it stops at once rather
// than hang, its node is made unusable and replaced, and its job is
// requeued once and completes on the new node.
func TestRestartedAgentReplaced(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "again", 0, 1, "PT30S")
	submitJob(t, s, "survivor", "again", "sleep 5; echo survived")
	var node string
	waitFor(t, 60*time.Second, "survivor to run", func() (bool, string) {
		j := getJob(t, s, "survivor")
		node = j.Properties.NodeID
		return j.Properties.Status == api.JobRunning, string(j.Properties.Status)
	})
	raw, err := os.ReadFile(filepath.Join(s.dir, "data", "nodes", node, "instance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		PID  int      `json:"pid"`
		Argv []string `json:"argv"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil || rec.PID == 0 || len(rec.Argv) == 0 {
		t.Fatalf("node record %s: %v", raw, err)
	}
	if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the node's agent: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, rec.Argv[0], rec.Argv[1:]...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the restarted agent did not stop within 60s:\n%s", out)
	}
	if err == nil || !(strings.Contains(string(out), "another agent process") || strings.Contains(string(out), "removed this node")) {
		t.Errorf("restarted agent: %v, want a non-zero exit saying the node is another process's or removed:\n%s", err, out)
	}
	t.Logf("the restarted agent stopped: %v\n%s", err, out)
	j := waitJob(t, s, "survivor", 90*time.Second)
	if j.Properties.Status != api.JobCompleted || j.Properties.Attempts != 2 || j.Properties.NodeID == node {
		t.Errorf("survivor: %s after %d attempts on %q, want Completed on its second attempt on a new node (first: %s)",
			j.Properties.Status, j.Properties.Attempts, j.Properties.NodeID, node)
	}
}

// stolen is an attacker holding a node's credential and a key of its own.
type stolen struct {
	s          *server
	node       string
	credential string
	key        *agentproto.Key
}

// connect sends the agent's connect request over a TLS connection of its
// own, signed (with that connection's keying material) when sign, and
// returns the status and ARM error code.
func (a *stolen) connect(t *testing.T, sign bool) (int, string) {
	t.Helper()
	u, err := url.Parse(a.s.base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: a.s.caPool(), ServerName: u.Hostname()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := http.NewRequest(http.MethodGet, a.s.base+agentproto.ConnectPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.authorize(req)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", agentproto.Upgrade)
	if sign {
		cs := conn.ConnectionState()
		ekm, err := agentproto.Exporter(&cs)
		if err != nil {
			t.Fatal(err)
		}
		a.key.Sign(req.Header, agentproto.Request{Method: req.Method, URI: req.URL.RequestURI(), NodeID: a.node, Exporter: ekm}, time.Now())
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, armCode(resp)
}

// upload sends a forged artifacts tar for the run's first attempt, signed
// by the thief's key.
func (a *stolen) upload(t *testing.T, runID string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "forged"
	tw.WriteHeader(&tar.Header{Name: "outputs/forged.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	io.WriteString(tw, body)
	tw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := agentproto.ArtifactsPath + runID + "/artifacts?" + agentproto.AttemptQuery + "=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, a.s.base+path, &buf)
	if err != nil {
		t.Fatal(err)
	}
	a.authorize(req)
	a.key.Sign(req.Header, agentproto.Request{Method: req.Method, URI: req.URL.RequestURI(), NodeID: a.node}, time.Now())
	resp, err := a.s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, armCode(resp)
}

func (a *stolen) authorize(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+a.credential)
	req.Header.Set(agentproto.NodeHeader, a.node)
}

// armCode reads and closes an ARM error body and returns its code.
func armCode(resp *http.Response) string {
	defer resp.Body.Close()
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	json.Unmarshal(b, &body)
	return body.Error.Code
}

// TestPlainHTTPNodes: with TLS off (loopback only), agents still sign
// their requests (there is no TLS connection to bind) and run jobs.
func TestPlainHTTPNodes(t *testing.T) {
	s := startServer(t, "", append(fastNodes, "--tls", "off")...)
	if !strings.HasPrefix(s.base, "http://") {
		t.Fatalf("base %s, want plain http", s.base)
	}
	createCluster(t, s, "plain", 0, 1, "PT30S")
	submitJob(t, s, "hello", "plain", "echo hello-plain")
	if j := waitJob(t, s, "hello", 60*time.Second); j.Properties.Status != api.JobCompleted {
		t.Fatalf("hello: %s %+v\n%s", j.Properties.Status, j.Properties.Error, s.out)
	}
	if log := jobLog(t, s, "hello"); !strings.Contains(log, "hello-plain") {
		t.Errorf("log = %q", log)
	}
}
