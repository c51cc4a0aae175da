package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"kumo/api"
	"kumo/internal/store"
	"kumo/internal/stream"
)

// Tunnel opens byte streams to nodes' SSH servers; the agent hub
// implements it. Its methods must be safe for concurrent use. Connected
// reports whether a node's agent holds a connection now; OpenSSH opens a
// stream over it, source naming the caller for the node's records.
type Tunnel interface {
	Connected(nodeID string) bool
	OpenSSH(ctx context.Context, nodeID, source string) (net.Conn, error)
}

// fingerprint returns an authorized_keys line's SHA256 fingerprint, or ""
// when it does not parse.
func fingerprint(authorizedKey string) string {
	if authorizedKey == "" {
		return ""
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

// computeNodeSSH tunnels an SSH connection to one node of a compute: the
// request must ask for an Upgrade to api.SSHUpgrade; once answered 101,
// the connection carries the SSH bytes. The compute must have an admin
// account, and the node must belong to it and be connected.
func (s *Server) computeNodeSSH(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := s.loadCompute(ctx, r)
	if err != nil {
		return err
	}
	if c.Credentials.AdminUser == "" {
		return errorf(http.StatusConflict, api.CodeSSHNotEnabled,
			"compute %q has no administrator account: SSH login is not enabled (set adminUserName with a password or SSH key when creating it)", c.Name)
	}
	id := r.PathValue("node")
	n, err := s.store.NodeGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !strings.EqualFold(n.ComputeID, c.ID)) {
		return errorf(http.StatusNotFound, api.CodeResourceNotFound, "node %q was not found in compute %q", id, c.Name)
	}
	if err != nil {
		return err
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.SSHUpgrade) {
		w.Header().Set("Upgrade", api.SSHUpgrade)
		return errorf(http.StatusUpgradeRequired, api.CodeInvalidRequestContent,
			"this route tunnels SSH: send 'Connection: Upgrade' and 'Upgrade: %s' (kumo ssh-proxy does)", api.SSHUpgrade)
	}
	if s.tunnel == nil {
		return errorf(http.StatusConflict, api.CodeNodeNotConnected, "this server tunnels no SSH")
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	source := fmt.Sprintf("token %q via %s", callerName(ctx), host)
	var st net.Conn
	if s.tunnel.Connected(n.ID) {
		st, err = s.tunnel.OpenSSH(ctx, n.ID, source)
	}
	if st == nil {
		if err != nil {
			s.log.Warn("ssh tunnel", "node", n.ID, "err", err)
		}
		return errorf(http.StatusConflict, api.CodeNodeNotConnected, "node %q is %s and its agent is not connected now; try again shortly", n.ID, n.State)
	}
	defer st.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.SSHUpgrade)
	if err := brw.Flush(); err != nil {
		return nil
	}
	stream.Splice(&stream.Buffered{Conn: conn, R: brw.Reader}, st)
	return nil
}
