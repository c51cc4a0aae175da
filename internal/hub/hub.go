// Package hub is the control plane's side of the node agent protocol
// (package agentproto). It authenticates agents by their per-node
// credential, holds one upgraded connection per node, records what agents
// report (registration, job starts, output, exits) in the store and the job
// files, and sends agents their work. It also serves the agents' snapshot
// download and artifact upload routes.
//
// Connections are served on the goroutines of the HTTP server that hands
// them over; Close ends them all.
package hub

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/archive"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

// Config configures a Hub.
type Config struct {
	Store store.Store
	Files *jobfiles.Files
	// HeartbeatInterval is what agents are told to use; zero means 5s.
	HeartbeatInterval time.Duration
	// Changed is called (without blocking for long) after a node or job of
	// computeID changed state, so that the dispatcher and autoscaler look
	// again; nil means nobody is told.
	Changed func(computeID string)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives operational logs; nil means slog.Default().
	Log *slog.Logger
}

// Hub tracks connected agents. Its methods are safe for concurrent use.
type Hub struct {
	cfg Config

	mu       sync.Mutex
	conns    map[string]*conn     // by node ID
	lastSeen map[string]time.Time // by node ID
	closed   bool
}

type conn struct {
	nodeID    string
	computeID string
	enc       *agentproto.Encoder
	rwc       io.Closer
	// owns caches, by run ID, whether a job is this node's, so that a node
	// writes only its own jobs' logs. Only the connection's reader uses it.
	owns map[string]bool
}

// New returns a Hub.
func New(cfg Config) *Hub {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Changed == nil {
		cfg.Changed = func(string) {}
	}
	return &Hub{cfg: cfg, conns: map[string]*conn{}, lastSeen: map[string]time.Time{}}
}

// ErrNotConnected is returned by Send for a node without a connection.
var ErrNotConnected = errors.New("node not connected")

// Send sends m to a node's agent.
func (h *Hub) Send(nodeID string, m agentproto.Message) error {
	h.mu.Lock()
	c := h.conns[nodeID]
	h.mu.Unlock()
	if c == nil {
		return fmt.Errorf("send %s to %s: %w", m.Type, nodeID, ErrNotConnected)
	}
	if err := c.enc.Send(m); err != nil {
		c.rwc.Close()
		return fmt.Errorf("send %s to %s: %w", m.Type, nodeID, err)
	}
	return nil
}

// Connected reports whether a node's agent holds a connection.
func (h *Hub) Connected(nodeID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[nodeID] != nil
}

// LastSeen returns when a node's agent last sent anything; false when it
// has not been seen since the hub started.
func (h *Hub) LastSeen(nodeID string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.lastSeen[nodeID]
	return t, ok
}

// Close ends every agent connection and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	conns := h.conns
	h.conns = map[string]*conn{}
	h.mu.Unlock()
	for _, c := range conns {
		c.rwc.Close()
	}
}

func (h *Hub) seen(nodeID string) {
	now := h.cfg.Now()
	h.mu.Lock()
	h.lastSeen[nodeID] = now
	h.mu.Unlock()
}

// Routes lists the HTTP patterns the hub serves, for mounting on a mux.
func (h *Hub) Routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET " + agentproto.ConnectPath:                       h.serveConnect,
		"GET " + agentproto.SnapshotPath + "{id}":             h.serveSnapshot,
		"PUT " + agentproto.ArtifactsPath + "{run}/artifacts": h.serveArtifacts,
	}
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"error\":{\"code\":%q,\"message\":%q}}\n", code, msg)
}

// authNode checks the node credential; it returns the node or writes the
// error.
func (h *Hub) authNode(w http.ResponseWriter, r *http.Request) (model.Node, bool) {
	id := r.Header.Get(agentproto.NodeHeader)
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if id == "" || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		httpError(w, http.StatusUnauthorized, "AuthenticationFailed", "a node ID and node credential are required")
		return model.Node{}, false
	}
	n, err := h.cfg.Store.NodeGet(r.Context(), id)
	if err != nil || subtle.ConstantTimeCompare([]byte(n.CredentialHash), []byte(secret.HashToken(tok))) != 1 {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.cfg.Log.Error("agent auth", "node", id, "err", err)
		}
		httpError(w, http.StatusUnauthorized, "AuthenticationFailed", "unknown node or wrong node credential")
		return model.Node{}, false
	}
	if n.State == model.NodeLeaving || n.State == model.NodeUnusable {
		httpError(w, http.StatusForbidden, "NodeRemoved", "node "+id+" is "+string(n.State)+": "+n.Reason)
		return model.Node{}, false
	}
	return n, true
}

