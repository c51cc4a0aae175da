package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/model"
	"kumo/internal/secret"
)

// Several control plane replicas may share one store (PostgreSQL), each
// with its own hub and its own agent connections. A hub with a
// Config.Replica records, in the store, which of its nodes it holds and
// when each was last heard from (node presence: in one write per
// heartbeat interval, and at once on connect and disconnect). Send
// reaches a node held by another replica through the store: it appends
// the message to the node's outbox and publishes the node's ID on
// NodeChannel; every hub listens there and the one holding the node takes
// its outbox and sends it, in order. A node's hello also takes its
// outbox. Connected and LastSeen answer for nodes held elsewhere from the
// store's presence, read at most once a second.
//
// The presence also carries each node's SSH login count and when it last
// fell to zero, written at once when the count changes: Sessions answers
// for nodes held elsewhere from it. Each replica registers itself in the
// store's replicas table at Start (its Config.Address and the SHA-256 of a
// random per-process secret), refreshes the row with its presence writes,
// and deletes it at Stop; OpenSSH reaches a node held by another replica
// through that replica's relay route, authenticated by the caller's row
// (relay.go).

// NodeChannel is the store feed channel on which a hub announces that a
// node's outbox has messages; the payload is the node's ID.
const NodeChannel = "kumo_node"

// presenceCacheAge is how long Connected and LastSeen use the presence
// they read from the store before they read it again.
const presenceCacheAge = time.Second

// storeTimeout bounds the store calls the hub makes without a caller's
// context (Send, the presence writes).
const storeTimeout = 10 * time.Second

// Start starts the hub's replica service: the replica's registration, the
// presence writes, the outbox cleanup, and listening on NodeChannel. It
// does nothing without a Config.Replica. Stop ends it.
func (h *Hub) Start(ctx context.Context) error {
	if h.cfg.Replica == "" {
		return nil
	}
	tok, _, hash, err := secret.NewToken()
	if err != nil {
		return fmt.Errorf("hub start: %w", err)
	}
	h.relaySecret.Store(&tok)
	h.secretHash = hash
	if err := h.register(ctx); err != nil {
		return fmt.Errorf("hub start: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	ch, err := h.cfg.Store.Subscribe(ctx, NodeChannel)
	if err != nil {
		cancel()
		h.unregister()
		return fmt.Errorf("hub start: %w", err)
	}
	done := make(chan struct{})
	h.mu.Lock()
	h.svcCancel, h.svcDone = cancel, done
	h.mu.Unlock()
	go func() {
		defer close(done)
		h.serveReplica(ctx, ch)
	}()
	return nil
}

// Stop ends what Start started and waits for it. Agent connections stay
// (Close ends them).
func (h *Hub) Stop() {
	h.mu.Lock()
	cancel, done := h.svcCancel, h.svcDone
	h.svcCancel, h.svcDone = nil, nil
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
		h.unregister()
	}
}

// register creates or refreshes this replica's row in the store.
func (h *Hub) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	r := model.Replica{Name: h.cfg.Replica, Address: h.cfg.Address, SecretHash: h.secretHash, HeartbeatAt: h.cfg.Now()}
	if err := h.cfg.Store.ReplicaSet(ctx, r); err != nil {
		return fmt.Errorf("register replica %s: %w", h.cfg.Replica, err)
	}
	return nil
}

// unregister deletes this replica's row: the others stop relaying to it.
func (h *Hub) unregister() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := h.cfg.Store.ReplicaDelete(ctx, h.cfg.Replica); err != nil {
		h.cfg.Log.Error("hub: unregister replica", "replica", h.cfg.Replica, "err", err)
	}
}

func (h *Hub) serveReplica(ctx context.Context, ch <-chan string) {
	tick := time.NewTicker(h.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			h.writePresence(ctx)
			if err := h.register(ctx); err != nil {
				h.cfg.Log.Error("hub: refresh replica", "err", err)
			}
			h.expireMessages(ctx)
		case nodeID, ok := <-ch:
			if !ok {
				return
			}
			if nodeID == "" {
				// Notifications may have been lost: look at every node held.
				for _, c := range h.welcomedConns() {
					h.deliverPending(ctx, c)
				}
				continue
			}
			h.mu.Lock()
			c := h.conns[nodeID]
			h.mu.Unlock()
			if c != nil && c.welcomed.Load() {
				h.deliverPending(ctx, c)
			}
		}
	}
}

