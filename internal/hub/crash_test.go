package hub

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store/sqlite"
)

// crashEnv, when set to a database path, makes TestKillMidBatchKeepsAcks
// act as the control plane that serves a hub on that database until it
// is killed.
const crashEnv = "KUMO_HUB_CRASH_CHILD"

// TestKillMidBatchKeepsAcks kills (SIGKILL) a control plane while many
// agents' reports are being stored, and checks, on the database it left,
// that every Done it acknowledged is stored (the job ended, its node
// freed), and that no job is half recorded: a job is ended exactly when
// its node was freed.
func TestKillMidBatchKeepsAcks(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	const nodes, killAfter = 48, 12
	dir := t.TempDir()
	path := filepath.Join(dir, "kumo.db")
	keys := make([]*agentproto.Key, nodes)
	jobs := make([]model.Job, nodes)
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		id := fmt.Sprintf("n%02d", i)
		jobs[i] = model.Job{ID: fmt.Sprintf("%s/jobs/j%02d", wsID, i), WorkspaceID: wsID, Name: fmt.Sprintf("j%02d", i),
			RunID: fmt.Sprintf("run-j%02d", i), ComputeID: cpuID, Command: "true", InstanceCount: 1,
			Status: model.JobPreparing, NodeID: id, Attempts: 1, Seq: int64(i + 1), CreatedAt: t0}
		n := model.Node{ID: id, ComputeID: cpuID, State: model.NodeRunning, CredentialHash: secret.HashToken(cred(id)),
			CreatedAt: t0, StateSince: t0, JobID: jobs[i].ID}
		keys[i] = newKey(t)
		if err := st.JobCreate(t.Context(), jobs[i]); err != nil {
			t.Fatal(err)
		}
		if err := st.NodeCreate(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		if err := st.NodeBindAgentKey(t.Context(), id, keys[i].Public()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestKillMidBatchKeepsAcks$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	defer kill()
	addr, pool := childAddr(t, stdout)

	agents := make([]*agent, nodes)
	for i := range nodes {
		resp, a := dialAddr(t, addr, pool, fmt.Sprintf("n%02d", i), cred(fmt.Sprintf("n%02d", i)), agentproto.Upgrade, signedBy(keys[i]))
		if a == nil {
			t.Fatalf("connect n%02d: %s", i, resp.Status)
		}
		a.send(agentproto.Message{Type: agentproto.TypeHello, Protocol: agentproto.Version, NodeID: fmt.Sprintf("n%02d", i),
			Jobs: []agentproto.JobReport{{RunID: jobs[i].RunID, State: agentproto.JobStarting}}})
		if m := a.recv(); m.Type != agentproto.TypeWelcome {
			t.Fatalf("n%02d: first answer %s, want Welcome", i, m.Type)
		}
		agents[i] = a
	}

	// Every agent sends its job's Started, Exited and Done in one write;
	// the control plane is killed once killAfter Dones are acknowledged,
	// with the others' writes in flight.
	var (
		mu     sync.Mutex
		acked  = map[string]bool{}
		wg     sync.WaitGroup
		enough = make(chan struct{})
		once   sync.Once
	)
	zero := 0
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := jobs[i].RunID
			var b []byte
			for _, m := range []agentproto.Message{
				{Type: agentproto.TypeStarted, RunID: run, Time: t0.Add(time.Minute)},
				{Type: agentproto.TypeExited, RunID: run, ExitCode: &zero, Reason: "exited", Time: t0.Add(2 * time.Minute)},
				{Type: agentproto.TypeDone, RunID: run, ExitCode: &zero, Reason: "exited", Time: t0.Add(2 * time.Minute)},
			} {
				line, _ := json.Marshal(m)
				b = append(append(b, line...), '\n')
			}
			if _, err := a.stream.Write(b); err != nil {
				return
			}
			for {
				m, err := a.dec.Next()
				if err != nil {
					return // killed
				}
				if m.Type == agentproto.TypeAck && m.RunID == run {
					mu.Lock()
					acked[run] = true
					if len(acked) >= killAfter {
						once.Do(func() { close(enough) })
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatal("too few Dones acknowledged in 60s")
	}
	kill()
	for _, a := range agents {
		a.conn.Close()
	}
	wg.Wait()

	st, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen after the kill: %v", err)
	}
	defer st.Close()
	mu.Lock()
	defer mu.Unlock()
	ended := 0
	for i, j := range jobs {
		got, err := st.JobGet(t.Context(), j.ID)
		if err != nil {
			t.Fatalf("JobGet(%s): %v", j.Name, err)
		}
		n, err := st.NodeGet(t.Context(), fmt.Sprintf("n%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		done := got.Status == model.JobCompleted
		freed := n.State == model.NodeIdle && n.JobID == ""
		if done {
			ended++
		}
		if acked[j.RunID] && !done {
			t.Errorf("job %s was acknowledged as done but is %s after the kill", j.Name, got.Status)
		}
		if done != freed {
			t.Errorf("job %s is %s while its node is %s with job %q: half recorded", j.Name, got.Status, n.State, n.JobID)
		}
	}
	t.Logf("%d Dones acknowledged before the kill, %d jobs stored as ended", len(acked), ended)
	if len(acked) == nodes {
		t.Logf("every Done was acknowledged before the kill landed; nothing was in flight")
	}
}

// childAddr reads the child's "serving ADDR CERT" line.
func childAddr(t *testing.T, r io.Reader) (string, *x509.CertPool) {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "serving ") {
				line <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, r)
	}()
	var l string
	select {
	case l = <-line:
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not start serving in 30s")
	}
	f := strings.Fields(l)
	if len(f) != 3 {
		t.Fatalf("child said %q", l)
	}
	der, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return f[1], pool
}

// crashChild serves a hub on the database at path until it is killed.
func crashChild(t *testing.T, path string) {
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	files, err := jobfiles.New(filepath.Join(filepath.Dir(path), "files"))
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{Store: st, Files: files, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := http.NewServeMux()
	for pattern, handler := range h.Routes() {
		mux.HandleFunc(pattern, handler)
	}
	srv := httptest.NewTLSServer(mux)
	fmt.Printf("serving %s %s\n", srv.Listener.Addr(), base64.StdEncoding.EncodeToString(srv.Certificate().Raw))
	select {} // until killed
}
