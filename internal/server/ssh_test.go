package server_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/server"
)

// echoTunnel stands in for the agent hub: its streams are loopback TCP
// connections to an echo server, and it records each stream's source.
type echoTunnel struct {
	addr      string
	connected map[string]bool

	mu      sync.Mutex
	sources []string
}

func (e *echoTunnel) Connected(id string) bool { return e.connected[id] }

func (e *echoTunnel) OpenSSH(ctx context.Context, id, source string) (net.Conn, error) {
	e.mu.Lock()
	e.sources = append(e.sources, source)
	e.mu.Unlock()
	return net.Dial("tcp", e.addr)
}

func newEchoTunnel(t *testing.T, connected ...string) *echoTunnel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	e := &echoTunnel{addr: ln.Addr().String(), connected: map[string]bool{}}
	for _, id := range connected {
		e.connected[id] = true
	}
	return e
}

var testHostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(mustHostKey())))

func mustHostKey() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
}

// TestComputeNodeSSH checks who may open an SSH tunnel to which node, and
// that an accepted one carries bytes both ways.
func TestComputeNodeSSH(t *testing.T) {
	tun := newEchoTunnel(t, "n1", "n2")
	h := newHarnessWith(t, func(c *server.Config) { c.Tunnel = tun })
	withCreds := computeBody("Standard_D2_v2", 0, 2)
	withCreds["properties"].(map[string]any)["properties"].(map[string]any)["userAccountCredentials"] = map[string]any{
		"adminUserName": "azureuser", "adminUserSshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDYxzpxGrhWY0TvKwICX40puHdAPAB1sgvNCRlHUyPyV test"}
	h.mustDo("PUT", wsBase+"/computes/ssh1", withCreds, model.RoleOwner, 201, nil)
	h.mustDo("PUT", wsBase+"/computes/plain", computeBody("Standard_D2_v2", 0, 2), model.RoleOwner, 201, nil)
	h.reconcile()
	now := time.Now()
	for _, n := range []model.Node{
		{ID: "n1", ComputeID: wsBase + "/computes/ssh1", State: model.NodeIdle, CreatedAt: now, StateSince: now},
		{ID: "n2", ComputeID: wsBase + "/computes/plain", State: model.NodeIdle, CreatedAt: now, StateSince: now},
		{ID: "n3", ComputeID: wsBase + "/computes/ssh1", State: model.NodePreparing, CreatedAt: now, StateSince: now},
	} {
		if err := h.st.NodeCreate(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	// listNodes publishes host keys of nodes of clusters with an admin
	// account only.
	for _, id := range []string{"n1", "n2"} {
		n, err := h.st.NodeGet(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		n.HostKey = testHostKey
		if err := h.st.NodeUpdate(context.Background(), n, n.State); err != nil {
			t.Fatal(err)
		}
	}
	for compute, want := range map[string]string{"ssh1": testHostKey, "plain": ""} {
		var l api.NodeList
		h.mustDo("POST", wsBase+"/computes/"+compute+"/listNodes", nil, model.RoleReader, 200, &l)
		for _, n := range l.Nodes {
			if n.NodeID != "n1" && n.NodeID != "n2" {
				continue
			}
			if n.SSHHostKey != want || (want != "" && !strings.HasPrefix(n.SSHHostKeyFingerprint, "SHA256:")) {
				t.Errorf("listNodes %s: node %s host key %q fingerprint %q, want %q", compute, n.NodeID, n.SSHHostKey, n.SSHHostKeyFingerprint, want)
			}
		}
	}
	path := func(compute, node string) string {
		return wsBase + "/computes/" + compute + "/nodes/" + node + "/ssh"
	}
	tests := []struct {
		name     string
		path     string
		role     model.Role
		upgrade  bool
		want     int
		wantCode string
	}{
		{"no token", path("ssh1", "n1"), "", true, http.StatusUnauthorized, api.CodeAuthenticationFailed},
		{"reader", path("ssh1", "n1"), model.RoleReader, true, http.StatusForbidden, api.CodeAuthorizationFailed},
		{"unknown compute", path("nope", "n1"), model.RoleContributor, true, http.StatusNotFound, api.CodeResourceNotFound},
		{"compute without credentials", path("plain", "n2"), model.RoleContributor, true, http.StatusConflict, api.CodeSSHNotEnabled},
		{"node of another compute", path("ssh1", "n2"), model.RoleContributor, true, http.StatusNotFound, api.CodeResourceNotFound},
		{"unknown node", path("ssh1", "n9"), model.RoleContributor, true, http.StatusNotFound, api.CodeResourceNotFound},
		{"no upgrade", path("ssh1", "n1"), model.RoleContributor, false, http.StatusUpgradeRequired, api.CodeInvalidRequestContent},
		{"node not connected", path("ssh1", "n3"), model.RoleContributor, true, http.StatusConflict, api.CodeNodeNotConnected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := h.doSSH(tt.path, tt.role, tt.upgrade)
			if status != tt.want || !strings.Contains(body, `"code":"`+tt.wantCode+`"`) {
				t.Errorf("status %d body %s; want %d with code %s", status, body, tt.want, tt.wantCode)
			}
		})
	}
	if len(tun.sources) != 0 {
		t.Errorf("refused requests opened streams: %q", tun.sources)
	}

	t.Run("contributor gets a tunnel", func(t *testing.T) {
		status, body, conn := h.doSSH(path("ssh1", "n1"), model.RoleContributor, true)
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("status %d body %s, want 101", status, body)
		}
		defer conn.Close()
		fmt.Fprint(conn, "SSH-2.0-test\r\n")
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := conn.r.ReadString('\n')
		if err != nil || line != "SSH-2.0-test\r\n" {
			t.Fatalf("echo through the tunnel = %q, %v", line, err)
		}
		tun.mu.Lock()
		defer tun.mu.Unlock()
		if len(tun.sources) != 1 || !strings.Contains(tun.sources[0], `token "contributor"`) {
			t.Errorf("stream sources = %q, want one naming the token", tun.sources)
		}
	})
}

// tunnelConn is an upgraded connection; reads go through r.
type tunnelConn struct {
	net.Conn
	r *bufio.Reader
}

// doSSH sends the tunnel request by hand and returns the status, the
// body of a refusal, and the connection after a 101.
func (h *harness) doSSH(path string, role model.Role, upgrade bool) (int, string, *tunnelConn) {
	h.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		h.t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", h.srv.URL+path+"?api-version=2024-04-01", nil)
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+h.tokens[role])
	}
	if upgrade {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", api.SSHUpgrade)
	}
	if err := req.Write(c); err != nil {
		h.t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, "", &tunnelConn{Conn: c, r: br}
	}
	b, _ := io.ReadAll(resp.Body)
	c.Close()
	return resp.StatusCode, string(b), nil
}