// welcomedConns returns the connections that finished their hello.
func (h *Hub) welcomedConns() []*conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	var cs []*conn
	for _, c := range h.conns {
		if c.welcomed.Load() {
			cs = append(cs, c)
		}
	}
	return cs
}

// writePresence records, in one write, every held node's presence.
func (h *Hub) writePresence(ctx context.Context) {
	h.presWriteMu.Lock()
	defer h.presWriteMu.Unlock()
	h.mu.Lock()
	ps := make([]model.NodePresence, 0, len(h.conns))
	for id := range h.conns {
		ps = append(ps, h.presenceOf(id))
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := h.cfg.Store.NodePresenceSet(ctx, ps); err != nil {
		h.cfg.Log.Error("hub: record node presence", "nodes", len(ps), "err", err)
	}
}

// presenceOf returns a node's presence as this hub holds it; h.mu must
// be held.
func (h *Hub) presenceOf(nodeID string) model.NodePresence {
	s := h.sessions[nodeID]
	return model.NodePresence{NodeID: nodeID, Replica: h.cfg.Replica, LastSeen: h.lastSeen[nodeID],
		SSHOpen: s.open, SSHLastClosed: s.lastClosed}
}

// recordPresence records in the store, at once, the presence of a node
// this hub holds; nothing without a Config.Replica.
func (h *Hub) recordPresence(ctx context.Context, nodeID string) {
	if h.cfg.Replica == "" {
		return
	}
	h.presWriteMu.Lock()
	defer h.presWriteMu.Unlock()
	h.mu.Lock()
	if h.conns[nodeID] == nil {
		h.mu.Unlock()
		return
	}
	p := h.presenceOf(nodeID)
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := h.cfg.Store.NodePresenceSet(ctx, []model.NodePresence{p}); err != nil {
		h.cfg.Log.Error("hub: record node presence", "node", nodeID, "err", err)
	}
}

// expireMessages drops outbox messages older than MessageTTL: their node
// was held by no replica for that long, and the node's next hello
// reconciles its jobs anyway.
func (h *Hub) expireMessages(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	n, err := h.cfg.Store.NodeMessageDeleteBefore(ctx, h.cfg.Now().Add(-h.cfg.MessageTTL))
	switch {
	case err != nil:
		h.cfg.Log.Error("hub: expire node messages", "err", err)
	case n > 0:
		h.cfg.Log.Warn("hub: dropped undelivered node messages", "messages", n, "olderThan", h.cfg.MessageTTL)
	}
}

// connected records in the store, at once, that this replica holds c's
// node, and sends what waits in its outbox. It runs after c's hello.
func (h *Hub) connected(ctx context.Context, c *conn) {
	c.welcomed.Store(true)
	if h.cfg.Replica == "" {
		return
	}
	h.recordPresence(ctx, c.nodeID)
	h.deliverPending(ctx, c)
}

// disconnected records in the store that this replica no longer holds
// the node (unless another replica took it meanwhile).
func (h *Hub) disconnected(ctx context.Context, nodeID string) {
	if h.cfg.Replica == "" {
		return
	}
	h.presWriteMu.Lock()
	defer h.presWriteMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := h.cfg.Store.NodePresenceClear(ctx, nodeID, h.cfg.Replica, h.cfg.Now()); err != nil {
		h.cfg.Log.Error("hub: clear node presence", "node", nodeID, "err", err)
	}
}

// deliverPending takes c's node's outbox and sends it on c, in order.
// One delivery runs at a time, so two takes cannot interleave their
// messages. A message that cannot be sent is lost with the connection;
// the node's next hello reconciles its jobs.
func (h *Hub) deliverPending(ctx context.Context, c *conn) {
	h.deliverMu.Lock()
	defer h.deliverMu.Unlock()
	tctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	ms, err := h.cfg.Store.NodeMessageTake(tctx, c.nodeID)
	if err != nil {
		h.cfg.Log.Error("hub: take node messages", "node", c.nodeID, "err", err)
		return
	}
	for i, sm := range ms {
		var m agentproto.Message
		if err := json.Unmarshal(sm.Body, &m); err != nil {
			h.cfg.Log.Error("hub: undecodable node message", "node", c.nodeID, "seq", sm.Seq, "err", err)
			continue
		}
		if err := c.enc.Send(m); err != nil {
			c.rwc.Close()
			h.cfg.Log.Warn("hub: node messages lost with the connection", "node", c.nodeID, "messages", len(ms)-i, "err", err)
			return
		}
	}
}

// sendRemote sends m to a node held by another replica, through the
// store; ErrNotConnected when no replica holds it. A holder not heard from
// lately (paused, or its presence writes slow) still gets the message: it
// delivers it when it resumes, or the node's next hello on any replica
// takes it, or it expires after MessageTTL with a node that is gone.
func (h *Hub) sendRemote(nodeID string, m agentproto.Message) error {
	if h.cfg.Replica == "" || !h.held(nodeID) {
		return fmt.Errorf("send %s to %s: %w", m.Type, nodeID, ErrNotConnected)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("send %s to %s: %w", m.Type, nodeID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := h.cfg.Store.NodeMessageAppend(ctx, model.NodeMessage{NodeID: nodeID, Body: body, CreatedAt: h.cfg.Now()}); err != nil {
		return fmt.Errorf("send %s to %s: %w", m.Type, nodeID, err)
	}
	if err := h.cfg.Store.Publish(ctx, NodeChannel, nodeID); err != nil {
		// The message waits for the node's next hello, or a resync.
		return fmt.Errorf("send %s to %s: %w", m.Type, nodeID, err)
	}
	return nil
}

// remote reports whether another replica holds the node, by the store's
// presence: a replica other than this one, heard from within PresenceTTL.
func (h *Hub) remote(nodeID string) bool {
	p, ok := h.presence(nodeID)
	return ok && p.Replica != "" && p.Replica != h.cfg.Replica && h.cfg.Now().Sub(p.LastSeen) <= h.cfg.PresenceTTL
}

// held reports whether a replica holds the node by the store's presence,
// however long ago it was heard from.
func (h *Hub) held(nodeID string) bool {
	p, ok := h.presence(nodeID)
	return ok && p.Replica != ""
}

// presence returns the node's presence as the store had it at most
// presenceCacheAge ago.
func (h *Hub) presence(nodeID string) (model.NodePresence, bool) {
	h.presMu.Lock()
	defer h.presMu.Unlock()
	if now := time.Now(); h.presAt.IsZero() || now.Sub(h.presAt) >= presenceCacheAge {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		ps, err := h.cfg.Store.NodePresenceList(ctx)
		cancel()
		if err != nil {
			h.cfg.Log.Error("hub: read node presence", "err", err)
		} else {
			h.pres = make(map[string]model.NodePresence, len(ps))
			for _, p := range ps {
				h.pres[p.NodeID] = p
			}
		}
		h.presAt = now
	}
	p, ok := h.pres[nodeID]
	return p, ok
}

// presenceState is the hub's part for several replicas.
type presenceState struct {
	svcCancel context.CancelFunc // ends the Start service; nil when not started
	svcDone   chan struct{}

	relaySecret atomic.Pointer[string] // this process's replica secret; set by Start
	secretHash  string                 // its SHA-256 (secret.HashToken), as stored
	relays      chan struct{}          // one token per relayed SSH stream being served

	deliverMu sync.Mutex // one outbox delivery at a time

	// presWriteMu orders the presence writes, so that a batch read before
	// a node's change cannot overwrite it.
	presWriteMu sync.Mutex

	presMu sync.Mutex
	pres   map[string]model.NodePresence // by node ID, as read at presAt
	presAt time.Time                     // zero: never read
}
