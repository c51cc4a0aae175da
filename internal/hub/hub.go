// Package hub is the control plane's side of the node agent protocol
// (package agentproto). It authenticates agents by their per-node
// credential and by a proof that the request comes from the agent process
// the node is bound to (agentproto.Key: the node is bound to the key of
// its first accepted connect), holds one upgraded connection per node,
// records what agents report (registration, job starts, output, exits) in
// the store and the job files, and sends agents their work. It also serves
// the agents' snapshot download and artifact upload routes.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

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
	// ReportWindow is how long a connection's Started or Exited waits
	// for the job's next reports, to be stored with them in one write;
	// zero means 20ms, negative means no wait.
	ReportWindow time.Duration

	// Replica is this control plane replica's ID, unique among the
	// replicas that share the store (see replicas.go). "" means the only
	// one: the hub keeps no presence in the store, and Send, Connected
	// and LastSeen know its own connections only.
	Replica string
	// PresenceTTL is how long after another replica last heard from a
	// node the hub still takes the node for connected there; zero means
	// three heartbeat intervals. The replicas' clocks must agree to well
	// within it.
	PresenceTTL time.Duration
	// MessageTTL is how long a message for a node held by another
	// replica waits in the store to be taken; zero means 10 minutes.
	MessageTTL time.Duration
	// Address is this replica's base URL as the other replicas reach it
	// (https://host:port), for their SSH relays to the nodes it holds;
	// "" means they cannot reach it. Used with Replica only.
	Address string
	// CAFile is a PEM file of the CA that signed the other replicas'
	// certificates, for this hub's SSH relays to them over https; ""
	// means the system's roots.
	CAFile string
	// MaxRelays bounds the SSH streams this hub relays at once for other
	// replicas; more are refused (503). Zero means 256.
	MaxRelays int
}

// Hub tracks connected agents. Its methods are safe for concurrent use.
type Hub struct {
	cfg Config

	mu       sync.Mutex
	conns    map[string]*conn     // by node ID
	lastSeen map[string]time.Time // by node ID
	sessions map[string]sessions  // by node ID: SSH logins the agents report
	closed   bool

	// gangMu serializes the ends of gang jobs' ranks (finishGang): each
	// rank that ends well frees its node and the last one completes the
	// job, which needs the others' states read and written as one step.
	gangMu sync.Mutex

	presenceState // with several replicas (replicas.go)
}

type conn struct {
	nodeID    string
	computeID string
	enc       *agentproto.Encoder
	rwc       io.Closer
	mux       *yamux.Session // opens streams to the node's SSH server
	welcomed  atomic.Bool    // its hello is done: messages may be sent
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
	if cfg.ReportWindow == 0 {
		cfg.ReportWindow = 20 * time.Millisecond
	}
	if cfg.Changed == nil {
		cfg.Changed = func(string) {}
	}
	if cfg.PresenceTTL <= 0 {
		cfg.PresenceTTL = 3 * cfg.HeartbeatInterval
	}
	if cfg.MessageTTL <= 0 {
		cfg.MessageTTL = 10 * time.Minute
	}
	if cfg.MaxRelays <= 0 {
		cfg.MaxRelays = 256
	}
	h := &Hub{cfg: cfg, conns: map[string]*conn{}, lastSeen: map[string]time.Time{}, sessions: map[string]sessions{}}
	h.relays = make(chan struct{}, cfg.MaxRelays)
	return h
}

// ErrNotConnected is returned by Send for a node without a connection.
var ErrNotConnected = errors.New("node not connected")

// Send sends m to a node's agent: on this hub's connection to it, or,
// when another replica holds the node, through the store (see
// replicas.go; nil then means the message is stored for that replica).
func (h *Hub) Send(nodeID string, m agentproto.Message) error {
	h.mu.Lock()
	c := h.conns[nodeID]
	h.mu.Unlock()
	if c == nil {
		return h.sendRemote(nodeID, m)
	}
	if err := c.enc.Send(m); err != nil {
		c.rwc.Close()
		return fmt.Errorf("send %s to %s: %w", m.Type, nodeID, err)
	}
	return nil
}

// Connected reports whether a node's agent holds a connection, to this
// hub or (by the store's presence, at most a second old) to another
// replica's.
func (h *Hub) Connected(nodeID string) bool {
	h.mu.Lock()
	local := h.conns[nodeID] != nil
	h.mu.Unlock()
	return local || h.cfg.Replica != "" && h.remote(nodeID)
}

// LastSeen returns when a node's agent last sent anything, to this hub
// or (by the store's presence, at most a second old) to any replica;
// false when it has not been seen since the hub started (and, with
// replicas, no replica recorded it).
func (h *Hub) LastSeen(nodeID string) (time.Time, bool) {
	h.mu.Lock()
	t, ok := h.lastSeen[nodeID]
	h.mu.Unlock()
	if h.cfg.Replica == "" {
		return t, ok
	}
	if p, found := h.presence(nodeID); found && p.LastSeen.After(t) {
		return p.LastSeen, true
	}
	return t, ok
}

