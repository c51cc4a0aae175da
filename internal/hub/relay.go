package hub

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"kumo/internal/secret"
	"kumo/internal/store"
	"kumo/internal/stream"
)

// An SSH stream to a node held by another replica is relayed by that
// replica: the caller's hub asks it on RelaySSHPath, authenticated by the
// caller's replica name and per-process secret, which the holder checks
// against the caller's row in the store's replicas table; the holder
// opens a stream on its own connection to the node and splices the two.
// The route is for replicas only: no user token opens it.

// RelaySSHPath is the route prefix (the node's ID follows) on which a
// replica serves the other replicas SSH streams to the nodes it holds.
const RelaySSHPath = "/internal/replica/ssh/"

const (
	// relayUpgrade is the protocol a relay request upgrades to: the bytes
	// of the SSH stream, both ways.
	relayUpgrade = "kumo-ssh-relay"
	// relayReplicaHeader names the calling replica; its secret comes as
	// a bearer token.
	relayReplicaHeader = "Kumo-Replica"
	// relaySourceHeader names the user behind the stream, for the node's
	// records of refused logins.
	relaySourceHeader = "Kumo-Ssh-Source"
	// relayTimeout bounds a relay's dial and upgrade.
	relayTimeout = 30 * time.Second
)

// openRemote opens an SSH stream to a node held by another replica,
// through that replica's relay route. ErrNotConnected (wrapped) when the
// holder is not registered or has no address.
func (h *Hub) openRemote(ctx context.Context, nodeID, source string) (net.Conn, error) {
	p, _ := h.presence(nodeID)
	fail := func(err error) (net.Conn, error) {
		return nil, fmt.Errorf("open ssh stream to %s via replica %s: %w", nodeID, p.Replica, err)
	}
	tok := h.relaySecret.Load()
	if tok == nil {
		return fail(errors.New("hub not started"))
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	r, err := h.cfg.Store.ReplicaGet(sctx, p.Replica)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && r.Address == "":
		return fail(ErrNotConnected)
	case err != nil:
		return fail(err)
	}
	if r.Address == h.cfg.Address {
		// Replicas that bind every interface register the loopback
		// address: on other hosts, that is this replica itself.
		return fail(fmt.Errorf("replica %s is registered at this replica's own address %s", p.Replica, r.Address))
	}
	u, err := url.Parse(r.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fail(fmt.Errorf("replica address %q is not an http(s) URL", r.Address))
	}
	dctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	raw, err := h.dialReplica(dctx, u)
	if err != nil {
		return fail(err)
	}
	c, err := relayHandshake(dctx, raw, u.JoinPath(RelaySSHPath, url.PathEscape(nodeID)).String(), h.cfg.Replica, *tok, source)
	if err != nil {
		raw.Close()
		return fail(err)
	}
	return c, nil
}

// dialReplica opens a connection to the replica at u: TLS verified with
// Config.CAFile for https.
func (h *Hub) dialReplica(ctx context.Context, u *url.URL) (net.Conn, error) {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "http" {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	cfg := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if h.cfg.CAFile != "" {
		pem, err := os.ReadFile(h.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read replica CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("replica CA %s holds no PEM certificate", h.cfg.CAFile)
		}
	}
	d := tls.Dialer{Config: cfg}
	return d.DialContext(ctx, "tcp", addr)
}

// relayHandshake asks for the relay on raw and returns the stream once
// answered 101.
func relayHandshake(ctx context.Context, raw net.Conn, target, replica, tok, source string) (net.Conn, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", relayUpgrade)
	req.Header.Set(relayReplicaHeader, replica)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(relaySourceHeader, clip(source, 400))
	if d, ok := ctx.Deadline(); ok {
		raw.SetDeadline(d)
	}
	if err := req.Write(raw); err != nil {
		return nil, fmt.Errorf("send relay request: %w", err)
	}
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("read relay response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		var body struct {
			Error struct{ Code, Message string }
		}
		json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&body)
		err := fmt.Errorf("relay refused: %s: %s: %s", resp.Status, body.Error.Code, body.Error.Message)
		if body.Error.Code == nodeNotConnectedCode {
			err = fmt.Errorf("%w: %s", ErrNotConnected, body.Error.Message)
		}
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return &stream.Buffered{Conn: raw, R: br}, nil
}

// nodeNotConnectedCode is the error code of a relay to a node the replica
// does not hold (api.CodeNodeNotConnected).
const nodeNotConnectedCode = "NodeNotConnected"

// serveRelaySSH serves another replica an SSH stream to a node this hub
// holds.
func (h *Hub) serveRelaySSH(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Replica == "" {
		httpError(w, http.StatusNotFound, "ResourceNotFound", "this control plane is the only replica: it relays nothing")
		return
	}
	caller, ok := h.authReplica(w, r)
	if !ok {
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), relayUpgrade) {
		w.Header().Set("Upgrade", relayUpgrade)
		httpError(w, http.StatusUpgradeRequired, "UnsupportedProtocol", "this route relays SSH streams: upgrade to "+relayUpgrade)
		return
	}
	select {
	case h.relays <- struct{}{}:
		defer func() { <-h.relays }()
	default:
		httpError(w, http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("this replica relays %d SSH streams already; try again shortly", cap(h.relays)))
		return
	}
	node := r.PathValue("node")
	source := clip(r.Header.Get(relaySourceHeader), 400) + " through replica " + caller
	st, err := h.openLocal(node, source)
	if err != nil {
		httpError(w, http.StatusNotFound, nodeNotConnectedCode, "node "+node+" is not connected to replica "+h.cfg.Replica)
		return
	}
	defer st.Close()
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "InternalServerError", "cannot upgrade this connection")
		return
	}
	defer c.Close()
	c.SetDeadline(time.Time{})
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", relayUpgrade)
	if err := brw.Flush(); err != nil {
		return
	}
	stream.Splice(&stream.Buffered{Conn: c, R: brw.Reader}, st)
}

// authReplica checks the caller's replica name and secret against its
// registration, which must be fresh (refreshed within PresenceTTL); it
// returns the caller's name or writes the error. The secret is never
// logged.
func (h *Hub) authReplica(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.Header.Get(relayReplicaHeader)
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if name == "" || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		httpError(w, http.StatusUnauthorized, "AuthenticationFailed", "a replica name and replica secret are required")
		return "", false
	}
	rep, err := h.cfg.Store.ReplicaGet(r.Context(), name)
	if err != nil || subtle.ConstantTimeCompare([]byte(rep.SecretHash), []byte(secret.HashToken(tok))) != 1 {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.cfg.Log.Error("replica auth", "replica", clip(name, 64), "err", err)
		}
		h.cfg.Log.Warn("relay refused: unknown replica or wrong secret", "replica", clip(name, 64), "remote", r.RemoteAddr)
		httpError(w, http.StatusUnauthorized, "AuthenticationFailed", "unknown replica or wrong replica secret")
		return "", false
	}
	if age := h.cfg.Now().Sub(rep.HeartbeatAt); age > h.cfg.PresenceTTL {
		h.cfg.Log.Warn("relay refused: stale replica", "replica", name, "remote", r.RemoteAddr, "age", age)
		httpError(w, http.StatusForbidden, "AuthorizationFailed",
			fmt.Sprintf("replica %s has not refreshed its registration for %s", name, age.Round(time.Second)))
		return "", false
	}
	return name, true
}
