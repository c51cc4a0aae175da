package hub

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"kumo/internal/agentproto"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
	"kumo/internal/store/replicatest"
)

// sshCompute creates the workspace and compute of n1 with an admin
// account that logs in with key, and returns key's signer.
func sshCompute(t *testing.T, st store.Store) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ws := model.Workspace{ID: wsID, Subscription: "s", ResourceGroup: "rg", Name: "ws", Location: "local", CreatedAt: t0, ModifiedAt: t0}
	if err := st.WorkspaceCreate(t.Context(), ws); err != nil {
		t.Fatalf("WorkspaceCreate: %v", err)
	}
	cr := model.Credentials{AdminUser: "admin", SSHPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}
	c := model.Compute{ID: cpuID, WorkspaceID: wsID, Name: "cpu", Location: "local", VMSize: "Standard_D2_v2",
		Priority: model.PriorityDedicated, Credentials: cr, RemoteLogin: "Disabled", State: model.StateSucceeded,
		ETag: "e", CreatedAt: t0, ModifiedAt: t0}
	op := model.Operation{ID: "op1", Location: "local", Kind: model.OpCreate, ComputeID: cpuID, Status: model.OpSucceeded, StartedAt: t0}
	if err := st.ComputeCreate(t.Context(), c, op); err != nil {
		t.Fatalf("ComputeCreate: %v", err)
	}
	return signer
}

// TestReplicaSSH: replica A opens an SSH stream to a node whose real agent
// is connected to replica B, through B's relay; an SSH login over it (the
// node's host key checked) runs a command, and A's Sessions sees the login
// open while it lasts and its close after.
func TestReplicaSSH(t *testing.T) {
	for _, backend := range replicatest.Backends {
		t.Run(backend, func(t *testing.T) {
			var key ssh.Signer
			e, stA, a, b := twoReplicas(t, backend, func(st store.Store) { key = sshCompute(t, st) })
			e.runAgent(t, b.srv.URL)

			waitFor(t, "A sees n1 connected to B", func() bool { return a.hub.Connected("n1") })
			var hostKey ssh.PublicKey
			waitFor(t, "n1's host key is recorded", func() bool {
				n, err := stA.NodeGet(t.Context(), "n1")
				if err != nil || n.HostKey == "" {
					return false
				}
				if hostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(n.HostKey)); err != nil {
					t.Fatalf("node host key %q: %v", n.HostKey, err)
				}
				return true
			})
			if a.holds("n1") {
				t.Fatal("A holds n1; want only B to")
			}
			if open, _ := a.hub.Sessions("n1"); open != 0 {
				t.Fatalf("A.Sessions(n1) before any login = %d, want 0", open)
			}

			st, err := a.hub.OpenSSH(t.Context(), "n1", `token "alice" via 10.1.2.3`)
			if err != nil {
				t.Fatalf("A.OpenSSH(n1): %v", err)
			}
			defer st.Close()
			conf := &ssh.ClientConfig{User: "admin", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
				HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: replicaWait}
			c, chans, reqs, err := ssh.NewClientConn(st, "n1", conf)
			if err != nil {
				t.Fatalf("SSH handshake through A's relay to B: %v", err)
			}
			client := ssh.NewClient(c, chans, reqs)
			defer client.Close()
			sess, err := client.NewSession()
			if err != nil {
				t.Fatalf("new session: %v", err)
			}
			out, err := sess.Output("echo relayed")
			if err != nil || string(out) != "relayed\n" {
				t.Errorf("echo relayed = %q, %v; want %q", out, err, "relayed\n")
			}
			waitFor(t, "A sees the login open on n1", func() bool {
				open, _ := a.hub.Sessions("n1")
				return open == 1
			})

			client.Close()
			waitFor(t, "A sees the login closed on n1", func() bool {
				open, closed := a.hub.Sessions("n1")
				return open == 0 && !closed.IsZero()
			})
		})
	}
}