// Close ends every agent connection and refuses new ones. With replicas,
// the nodes' presence is left to age out (Config.PresenceTTL) or to be
// taken by the replica they reconnect to; what is sent to them meanwhile
// waits in the store for their next hello.
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

// current reports whether c is its node's current connection; reports on
// a replaced one are dropped.
func (h *Hub) current(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[c.nodeID] == c
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
		"GET " + agentproto.ConnectPath:                        h.serveConnect,
		"GET " + agentproto.SnapshotPath + "{id}":              h.serveSnapshot,
		"PUT " + agentproto.ArtifactsPath + "{run}/artifacts":  h.serveArtifacts,
		"GET " + agentproto.ArtifactsPath + "{run}/checkpoint": h.serveCheckpoint,
		"GET " + RelaySSHPath + "{node}":                       h.serveRelaySSH,
	}
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"error\":{\"code\":%q,\"message\":%q}}\n", code, msg)
}

// authNode checks the node credential and the node's state; it returns the
// node or writes the error.
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
	if n.State == model.NodeLeaving || n.State == model.NodeUnusable || n.State == model.NodePreempted {
		httpError(w, http.StatusForbidden, agentproto.NodeRemovedCode, "node "+id+" is "+string(n.State)+": "+n.Reason)
		return model.Node{}, false
	}
	return n, true
}