func (h *Hub) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	n, ok := h.authNode(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if n.JobID == "" {
		httpError(w, http.StatusForbidden, "AuthorizationFailed", "node runs no job")
		return
	}
	j, err := h.cfg.Store.JobGet(r.Context(), n.JobID)
	if err != nil || j.SnapshotID != id {
		httpError(w, http.StatusForbidden, "AuthorizationFailed", "snapshot "+id+" is not for this node's job")
		return
	}
	f, err := h.cfg.Files.OpenSnapshot(id)
	if err != nil {
		httpError(w, http.StatusNotFound, "ResourceNotFound", "snapshot "+id+" was not found")
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	io.Copy(w, f)
}

func (h *Hub) serveArtifacts(w http.ResponseWriter, r *http.Request) {
	n, ok := h.authNode(w, r)
	if !ok {
		return
	}
	run := r.PathValue("run")
	j, err := h.cfg.Store.JobGetByRunID(r.Context(), run)
	if err != nil || j.NodeID != n.ID {
		httpError(w, http.StatusForbidden, "AuthorizationFailed", "job "+run+" is not this node's")
		return
	}
	body := http.MaxBytesReader(w, r.Body, h.cfg.Files.ArtifactLimits().StreamBytes())
	err = h.cfg.Files.SaveArtifacts(run, body)
	switch archive.HTTPStatus(err) {
	case 0:
	case http.StatusRequestEntityTooLarge:
		httpError(w, http.StatusRequestEntityTooLarge, "ArtifactsTooLarge", err.Error())
		return
	default:
		httpError(w, http.StatusBadRequest, "InvalidArtifacts", err.Error())
		return
	}
	if err != nil {
		h.cfg.Log.Error("hub: store artifacts", "runId", run, "err", err)
		httpError(w, http.StatusInternalServerError, "InternalServerError", "the artifacts could not be stored")
		return
	}
	// The agent's warnings (what it left out) come in a trailer, which
	// is read with the body's end.
	if _, err := io.Copy(io.Discard, io.LimitReader(body, 1<<20)); err == nil {
		h.recordWarnings(r.Context(), run, r.Trailer.Values(agentproto.WarningsTrailer))
	}
	w.WriteHeader(http.StatusNoContent)
}

// recordWarnings adds an artifacts upload's warnings to the job.
func (h *Hub) recordWarnings(ctx context.Context, runID string, warnings []string) {
	if len(warnings) == 0 {
		return
	}
	for i, w := range warnings {
		if len(w) > 512 {
			warnings[i] = w[:512] + "..."
		}
		warnings[i] = "artifacts: " + warnings[i]
	}
	err := store.JobChange(ctx, h.cfg.Store, runID, func(j *model.Job) bool { return j.AddWarnings(warnings...) })
	if err != nil {
		h.cfg.Log.Error("hub: record artifact warnings", "runId", runID, "err", err)
	}
}

func (h *Hub) serveConnect(w http.ResponseWriter, r *http.Request) {
	n, ok := h.authNode(w, r)
	if !ok {
		return
	}
	if up := r.Header.Get("Upgrade"); up != agentproto.Upgrade {
		w.Header().Set("Upgrade", agentproto.Upgrade)
		httpError(w, http.StatusUpgradeRequired, "UnsupportedProtocol",
			fmt.Sprintf("agent protocol %q is not spoken here; this control plane speaks %s", up, agentproto.Upgrade))
		return
	}
	rc := http.NewResponseController(w)
	netConn, brw, err := rc.Hijack()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "InternalServerError", "cannot upgrade this connection")
		return
	}
	defer netConn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", agentproto.Upgrade)
	if err := brw.Flush(); err != nil {
		return
	}
	c := &conn{nodeID: n.ID, computeID: n.ComputeID, enc: agentproto.NewEncoder(netConn), rwc: netConn, owns: map[string]bool{}}
	dec := agentproto.NewDecoder(brw.Reader)
	first, err := dec.Next()
	if err != nil || first.Type != agentproto.TypeHello {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	if old := h.conns[n.ID]; old != nil {
		old.rwc.Close()
	}
	h.conns[n.ID] = c
	h.mu.Unlock()
	h.seen(n.ID)
	defer func() {
		h.mu.Lock()
		if h.conns[n.ID] == c {
			delete(h.conns, n.ID)
		}
		h.mu.Unlock()
	}()

	ctx := context.WithoutCancel(r.Context())
	if err := h.hello(ctx, c, first); err != nil {
		h.cfg.Log.Error("agent hello", "node", n.ID, "err", err)
		return
	}
	for {
		m, err := dec.Next()
		if err != nil {
			return
		}
		h.seen(n.ID)
		if err := h.handle(ctx, c, m); err != nil {
			h.cfg.Log.Error("agent message", "node", n.ID, "type", m.Type, "err", err)
		}
	}
}