// TestRelayRefused: B's relay route refuses, in the ARM error shape, a
// caller without a registered replica's fresh name and secret, or asking
// wrongly, and then opens no stream to the node; the registered caller's
// request opens one.
func TestRelayRefused(t *testing.T) {
	e := newEnv(t)
	e.node(t, "n1", model.NodeIdle, "")
	b := startReplica(t, e.st, e.files, "b")
	now := time.Now()
	for _, r := range []model.Replica{
		{Name: "a", Address: "https://127.0.0.1:1", SecretHash: secret.HashToken("secret-a"), HeartbeatAt: now},
		{Name: "old", Address: "https://127.0.0.1:1", SecretHash: secret.HashToken("secret-old"), HeartbeatAt: now.Add(-time.Hour)},
	} {
		if err := e.st.ReplicaSet(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	b.hub.relays = make(chan struct{}, 1) // MaxRelays 1
	ag := e.connectTo(t, b.srv, "n1")
	streams := make(chan io.ReadWriteCloser, 10)
	go func() {
		for {
			st, err := ag.conn.AcceptStream()
			if err != nil {
				close(streams)
				return
			}
			streams <- st
		}
	}()

	tests := []struct {
		name                  string
		replica, secret, node string
		upgrade               string
		status                int
		code                  string
	}{
		{"no credentials", "", "", "n1", relayUpgrade, http.StatusUnauthorized, "AuthenticationFailed"},
		{"unknown replica", "zz", "secret-a", "n1", relayUpgrade, http.StatusUnauthorized, "AuthenticationFailed"},
		{"wrong secret", "a", "secret-old", "n1", relayUpgrade, http.StatusUnauthorized, "AuthenticationFailed"},
		{"a user's token", "a", "kumo_usertoken", "n1", relayUpgrade, http.StatusUnauthorized, "AuthenticationFailed"},
		{"stale replica", "old", "secret-old", "n1", relayUpgrade, http.StatusForbidden, "AuthorizationFailed"},
		{"no upgrade", "a", "secret-a", "n1", "", http.StatusUpgradeRequired, "UnsupportedProtocol"},
		{"node not held", "a", "secret-a", "n9", relayUpgrade, http.StatusNotFound, "NodeNotConnected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.srv.URL+RelaySSHPath+tt.node, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.replica != "" {
				req.Header.Set(relayReplicaHeader, tt.replica)
				req.Header.Set("Authorization", "Bearer "+tt.secret)
			}
			if tt.upgrade != "" {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", tt.upgrade)
			}
			resp, err := b.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("body: %v", err)
			}
			if resp.StatusCode != tt.status || body.Error.Code != tt.code {
				t.Errorf("status, code = %d, %q (%s); want %d, %q", resp.StatusCode, body.Error.Code, body.Error.Message, tt.status, tt.code)
			}
			if tt.secret != "" && strings.Contains(body.Error.Message, tt.secret) {
				t.Errorf("the error message %q repeats the secret", body.Error.Message)
			}
		})
	}

	// The registered replica gets its stream: the first the node sees.
	pool := b.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	raw, err := tls.Dial("tcp", b.srv.Listener.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	st, err := relayHandshake(t.Context(), raw, b.srv.URL+RelaySSHPath+"n1", "a", "secret-a", `token "alice"`)
	if err != nil {
		t.Fatalf("relay as a: %v", err)
	}
	defer st.Close()
	var nodeSide io.ReadWriteCloser
	select {
	case nodeSide = <-streams:
	case <-time.After(replicaWait):
		t.Fatal("the node got no stream")
	}
	defer nodeSide.Close()
	br := bufio.NewReader(nodeSide)
	line, err := br.ReadString('\n')
	var h agentproto.StreamHeader
	if err != nil || json.Unmarshal([]byte(line), &h) != nil || h.Source != `token "alice" through replica a` {
		t.Fatalf("first stream's header = %q (%v), want the relayed request's source", line, err)
	}
	io.WriteString(nodeSide, "SSH-2.0-node\r\n")
	if got, _ := bufio.NewReader(st).ReadString('\n'); got != "SSH-2.0-node\r\n" {
		t.Errorf("bytes back through the relay = %q", got)
	}

	// While it lasts, a second relay is past MaxRelays.
	raw2, err := tls.Dial("tcp", b.srv.Listener.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer raw2.Close()
	if _, err := relayHandshake(t.Context(), raw2, b.srv.URL+RelaySSHPath+"n1", "a", "secret-a", "x"); err == nil ||
		!strings.Contains(err.Error(), "503") {
		t.Errorf("a second relay at once: %v, want 503", err)
	}
	select {
	case extra := <-streams:
		if extra != nil {
			extra.Close()
			t.Error("the refused relay opened a stream to the node")
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSessionsByPresence: for a node it does not hold, a hub answers
// Sessions from the presence another replica recorded.
func TestSessionsByPresence(t *testing.T) {
	now := time.Now()
	closedAt := now.Add(-time.Minute).UTC()
	tests := []struct {
		name       string
		replica    string // the hub's
		presence   *model.NodePresence
		wantOpen   int
		wantClosed time.Time
	}{
		{"held by another replica", "a", &model.NodePresence{Replica: "b", LastSeen: now, SSHOpen: 2, SSHLastClosed: closedAt}, 2, closedAt},
		{"holder not heard from lately", "a", &model.NodePresence{Replica: "b", LastSeen: now.Add(-time.Minute), SSHOpen: 2, SSHLastClosed: closedAt}, 0, closedAt},
		{"left its replica", "a", &model.NodePresence{Replica: "", LastSeen: now, SSHOpen: 1, SSHLastClosed: closedAt}, 0, closedAt},
		{"recorded by this replica before a restart", "a", &model.NodePresence{Replica: "a", LastSeen: now, SSHOpen: 1}, 0, time.Time{}},
		{"never recorded", "a", nil, 0, time.Time{}},
		{"hub without a replica ID", "", &model.NodePresence{Replica: "b", LastSeen: now, SSHOpen: 1}, 0, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := replicatest.Pair(t, "sqlite")
			e := newReplicaEnv(t, st)
			setPresence(t, st, "n1", tt.presence)
			h := New(Config{Store: st, Files: e.files, PresenceTTL: 10 * time.Second, Replica: tt.replica,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer h.Close()
			open, closed := h.Sessions("n1")
			if open != tt.wantOpen || !closed.Equal(tt.wantClosed) {
				t.Errorf("Sessions(n1) = %d, %v; want %d, %v", open, closed, tt.wantOpen, tt.wantClosed)
			}
		})
	}
}