// authKey checks that r is signed by the agent key n is bound to; for a
// connect (bind), the proof must also cover the TLS connection, and an
// unbound node is bound to r's key. It writes the error when it returns
// false. A refusal is logged with the node, the caller's address and key
// IDs, never the credential.
func (h *Hub) authKey(w http.ResponseWriter, r *http.Request, n model.Node, bind bool) bool {
	req := agentproto.Request{Method: r.Method, URI: r.URL.RequestURI(), NodeID: n.ID}
	if bind && r.TLS != nil {
		ekm, err := agentproto.Exporter(r.TLS)
		if err != nil {
			h.cfg.Log.Warn("agent refused", "node", n.ID, "remote", r.RemoteAddr, "err", err)
			httpError(w, http.StatusUnauthorized, "AuthenticationFailed", "this TLS connection has no keying material for an agent key proof")
			return false
		}
		req.Exporter = ekm
	}
	key, err := agentproto.Verify(r.Header, req, h.cfg.Now())
	if err != nil {
		h.cfg.Log.Warn("agent refused", "node", n.ID, "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		httpError(w, http.StatusUnauthorized, "AuthenticationFailed", err.Error())
		return false
	}
	bound := n.AgentKey
	if bound == "" && bind {
		err := h.cfg.Store.NodeBindAgentKey(r.Context(), n.ID, key)
		if err == nil {
			h.cfg.Log.Info("node bound to its agent key", "node", n.ID, "key", agentproto.KeyID(key), "remote", r.RemoteAddr)
			return true
		}
		if !errors.Is(err, store.ErrPreconditionFailed) {
			h.cfg.Log.Error("agent auth", "node", n.ID, "err", err)
			httpError(w, http.StatusInternalServerError, "InternalServerError", "cannot record the node's agent key")
			return false
		}
		// Another connect bound it first.
		if n, err = h.cfg.Store.NodeGet(r.Context(), n.ID); err != nil {
			httpError(w, http.StatusUnauthorized, "AuthenticationFailed", "unknown node or wrong node credential")
			return false
		}
		bound = n.AgentKey
	}
	switch {
	case bound == "":
		h.cfg.Log.Warn("agent refused: node not connected yet", "node", n.ID, "remote", r.RemoteAddr, "path", r.URL.Path)
		httpError(w, http.StatusUnauthorized, "AuthenticationFailed", "node "+n.ID+" has not connected yet")
		return false
	case bound != key:
		h.cfg.Log.Warn("agent refused: key mismatch", "node", n.ID, "remote", r.RemoteAddr, "path", r.URL.Path,
			"key", agentproto.KeyID(key), "bound", agentproto.KeyID(bound))
		httpError(w, http.StatusUnauthorized, agentproto.KeyMismatchCode, "node "+n.ID+" is bound to the agent process that "+
			"first connected as it, and this request is not signed by that process's key; a node credential works only "+
			"in its own agent process, and a restarted agent's node is replaced")
		return false
	}
	return true
}

// active reports whether a job in status s runs on its node: it may be
// reported on, and its snapshot and artifacts moved.
func active(s model.JobStatus) bool {
	return s == model.JobPreparing || s == model.JobRunning || s == model.JobFinalizing
}

func (h *Hub) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	n, ok := h.authNode(w, r)
	if !ok || !h.authKey(w, r, n, false) {
		return
	}
	id := r.PathValue("id")
	if n.JobID == "" {
		httpError(w, http.StatusForbidden, "AuthorizationFailed", "node runs no job")
		return
	}
	j, err := h.cfg.Store.JobGet(r.Context(), n.JobID)
	if err != nil || j.SnapshotID != id || j.NodeID != n.ID || !active(j.Status) {
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
	if !ok || !h.authKey(w, r, n, false) {
		return
	}
	run := r.PathValue("run")
	attempt, err := strconv.Atoi(r.URL.Query().Get(agentproto.AttemptQuery))
	if err != nil || attempt < 1 {
		httpError(w, http.StatusBadRequest, "InvalidRequestContent", "the "+agentproto.AttemptQuery+" query parameter must name the job's attempt")
		return
	}
	j, err := h.cfg.Store.JobGetByRunID(r.Context(), run)
	if err != nil || !j.RunsOn(n.ID) {
		httpError(w, http.StatusForbidden, "AuthorizationFailed", "job "+run+" is not running on this node")
		return
	}
	if j.Attempts != attempt {
		httpError(w, http.StatusForbidden, "AuthorizationFailed",
			fmt.Sprintf("attempt %d of job %s is over; the job is on attempt %d", attempt, run, j.Attempts))
		return
	}
	body := http.MaxBytesReader(w, r.Body, h.cfg.Files.ArtifactLimits().StreamBytes())
	ckpt, _ := model.CheckpointDir(j.Env)
	if n.ID == j.NodeID {
		err = h.cfg.Files.SaveArtifacts(run, body, ckpt)
	} else {
		// Another node of a gang: only its per-process logs are kept;
		// outputs and checkpoint are node 0's.
		err = h.cfg.Files.SaveProcessLogs(run, body)
	}
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

// serveCheckpoint sends the job's saved checkpoint directory as a tar (204
// when there is none) to the node its current attempt runs on, for that
// attempt only.
func (h *Hub) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	n, ok := h.authNode(w, r)
	if !ok || !h.authKey(w, r, n, false) {
		return
	}
	run := r.PathValue("run")
	attempt, err := strconv.Atoi(r.URL.Query().Get(agentproto.AttemptQuery))
	j, jerr := h.cfg.Store.JobGetByRunID(r.Context(), run)
	if err != nil || jerr != nil || j.NodeID != n.ID || !active(j.Status) || j.Attempts != attempt {
		httpError(w, http.StatusForbidden, "AuthorizationFailed", "job "+run+" is not running this attempt on this node")
		return
	}
	ckpt, _ := model.CheckpointDir(j.Env)
	if ckpt == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// Streamed: nothing is written when there is no checkpoint, and an
	// error half-way cuts the stream, which the agent's reader sees.
	w.Header().Set("Content-Type", "application/x-tar")
	found, err := h.cfg.Files.WriteCheckpoint(run, ckpt, w)
	switch {
	case err != nil && !found:
		h.cfg.Log.Error("hub: read checkpoint", "runId", run, "err", err)
		httpError(w, http.StatusInternalServerError, "InternalServerError", "the checkpoint could not be read")
	case err != nil:
		h.cfg.Log.Error("hub: send checkpoint", "runId", run, "err", err)
		panic(http.ErrAbortHandler)
	case !found:
		w.WriteHeader(http.StatusNoContent)
	}
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
	// The version comes before the key proof, so that an older agent,
	// which sends none, learns why it is refused.
	if up := r.Header.Get("Upgrade"); up != agentproto.Upgrade {
		w.Header().Set("Upgrade", agentproto.Upgrade)
		httpError(w, http.StatusUpgradeRequired, "UnsupportedProtocol",
			fmt.Sprintf("agent protocol %q is not spoken here; this control plane speaks %s", up, agentproto.Upgrade))
		return
	}
	if !h.authKey(w, r, n, true) {
		return
	}
	rc := http.NewResponseController(w)
	netConn, brw, err := rc.Hijack()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "InternalServerError", "cannot upgrade this connection")
		return
	}
	defer netConn.Close()
	netConn.SetDeadline(time.Time{})
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", agentproto.Upgrade)
	if err := brw.Flush(); err != nil {
		return
	}
	mux, st, err := agentproto.Accept(netConn, brw.Reader, 15*time.Second)
	if err != nil {
		h.cfg.Log.Warn("agent connect", "node", n.ID, "err", err)
		return
	}
	defer mux.Close()
	c := &conn{nodeID: n.ID, computeID: n.ComputeID, enc: agentproto.NewEncoder(st), rwc: mux, mux: mux}
	dec := agentproto.NewDecoder(st)
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
		last := h.conns[n.ID] == c
		if last {
			delete(h.conns, n.ID)
		}
		h.mu.Unlock()
		if last {
			h.disconnected(r.Context(), n.ID)
		}
	}()

	ctx := context.WithoutCancel(r.Context())
	if err := h.hello(ctx, c, first); err != nil {
		h.cfg.Log.Error("agent hello", "node", n.ID, "err", err)
		return
	}
	h.connected(ctx, c)
	// Messages are taken in batches of what has arrived: a job's reports
	// that come together are stored in one write (see handleBatch).
	msgs, stop := make(chan agentproto.Message, readAhead), make(chan struct{})
	defer close(stop)
	go reader(dec, msgs, stop)
	for {
		batch, ok := next(msgs, h.cfg.ReportWindow)
		if !ok {
			return
		}
		h.seen(n.ID)
		h.handleBatch(ctx, c, batch)
	}
}
