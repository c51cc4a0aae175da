package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/model"
)

// EventSSHLoginRefused is the kind of the compute event recording a
// refused SSH login on a node, with its source.
const EventSSHLoginRefused = "SSHLoginRefused"

// sessions is what a node's agent last reported of its SSH logins.
type sessions struct {
	open       int
	lastClosed time.Time // when the count last fell to zero; zero if never
}

// Sessions reports the SSH logins open on a node, and when the last one
// closed (zero if none has, since the hub started). For a node this hub
// does not hold, it answers, with replicas, from the store's presence (at
// most a second old) as the holding replica last recorded it; none are
// open on a node no replica has heard from within PresenceTTL. It never
// blocks for long and is safe for concurrent use.
func (h *Hub) Sessions(nodeID string) (open int, lastClosed time.Time) {
	h.mu.Lock()
	s, local := h.sessions[nodeID], h.conns[nodeID] != nil
	h.mu.Unlock()
	if local || h.cfg.Replica == "" {
		return s.open, s.lastClosed
	}
	p, ok := h.presence(nodeID)
	if !ok || p.Replica == h.cfg.Replica {
		return s.open, s.lastClosed
	}
	if s.lastClosed.After(p.SSHLastClosed) {
		p.SSHLastClosed = s.lastClosed
	}
	if p.Replica == "" || h.cfg.Now().Sub(p.LastSeen) > h.cfg.PresenceTTL {
		// No replica holds it (or its holder is gone): its logins ended
		// with its agent's connection, as far as anyone can tell.
		return 0, p.SSHLastClosed
	}
	return p.SSHOpen, p.SSHLastClosed
}

// setSessions records a node's reported count; when it falls to zero the
// autoscaler is told, so that the node's idle clock starts now. With
// replicas, a change is recorded in the node's presence at once.
func (h *Hub) setSessions(ctx context.Context, c *conn, open int) {
	now := h.cfg.Now()
	h.mu.Lock()
	s := h.sessions[c.nodeID]
	was := s.open
	s.open = max(open, 0)
	if was > 0 && s.open == 0 {
		s.lastClosed = now
	}
	h.sessions[c.nodeID] = s
	h.mu.Unlock()
	if was != s.open {
		h.recordPresence(ctx, c.nodeID)
		h.cfg.Changed(c.computeID)
	}
}

// OpenSSH opens a byte stream to a node's SSH server through its agent's
// connection; source names the caller in the node's records of refused
// logins. With replicas, a node held by another replica is reached
// through that replica (see relay.go). It returns ErrNotConnected
// (wrapped) when no replica holds the node's agent's connection.
func (h *Hub) OpenSSH(ctx context.Context, nodeID, source string) (net.Conn, error) {
	st, err := h.openLocal(nodeID, source)
	if errors.Is(err, ErrNotConnected) && h.cfg.Replica != "" && h.remote(nodeID) {
		return h.openRemote(ctx, nodeID, source)
	}
	return st, err
}

// openLocal opens a stream on this hub's own connection to the node.
func (h *Hub) openLocal(nodeID, source string) (net.Conn, error) {
	h.mu.Lock()
	c := h.conns[nodeID]
	h.mu.Unlock()
	if c == nil || c.mux == nil {
		return nil, fmt.Errorf("open ssh stream to %s: %w", nodeID, ErrNotConnected)
	}
	st, err := c.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open ssh stream to %s: %w", nodeID, err)
	}
	line, _ := json.Marshal(agentproto.StreamHeader{Source: source})
	st.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := st.Write(append(line, '\n')); err != nil {
		st.Close()
		return nil, fmt.Errorf("open ssh stream to %s: %w", nodeID, err)
	}
	st.SetWriteDeadline(time.Time{})
	return st, nil
}

// sshSettings returns what a node of comp needs to serve SSH: nil when
// the cluster has no admin account.
func sshSettings(comp model.Compute, n model.Node) *agentproto.SSHSettings {
	cr := comp.Credentials
	if cr.AdminUser == "" || (cr.PasswordHash == "" && cr.SSHPublicKey == "") {
		return nil
	}
	s := &agentproto.SSHSettings{User: cr.AdminUser, PasswordHash: cr.PasswordHash, PublicKey: cr.SSHPublicKey}
	if strings.EqualFold(comp.RemoteLogin, "Enabled") {
		s.Port = n.SSHPort
	}
	return s
}

// loginRefused records a node's report of a refused SSH login as a
// compute event. What the agent sends is bounded and quoted: it is the
// node's word, and the node runs other people's code.
func (h *Hub) loginRefused(ctx context.Context, c *conn, m agentproto.Message) error {
	msg := fmt.Sprintf("node %s refused an SSH login from %s", c.nodeID, clip(m.Source, 200))
	if m.User != "" {
		msg += fmt.Sprintf(" as %q", clip(m.User, 64))
	}
	if m.Message != "" {
		msg += ": " + clip(m.Message, 200)
	}
	t := h.cfg.Now().UTC()
	return h.cfg.Store.EventAppend(ctx, model.Event{ComputeID: c.computeID, Time: t, Kind: EventSSHLoginRefused, Message: msg})
}

func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
