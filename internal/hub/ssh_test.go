package hub

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/agentproto"
	"kumo/internal/model"
)

const testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheNodeForTheHubTestOnly0000000000 node"

func (e *env) compute(t *testing.T, cr model.Credentials, remoteLogin string) {
	t.Helper()
	ws := model.Workspace{ID: wsID, Subscription: "s", ResourceGroup: "rg", Name: "ws", Location: "local", CreatedAt: t0, ModifiedAt: t0}
	if err := e.st.WorkspaceCreate(t.Context(), ws); err != nil {
		t.Fatalf("WorkspaceCreate: %v", err)
	}
	c := model.Compute{ID: cpuID, WorkspaceID: wsID, Name: "cpu", Location: "local", VMSize: "Standard_D2_v2",
		Priority: model.PriorityDedicated, Credentials: cr, RemoteLogin: remoteLogin, State: model.StateSucceeded,
		ETag: "e", CreatedAt: t0, ModifiedAt: t0}
	op := model.Operation{ID: "op1", Location: "local", Kind: model.OpCreate, ComputeID: cpuID, Status: model.OpSucceeded, StartedAt: t0}
	if err := e.st.ComputeCreate(t.Context(), c, op); err != nil {
		t.Fatalf("ComputeCreate: %v", err)
	}
}

// TestWelcomeCarriesSSHSettings: Welcome carries the cluster's login (the
// password's hash, never the password) and the port only when public
// access is enabled; the node's host key from Hello is stored.
func TestWelcomeCarriesSSHSettings(t *testing.T) {
	cr := model.Credentials{AdminUser: "admin", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", SSHPublicKey: "ssh-ed25519 AAAA user"}
	tests := []struct {
		name        string
		cr          model.Credentials
		remoteLogin string
		want        *agentproto.SSHSettings
	}{
		{"no account", model.Credentials{}, "Disabled", nil},
		{"tunnel only", cr, "Disabled", &agentproto.SSHSettings{User: "admin", PasswordHash: cr.PasswordHash, PublicKey: cr.SSHPublicKey}},
		{"public port", cr, "Enabled", &agentproto.SSHSettings{User: "admin", PasswordHash: cr.PasswordHash, PublicKey: cr.SSHPublicKey, Port: 50007}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.compute(t, tt.cr, tt.remoteLogin)
			e.node(t, "n1", model.NodePreparing, "")
			n := e.getNode(t, "n1")
			n.SSHPort = 50007
			if err := e.st.NodeUpdate(t.Context(), n, n.State); err != nil {
				t.Fatal(err)
			}
			_, welcome := e.connect(t, "n1", agentproto.Message{HostKey: testHostKey})
			if diff := cmp.Diff(tt.want, welcome.SSH); diff != "" {
				t.Errorf("Welcome.SSH (-want +got):\n%s", diff)
			}
			if got := e.getNode(t, "n1").HostKey; got != testHostKey {
				t.Errorf("stored host key = %q, want %q", got, testHostKey)
			}
		})
	}
}

// TestSSHStreamsSessionsAndRefusals: the hub opens a stream to the agent
// with the caller's source first; the agent's session counts and refused
// logins are recorded.
func TestSSHStreamsSessionsAndRefusals(t *testing.T) {
	e := newEnv(t)
	e.node(t, "n1", model.NodePreparing, "")
	a, _ := e.connect(t, "n1", agentproto.Message{HostKey: testHostKey})

	accepted := make(chan io.ReadWriteCloser, 1)
	go func() {
		st, err := a.conn.AcceptStream()
		if err == nil {
			accepted <- st
		}
		close(accepted)
	}()
	st, err := e.hub.OpenSSH(t.Context(), "n1", `token "alice" via 10.1.2.3`)
	if err != nil {
		t.Fatalf("OpenSSH: %v", err)
	}
	defer st.Close()
	agentSide := <-accepted
	if agentSide == nil {
		t.Fatal("the agent got no stream")
	}
	defer agentSide.Close()
	br := bufio.NewReader(agentSide)
	line, err := br.ReadString('\n')
	var h agentproto.StreamHeader
	if err != nil || json.Unmarshal([]byte(line), &h) != nil || h.Source != `token "alice" via 10.1.2.3` {
		t.Fatalf("stream header = %q (%v), want the source", line, err)
	}
	io.WriteString(st, "SSH-2.0-client\r\n")
	if got, _ := br.ReadString('\n'); got != "SSH-2.0-client\r\n" {
		t.Errorf("bytes through the stream = %q", got)
	}
	if _, err := e.hub.OpenSSH(t.Context(), "n9", "x"); err == nil {
		t.Error("OpenSSH to a node without a connection succeeded")
	}

	one, zero := 1, 0
	a.send(agentproto.Message{Type: agentproto.TypeHeartbeat, Sessions: &one})
	a.barrier()
	if open, closed := e.hub.Sessions("n1"); open != 1 || !closed.IsZero() {
		t.Errorf("Sessions after one opened = %d, %v; want 1, zero", open, closed)
	}
	a.send(agentproto.Message{Type: agentproto.TypeHeartbeat, Sessions: &zero})
	a.barrier()
	if open, closed := e.hub.Sessions("n1"); open != 0 || closed.IsZero() {
		t.Errorf("Sessions after it closed = %d, %v; want 0 and a close time", open, closed)
	}

	a.send(agentproto.Message{Type: agentproto.TypeAuthFailed, Source: "10.9.9.9", User: "root\x1b[2J", Message: "wrong user name or password"})
	a.barrier()
	evs, err := e.st.EventList(t.Context(), cpuID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != EventSSHLoginRefused || !strings.Contains(evs[0].Message, "10.9.9.9") || strings.Contains(evs[0].Message, "\x1b") {
		t.Errorf("events = %+v, want one SSHLoginRefused naming the source, without control characters", evs)
	}
}
