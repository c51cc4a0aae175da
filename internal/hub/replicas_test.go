package hub

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	nodeagent "kumo/internal/agent"
	"kumo/internal/agentproto"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
	"kumo/internal/store/replicatest"
)

// replicaWait bounds each wait in the replica tests.
const replicaWait = 30 * time.Second

// replica is one control plane replica's hub, served over TLS.
type replica struct {
	hub *Hub
	srv *httptest.Server
}

func startReplica(t *testing.T, st store.Store, files *jobfiles.Files, id string) *replica {
	t.Helper()
	// Every httptest TLS server has the same certificate: it is the
	// replicas' shared CA.
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	h := New(Config{Store: st, Files: files, HeartbeatInterval: 300 * time.Millisecond, PresenceTTL: 5 * time.Second,
		Replica: id, Address: srv.URL, CAFile: ca, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for pattern, handler := range h.Routes() {
		mux.HandleFunc(pattern, handler)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(h.Stop)
	t.Cleanup(h.Close) // runs first: ends the upgraded connections
	return &replica{hub: h, srv: srv}
}

// holds reports whether the replica's hub holds a connection to nodeID
// itself.
func (r *replica) holds(nodeID string) bool {
	r.hub.mu.Lock()
	defer r.hub.mu.Unlock()
	return r.hub.conns[nodeID] != nil
}

// replicaEnv is a node and its job files, shared by the replicas.
type replicaEnv struct {
	st     store.Store
	files  *jobfiles.Files
	caFile string
}

// twoReplicas starts replicas a and b of one control plane on backend,
// with an agent environment that trusts their CA. setup, when not nil,
// prepares the store before the replicas start. It returns the store as
// replica a sees it.
func twoReplicas(t *testing.T, backend string, setup func(store.Store)) (*replicaEnv, store.Store, *replica, *replica) {
	t.Helper()
	stA, stB := replicatest.Pair(t, backend)
	e := newReplicaEnv(t, stA)
	if setup != nil {
		setup(stA)
	}
	a := startReplica(t, stA, e.files, "a")
	b := startReplica(t, stB, e.files, "b")
	e.trust(t, a.srv)
	return e, stA, a, b
}

func newReplicaEnv(t *testing.T, st store.Store) *replicaEnv {
	t.Helper()
	files, err := jobfiles.New(filepath.Join(t.TempDir(), "files"))
	if err != nil {
		t.Fatal(err)
	}
	n := model.Node{ID: "n1", ComputeID: cpuID, State: model.NodePreparing, CredentialHash: secret.HashToken(cred("n1")),
		CreatedAt: t0, StateSince: t0}
	if err := st.NodeCreate(t.Context(), n); err != nil {
		t.Fatalf("NodeCreate: %v", err)
	}
	return &replicaEnv{st: st, files: files}
}

// trust makes the agents trust srv's certificate. Every httptest TLS
// server has the same one: one CA file serves all the replicas, as one
// shared CA does in production.
func (e *replicaEnv) trust(t *testing.T, srv *httptest.Server) {
	t.Helper()
	e.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(e.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runAgent runs a real node agent for n1 against urls until the returned
// stop is called (or the test ends).
func (e *replicaEnv) runAgent(t *testing.T, urls string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- nodeagent.Run(ctx, nodeagent.Config{NodeID: "n1", WorkDir: t.TempDir(), URL: urls, CAFile: e.caFile,
			Credential: cred("n1"), Grace: time.Second, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("nodeagent.Run: %v", err)
			}
		case <-time.After(replicaWait):
			t.Errorf("agent did not stop within %s", replicaWait)
		}
	}
	t.Cleanup(stop)
	return stop
}

// assign creates a job with command on n1, as the dispatcher would, and
// returns it.
func (e *replicaEnv) assign(t *testing.T, name, command string) model.Job {
	t.Helper()
	ctx := t.Context()
	j := model.Job{ID: wsID + "/jobs/" + name, WorkspaceID: wsID, Name: name, RunID: "run-" + name, ComputeID: cpuID,
		Command: command, InstanceCount: 1, Status: model.JobPreparing, NodeID: "n1", Attempts: 1, Seq: 1, CreatedAt: t0}
	if err := e.st.JobCreate(ctx, j); err != nil {
		t.Fatalf("JobCreate: %v", err)
	}
	n, err := e.st.NodeGet(ctx, "n1")
	if err != nil {
		t.Fatalf("NodeGet: %v", err)
	}
	from := n.State
	n.State, n.JobID = model.NodeRunning, j.ID
	if err := e.st.NodeUpdate(ctx, n, from); err != nil {
		t.Fatalf("NodeUpdate: %v", err)
	}
	return j
}

// waitFor polls cond until it holds, failing the test after replicaWait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(replicaWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, replicaWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitJob waits until the job with runID has status want.
func (e *replicaEnv) waitJob(t *testing.T, runID string, want model.JobStatus) {
	t.Helper()
	var got model.JobStatus
	waitFor(t, "job "+runID+" "+string(want), func() bool {
		j, err := e.st.JobGetByRunID(t.Context(), runID)
		if err != nil {
			t.Fatalf("JobGetByRunID: %v", err)
		}
		got = j.Status
		if got.Terminal() && got != want {
			t.Fatalf("job %s ended %s (%+v), want %s", runID, got, j.Error, want)
		}
		return got == want
	})
}

// TestReplicaSend: a node's agent connected to replica B gets, through the
// store, a Run that replica A sends it; A takes the node for connected
// while B holds it, and not once its agent is gone.
func TestReplicaSend(t *testing.T) {
	for _, backend := range replicatest.Backends {
		t.Run(backend, func(t *testing.T) {
			e, _, a, b := twoReplicas(t, backend, nil)
			stopAgent := e.runAgent(t, b.srv.URL)

			waitFor(t, "A sees n1 connected to B", func() bool { return a.hub.Connected("n1") })
			if !b.holds("n1") || a.holds("n1") {
				t.Fatalf("B holds n1: %t, A holds n1: %t; want only B", b.holds("n1"), a.holds("n1"))
			}
			j := e.assign(t, "j1", "echo hi")
			if err := a.hub.Send("n1", a.hub.RunMessage(j)); err != nil {
				t.Fatalf("A.Send(n1, run): %v", err)
			}
			e.waitJob(t, j.RunID, model.JobCompleted)
			if seen, ok := a.hub.LastSeen("n1"); !ok || seen.IsZero() {
				t.Errorf("A.LastSeen(n1) = %v, %t; want when B last heard from it", seen, ok)
			}

			stopAgent()
			waitFor(t, "A sees n1 disconnected", func() bool { return !a.hub.Connected("n1") })
			if err := a.hub.Send("n1", a.hub.RunMessage(j)); !errors.Is(err, ErrNotConnected) {
				t.Errorf("A.Send to a node no replica holds: %v, want ErrNotConnected", err)
			}
			if seen, ok := a.hub.LastSeen("n1"); !ok || seen.IsZero() {
				t.Errorf("A.LastSeen(n1) after the disconnect = %v, %t; want when it was last heard from", seen, ok)
			}
		})
	}
}

// TestAgentFailsOver: an agent given two replicas' URLs connects to the
// first; when that replica dies with the agent's job running, the agent
// reconnects to the second and reports the job's end there.
func TestAgentFailsOver(t *testing.T) {
	for _, backend := range replicatest.Backends {
		t.Run(backend, func(t *testing.T) {
			e, _, a, b := twoReplicas(t, backend, nil)
			e.runAgent(t, a.srv.URL+","+b.srv.URL)

			waitFor(t, "n1 connects to A", func() bool { return a.holds("n1") })
			flag := filepath.Join(t.TempDir(), "go")
			j := e.assign(t, "j1", "while [ ! -e "+flag+" ]; do sleep 0.05; done; echo done")
			if err := a.hub.Send("n1", a.hub.RunMessage(j)); err != nil {
				t.Fatalf("A.Send(n1, run): %v", err)
			}
			e.waitJob(t, j.RunID, model.JobRunning)

			// Replica A dies.
			a.hub.Stop()
			a.hub.Close()
			a.srv.Close()
			waitFor(t, "n1 reconnects to B", func() bool { return b.holds("n1") })
			if err := os.WriteFile(flag, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			e.waitJob(t, j.RunID, model.JobCompleted)
		})
	}
}

// countingStore counts NodePresenceList calls on a real store.
type countingStore struct {
	store.Store
	mu    sync.Mutex
	lists int
}

func (s *countingStore) NodePresenceList(ctx context.Context) ([]model.NodePresence, error) {
	s.mu.Lock()
	s.lists++
	s.mu.Unlock()
	return s.Store.NodePresenceList(ctx)
}

// TestConnectedByPresence: a hub takes a node it does not hold for
// connected exactly when another replica recorded it recently, and reads
// the presence once however often it is asked.
func TestConnectedByPresence(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		replica  string // the hub's
		presence *model.NodePresence
		want     bool
	}{
		{"held by another replica", "a", &model.NodePresence{Replica: "b", LastSeen: now.Add(-time.Second)}, true},
		{"heard from too long ago", "a", &model.NodePresence{Replica: "b", LastSeen: now.Add(-time.Minute)}, false},
		{"left its replica", "a", &model.NodePresence{Replica: "", LastSeen: now.Add(-time.Second)}, false},
		{"recorded by this replica before a restart", "a", &model.NodePresence{Replica: "a", LastSeen: now.Add(-time.Second)}, false},
		{"never recorded", "a", nil, false},
		{"hub without a replica ID", "", &model.NodePresence{Replica: "b", LastSeen: now.Add(-time.Second)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := replicatest.Pair(t, "sqlite")
			e := newReplicaEnv(t, st)
			setPresence(t, st, "n1", tt.presence)
			cs := &countingStore{Store: st}
			h := New(Config{Store: cs, Files: e.files, PresenceTTL: 10 * time.Second, Replica: tt.replica,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer h.Close()
			for range 1000 {
				if got := h.Connected("n1"); got != tt.want {
					t.Fatalf("Connected(n1) = %t, want %t", got, tt.want)
				}
			}
			if _, ok := h.LastSeen("n1"); ok != (tt.presence != nil && tt.replica != "") {
				t.Errorf("LastSeen(n1) ok = %t, want %t", ok, tt.presence != nil && tt.replica != "")
			}
			// 1000 calls in well under a few seconds: a read or two.
			if cs.lists > 3 {
				t.Errorf("1000 Connected calls read the presence %d times, want it cached", cs.lists)
			}
		})
	}
}

// TestHelloTakesOutbox: a message sent to a node while the replica that
// held it was dying waits in the store, and reaches the node right after
// the Welcome of its next connection, to another replica.
func TestHelloTakesOutbox(t *testing.T) {
	e := newEnv(t)
	e.node(t, "n1", model.NodeIdle, "")
	a := startReplica(t, e.st, e.files, "a")
	// Replica b died holding n1: its presence is still fresh.
	if err := e.st.NodePresenceSet(t.Context(), []model.NodePresence{{NodeID: "n1", Replica: "b", LastSeen: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if !a.hub.Connected("n1") {
		t.Fatal("A does not take n1 for connected to b")
	}
	cancel := agentproto.Message{Type: agentproto.TypeCancel, RunID: "run-x"}
	if err := a.hub.Send("n1", cancel); err != nil {
		t.Fatalf("A.Send(n1): %v", err)
	}

	ag := e.connectTo(t, a.srv, "n1")
	if m := ag.recv(); m.Type != cancel.Type || m.RunID != cancel.RunID {
		t.Errorf("message after the welcome = %s %s, want %s %s", m.Type, m.RunID, cancel.Type, cancel.RunID)
	}
	if ms, err := e.st.NodeMessageTake(t.Context(), "n1"); err != nil || len(ms) != 0 {
		t.Errorf("outbox after the hello = %v, %v; want empty", ms, err)
	}
	waitFor(t, "A records that it holds n1", func() bool {
		p, err := e.st.NodePresenceGet(t.Context(), "n1")
		return err == nil && p.Replica == "a"
	})
}

// setPresence records p (when not nil) as node's presence.
func setPresence(t *testing.T, st store.Store, node string, p *model.NodePresence) {
	t.Helper()
	if p == nil {
		return
	}
	np := *p
	np.NodeID = node
	if err := st.NodePresenceSet(t.Context(), []model.NodePresence{np}); err != nil {
		t.Fatal(err)
	}
}
