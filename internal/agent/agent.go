// Package agent is kumo's node agent: the process (`kumo agent`) that runs
// on every node, connects out to the control plane, and runs the jobs the
// control plane sends it.
//
// [Run] connects with [agentproto] (an HTTP Upgrade to a line-delimited JSON
// stream), sends Hello with every job it holds, reads Welcome, then
// heartbeats and serves Run, Cancel, Ack and Shutdown until its context ends
// or the server sends Shutdown. A lost connection does not stop jobs: the
// agent reconnects with exponential backoff and jitter, reports its jobs in
// Hello, resends each job's output from the offsets the server names in
// Welcome (read back from the job's log files, so nothing is lost or sent
// twice) and resends Done for jobs the server has not acknowledged.
//
// Each job lives in WorkDir/jobs/<runID>/ (mode 0700; owned by
// Config.JobUser, which the job runs as, when set) and runs through
// [runner.Start] with an environment built from nothing ([runner.JobEnv]):
// its output goes to the server as Log messages as it is read, Started when
// the process runs, and, when it ends, Exited, the upload of its outputs/ and
// logs/ files, and Done (Exited and the upload are skipped when there are no
// such files). Once the server acknowledges Done, the job's directory is
// removed. The node's journal, WorkDir/jobs.journal (mode 0600, out of the
// jobs' sight), gets one line appended at each change of a job's state
// (without fsync: it guards against agent restarts, not host crashes) and
// is compacted as acknowledged jobs pile up; it records each job's state
// and result until the server acknowledges Done, so an agent restarted by
// hand still reports the jobs it finished. A job the journal shows running
// when the agent starts is reported as ended with reason "error": its
// process cannot be supervised any more, so it is killed if it still runs.
//
// The agent also serves SSH for the cluster's admin account (package
// [sshd]): the control plane opens a stream of the agent's connection per
// tunnelled SSH connection, and, with remoteLoginPortPublicAccess Enabled,
// the node's SSH port listens too. Welcome carries the logins accepted
// (never the password, only its hash); Hello carries the host key, made
// in memory like the agent key; the agent reports refused logins
// (AuthFailed) and the count of open sessions (a Heartbeat at once when it
// changes), so that the autoscaler keeps a node someone is logged in to.
//
// Every request carries a proof signed by a key pair the process makes in
// memory when it starts ([agentproto.Key]); the connect request is dialed by
// the agent itself so that the proof also signs the TLS connection. The
// control plane binds the node to the process of its first accepted
// connect, so a restarted agent has a new key and is refused: Run stops with
// [ErrKeyMismatch] (after killing the job processes the journal shows it
// can no longer supervise), and the control plane replaces the node and
// requeues its job. A reconnect of the same process, say after the control
// plane restarted, keeps its key and is accepted.
//
// Goroutines: Run owns all of them. Per connection, one reads messages (Run's
// own goroutine), one sends heartbeats and one accepts the control plane's
// SSH streams (one goroutine per stream, ended by the SSH server's Close
// when Run stops, like the public SSH port's accept loop); per job, one goroutine runs it
// from start to Done, plus the runner's own and, during an upload, one that
// writes the tar. All end before Run returns.
package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kumo/internal/agent/sshd"
	"kumo/internal/agentproto"
	"kumo/internal/cgroup"
	"kumo/internal/jobuser"
	"kumo/internal/runner"
)

// Defaults for [Config] fields left zero.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultReconnectMin      = 100 * time.Millisecond
	DefaultReconnectMax      = 5 * time.Second
)

// ErrProtocolVersion is wrapped by [Run]'s error when the server does not
// speak this agent's protocol version (it answered 426). It is permanent:
// Run does not retry.
var ErrProtocolVersion = errors.New("protocol version not accepted by the server")

// ErrKeyMismatch is wrapped by [Run]'s error when the control plane binds
// the node to another agent process's key (it answered 401 with
// agentproto.KeyMismatchCode): this process was restarted, or another one
// took the node first. It is permanent: Run stops, and the control plane
// replaces the node.
var ErrKeyMismatch = errors.New("the control plane binds this node to another agent process")

// ErrNodeRemoved is wrapped by [Run]'s error when the control plane
// answers that the node is unusable or leaving (403 with
// agentproto.NodeRemovedCode). It is permanent: Run stops.
var ErrNodeRemoved = errors.New("the control plane removed this node")

// errShutdown ends a session when the server sent Shutdown.
var errShutdown = errors.New("server sent shutdown")

// handshakeTimeout bounds the wait for Welcome after Hello.
const handshakeTimeout = 15 * time.Second

// spareDir names, in the jobs directory, the emptied job directory that the
// next job takes (see runner.Spares). It is no run ID, so no job has it.
const spareDir = ".spare"

// connectTimeout bounds dialing the control plane and the wait for the
// answer to the connect request.
const connectTimeout = time.Minute

// Config configures [Run].
type Config struct {
	NodeID  string // this node's ID, sent in X-Kumo-Node and Hello; required
	WorkDir string // directory for job directories (WorkDir/jobs/<runID>); required, created (mode 0711) if missing
	// URL is the control plane's base URL, e.g. "https://10.0.0.1:8443"
	// (http or https, dialed directly: no proxy), or several separated by
	// commas, one per control plane replica: the agent connects to the
	// first, and each time a connection ends or fails, it tries the next
	// (round robin, after the usual backoff). Snapshot, artifact and
	// checkpoint requests go to the URL of the current connection.
	// Required.
	URL        string
	CAFile     string // PEM certificates to trust for every URL (the replicas share one CA); "" means the system's roots
	Credential string // the node credential, sent as a bearer token; required

	// HeartbeatInterval is how often to send Heartbeat when the server's
	// Welcome does not say; 0 means DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration

	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts (each wait is jittered); 0 means
	// DefaultReconnectMin and DefaultReconnectMax.
	ReconnectMin, ReconnectMax time.Duration

	// JobUser, if set, is who jobs run as: a uid (and gid) of this node's
	// jobs alone, neither the agent's nor the control plane's. Nil means
	// the agent's own user.
	JobUser *jobuser.User

	// JobEnv is added by kumo to every job's environment (after the job's
	// own variables, so it wins), e.g. the node's CUDA_VISIBLE_DEVICES.
	JobEnv map[string]string

	// Grace is the time between SIGTERM and SIGKILL when a job is canceled
	// and its spec names none; 0 means runner.DefaultGrace.
	Grace time.Duration

	// HTTPClient makes the snapshot and artifact requests; it must have no
	// overall Timeout. Nil means a client that trusts CAFile. The connect
	// request does not use it: the agent dials that connection itself, so
	// that its proof signs the connection's TLS keying material.
	HTTPClient *http.Client

	// SSHHelper is the argv of the helper that serves sftp and dials port
	// forwards as JobUser (sshd.Config.Helper), e.g. the kumo binary and
	// "ssh-helper"; nil means no sftp, and no port forwards when JobUser
	// is set.
	SSHHelper []string

	// SSHLimits bound refused SSH logins per source; zero fields take
	// sshd.DefaultLimits'.
	SSHLimits sshd.Limits

	// Log receives operational logs; nil means slog.Default().
	Log *slog.Logger
}

// Run runs the agent until ctx ends or the server sends Shutdown. Either way
// it cancels its running jobs (SIGTERM, grace, SIGKILL) and waits for them
// before it returns nil. Jobs ended by a canceled ctx stay in the journal,
// and are reported at the next start. Run returns an error for an invalid
// Config, an unusable work directory or CA file, a protocol version the
// server refuses (wrapping [ErrProtocolVersion]), a node the server binds
// to another agent process (wrapping [ErrKeyMismatch]), a node the server
// removed (wrapping [ErrNodeRemoved]), and a work directory
// removed while it was disconnected (the node was deleted, and nobody is
// left to stop the agent); it retries everything else (refused credentials
// included: the node's record may not exist yet).
func Run(ctx context.Context, cfg Config) error {
	a, err := newAgent(cfg)
	if err != nil {
		return err
	}
	return a.run(ctx)
}

// agent is one Run.
type agent struct {
	cfg     Config
	targets []target        // the control plane URLs, in Config.URL's order
	cur     atomic.Int32    // index in targets of the current (or next) connection
	key     *agentproto.Key // this process's key, made at start, never stored
	tls     *tls.Config     // for the connect connection; RootCAs nil means the system's
	client  *http.Client
	own     *http.Transport // the transport Run built, closed at the end; nil if cfg.HTTPClient
	log     *slog.Logger
	address string // Hello's Address
	// interval is the heartbeat interval the last Welcome gave; 0 before
	// one. Only Run's goroutine touches it.
	interval time.Duration
	note     string // Hello's Note
	jobsDir  string
	sweeper  *runner.Sweeper // cfg.JobUser's; nil without one
	spares   *runner.Spares  // emptied job directories for the next job; nil without cfg.JobUser
	journal  *journal        // set by restore, at the start of run

	runCtx     context.Context // Run's context, for uploads
	jobsCtx    context.Context // parent of every job's context; canceled when Run ends
	cancelJobs context.CancelFunc
	stopping   chan struct{} // closed when Run begins to end: retries stop
	stopOnce   sync.Once
	wg         sync.WaitGroup // job goroutines

	ssh     *sshd.Server // the node's SSH server; logins accepted once Welcome carries credentials
	hostKey string       // its public key, authorized_keys form
	sshWG   sync.WaitGroup

	mu     sync.Mutex
	jobs   map[string]*job // by run ID: every job not yet acknowledged
	sess   *session        // the welcomed connection; nil while disconnected
	public net.Listener    // the SSH port, when the cluster opens it; nil otherwise
}

func newAgent(cfg Config) (*agent, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("agent: no node ID")
	case cfg.WorkDir == "":
		return nil, errors.New("agent: no work directory")
	case cfg.URL == "":
		return nil, errors.New("agent: no control plane URL")
	case cfg.Credential == "":
		return nil, errors.New("agent: no node credential")
	}
	cfg.HeartbeatInterval = orDefault(cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	cfg.ReconnectMin = orDefault(cfg.ReconnectMin, DefaultReconnectMin)
	cfg.ReconnectMax = max(orDefault(cfg.ReconnectMax, DefaultReconnectMax), cfg.ReconnectMin)
	a := &agent{
		cfg:      cfg,
		client:   cfg.HTTPClient,
		log:      cfg.Log,
		jobsDir:  filepath.Join(cfg.WorkDir, "jobs"),
		stopping: make(chan struct{}),
		jobs:     make(map[string]*job),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	var err error
	if a.targets, err = parseTargets(cfg.URL); err != nil {
		return nil, err
	}
	if a.key, err = agentproto.NewKey(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if a.tls, err = tlsConfig(cfg.CAFile); err != nil {
		return nil, err
	}
	if a.client == nil {
		tr := newTransport(a.tls)
		a.client, a.own = &http.Client{Transport: tr}, tr
	}
	// Jobs may pass through the work directories (to reach their own) but
	// not list them.
	for _, d := range []string{cfg.WorkDir, a.jobsDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	if u := cfg.JobUser; u != nil {
		a.sweeper = runner.NewSweeper(u.UID)
		// Without a job user, a process a job left could write in a
		// directory between its check and its reuse.
		spares, err := runner.NewSpares(filepath.Join(a.jobsDir, spareDir))
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.spares = spares
	}
	a.address = hostAddress()
	a.note = cgroup.Detect().Note()
	if err := a.newSSH(); err != nil {
		return nil, err
	}
	a.jobsCtx, a.cancelJobs = context.WithCancel(context.Background())
	return a, nil
}

// target is one control plane URL.
type target struct {
	base    string   // the URL without a trailing slash
	connURL *url.URL // its connect route
}

// parseTargets parses Config.URL: one URL or several separated by commas.
func parseTargets(list string) ([]target, error) {
	var ts []target
	for _, raw := range strings.Split(list, ",") {
		base := strings.TrimRight(strings.TrimSpace(raw), "/")
		u, err := url.Parse(base + agentproto.ConnectPath)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("agent: control plane URL %q is not an http or https URL", raw)
		}
		ts = append(ts, target{base: base, connURL: u})
	}
	return ts, nil
}

// target returns the control plane URL of the current connection (or of
// the next attempt, while disconnected).
func (a *agent) target() target { return a.targets[a.cur.Load()] }

// nextTarget moves to the next control plane URL, round robin.
func (a *agent) nextTarget() {
	if len(a.targets) > 1 {
		a.cur.Store((a.cur.Load() + 1) % int32(len(a.targets)))
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// tlsConfig returns the TLS configuration trusting caFile ("" means the
// system's roots).
func tlsConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("agent: CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("agent: CA file %s: no PEM certificates", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// newTransport returns an HTTP/1.1-only transport using tlsCfg.
func newTransport(tlsCfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.ResponseHeaderTimeout = time.Minute
	tr.TLSClientConfig = tlsCfg.Clone()
	return tr
}

// hostAddress returns the first non-loopback IPv4 address, or "127.0.0.1".
func hostAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip := n.IP.To4(); ip != nil && !ip.IsLoopback() {
					return ip.String()
				}
			}
		}
	}
	return "127.0.0.1"
}

func (a *agent) run(ctx context.Context) error {
	a.runCtx = ctx
	defer func() {
		if a.own != nil {
			a.own.CloseIdleConnections()
		}
	}()
	if err := a.restore(); err != nil {
		a.stop()
		return err
	}
	var err error
	backoff := a.cfg.ReconnectMin
	for ctx.Err() == nil {
		welcomed, serr := a.session(ctx)
		if errors.Is(serr, errShutdown) {
			break
		}
		if errors.Is(serr, ErrProtocolVersion) || errors.Is(serr, ErrKeyMismatch) || errors.Is(serr, ErrNodeRemoved) {
			a.log.Error("agent: stopping", "err", serr)
			err = serr
			break
		}
		if ctx.Err() != nil {
			break
		}
		if _, serr := os.Stat(a.jobsDir); errors.Is(serr, os.ErrNotExist) {
			// The node was deleted under us (its directory removed) while
			// the control plane was away: nobody will stop this agent.
			err = fmt.Errorf("agent: work directory %s removed; stopping", a.cfg.WorkDir)
			a.log.Error(err.Error())
			break
		}
		if welcomed {
			backoff = a.cfg.ReconnectMin
		}
		// The next attempt goes to the next replica, if there are several.
		a.nextTarget()
		wait := backoff/2 + rand.N(backoff/2+1)
		msg := "agent: cannot connect; retrying"
		if welcomed {
			msg = "agent: disconnected; reconnecting"
		}
		a.log.Warn(msg, "err", serr, "in", wait)
		if !sleepCtx(ctx, wait) {
			break
		}
		backoff = min(2*backoff, a.reconnectMax())
	}
	a.stop()
	return err
}

// reconnectMax caps the backoff between connection attempts: ReconnectMax,
// or five heartbeat intervals of the control plane that welcomed this agent
// if that is less, so that a node whose control plane restarted reconnects
// well within the heartbeat timeout instead of being declared lost.
func (a *agent) reconnectMax() time.Duration {
	if a.interval > 0 {
		return max(min(a.cfg.ReconnectMax, 5*a.interval), a.cfg.ReconnectMin)
	}
	return a.cfg.ReconnectMax
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stop cancels every job and waits for the job goroutines; it is idempotent.
func (a *agent) stop() {
	a.stopOnce.Do(func() {
		close(a.stopping)
		a.mu.Lock()
		if a.public != nil {
			a.public.Close()
		}
		a.mu.Unlock()
		a.ssh.Close()
		a.sshWG.Wait()
		a.cancelJobs()
		a.wg.Wait()
		if a.journal != nil {
			a.journal.close()
		}
	})
}

// session is one welcomed connection.
type session struct {
	conn io.Closer
	enc  *agentproto.Encoder
}

// send sends m; on failure it closes the connection, so the session ends.
func (s *session) send(m agentproto.Message) error {
	err := s.enc.Send(m)
	if err != nil {
		s.conn.Close()
	}
	return err
}

// session connects, says Hello, serves the connection until it fails, ctx
// ends or the server sends Shutdown. welcomed reports whether it got as far
// as Welcome.
func (a *agent) session(ctx context.Context) (welcomed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	raw, err := a.connect(sctx)
	if err != nil {
		return false, err
	}
	mux, err := agentproto.Client(raw)
	if err != nil {
		raw.Close()
		return false, fmt.Errorf("connect: %w", err)
	}
	unwatch := context.AfterFunc(sctx, func() { mux.Close() })
	defer func() {
		unwatch()
		mux.Close()
	}()
	conn, err := mux.OpenStream()
	if err != nil {
		return false, fmt.Errorf("connect: open message stream: %w", err)
	}
	s := &session{conn: mux, enc: agentproto.NewEncoder(conn)}
	hello, reported := a.hello()
	handshake := time.AfterFunc(handshakeTimeout, func() { mux.Close() })
	if err := s.enc.Send(hello); err != nil {
		handshake.Stop()
		return false, err
	}
	dec := agentproto.NewDecoder(conn)
	m, err := dec.Next()
	handshake.Stop()
	if err != nil {
		return false, fmt.Errorf("read welcome: %w", err)
	}
	if m.Type != agentproto.TypeWelcome {
		return false, fmt.Errorf("first server message is %q, not welcome", m.Type)
	}
	a.log.Info("agent: connected", "url", a.target().base, "jobs", len(hello.Jobs))
	a.welcomeSSH(m.SSH)

	a.mu.Lock()
	a.sess = s
	jobs := a.jobList()
	a.mu.Unlock()
	defer func() {
		conn.Close()
		a.mu.Lock()
		if a.sess == s {
			a.sess = nil
		}
		jobs := a.jobList()
		a.mu.Unlock()
		for _, j := range jobs {
			j.detach(s)
		}
	}()
	for _, j := range jobs {
		j.attach(s, m.LogOffsets[j.id], reported[j.id])
	}

	var hb sync.WaitGroup
	defer hb.Wait()
	defer cancel()
	interval := orDefault(m.HeartbeatInterval, a.cfg.HeartbeatInterval)
	a.interval = interval
	hb.Go(func() { a.heartbeat(sctx, s, interval) })
	hb.Go(func() { a.acceptStreams(mux) }) // ends when cancel closes mux
	open := a.ssh.Open()
	s.send(agentproto.Message{Type: agentproto.TypeHeartbeat, Sessions: &open})

	for {
		m, err := dec.Next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("server closed the connection")
			}
			return true, err
		}
		switch m.Type {
		case agentproto.TypeRun:
			a.startJob(s, m.Job)
		case agentproto.TypeCancel:
			a.cancelJob(m.RunID)
		case agentproto.TypeEvict:
			a.evictJob(m.RunID, m.Deadline)
		case agentproto.TypeAck:
			a.ackJob(m.RunID)
		case agentproto.TypeShutdown:
			a.log.Info("agent: server sent shutdown", "reason", m.Reason)
			a.stop()
			return true, errShutdown
		default:
			a.log.Debug("agent: ignoring message", "type", m.Type)
		}
	}
}

func (a *agent) heartbeat(ctx context.Context, s *session, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.send(agentproto.Message{Type: agentproto.TypeHeartbeat}) != nil {
				return
			}
		}
	}
}

// connect opens the upgraded connection. It dials the control plane
// itself, rather than through the HTTP client, so that the request's proof
// signs the keying material of the very TLS connection it is sent on: a
// captured proof is useless on any other connection.
func (a *agent) connect(ctx context.Context) (io.ReadWriteCloser, error) {
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	u := a.target().connURL
	conn, ekm, err := a.dial(dctx, u)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", u.Host, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	a.authorize(req, ekm)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", agentproto.Upgrade)
	// The deadline also bounds reading a refusal's body, after unwatch.
	conn.SetDeadline(time.Now().Add(connectTimeout))
	unwatch := context.AfterFunc(dctx, func() { conn.Close() })
	err = req.Write(conn)
	br := bufio.NewReader(conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if !unwatch() && err == nil {
		err = dctx.Err() // the connection was closed under the answer
	}
	if err != nil {
		conn.Close()
		if dctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, dctx.Err())
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		conn.SetDeadline(time.Time{})
		return &upgraded{r: br, Conn: conn}, nil
	}
	code, detail := readError(resp)
	conn.Close()
	switch {
	case resp.StatusCode == http.StatusUpgradeRequired:
		if up := resp.Header.Get("Upgrade"); up != "" {
			detail = "server speaks " + up + ": " + detail
		}
		return nil, fmt.Errorf("%w: this agent speaks %s (protocol %d); %s", ErrProtocolVersion, agentproto.Upgrade, agentproto.Version, detail)
	case resp.StatusCode == http.StatusUnauthorized && code == agentproto.KeyMismatchCode:
		return nil, fmt.Errorf("connect: %w (key %s): %s", ErrKeyMismatch, agentproto.KeyID(a.key.Public()), detail)
	case resp.StatusCode == http.StatusForbidden && code == agentproto.NodeRemovedCode:
		return nil, fmt.Errorf("connect: %w: %s", ErrNodeRemoved, detail)
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("connect: node credential refused (%s): %s", resp.Status, detail)
	default:
		return nil, fmt.Errorf("connect: unexpected %s: %s", resp.Status, detail)
	}
}

// dial opens a connection to the control plane at u and returns, over
// TLS, its keying material for the connect proof.
func (a *agent) dial(ctx context.Context, u *url.URL) (net.Conn, []byte, error) {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	if u.Scheme == "http" {
		conn, err := d.DialContext(ctx, "tcp", hostPort(u, "80"))
		return conn, nil, err
	}
	cfg := a.tls.Clone()
	cfg.ServerName = u.Hostname()
	conn, err := (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", hostPort(u, "443"))
	if err != nil {
		return nil, nil, err
	}
	cs := conn.(*tls.Conn).ConnectionState()
	ekm, err := agentproto.Exporter(&cs)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, ekm, nil
}

// hostPort returns u's host and port, with port def when u names none.
func hostPort(u *url.URL, def string) string {
	if p := u.Port(); p != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), def)
}

// upgraded is a connection after 101 Switching Protocols: reads go through
// the buffer that read the response, which may hold the first messages.
type upgraded struct {
	r *bufio.Reader
	net.Conn
}

func (u *upgraded) Read(p []byte) (int, error) { return u.r.Read(p) }

// authorize adds the node's credentials to req, and this process's proof
// of it; ekm is the connection's TLS keying material for a connect, nil
// otherwise.
func (a *agent) authorize(req *http.Request, ekm []byte) {
	req.Header.Set("Authorization", "Bearer "+a.cfg.Credential)
	req.Header.Set(agentproto.NodeHeader, a.cfg.NodeID)
	a.key.Sign(req.Header, agentproto.Request{Method: req.Method, URI: req.URL.RequestURI(), NodeID: a.cfg.NodeID, Exporter: ekm}, time.Now())
}

// errorDetail reads and closes resp's body and returns its message: the ARM
// error body's code and message when it is one, else the body's text.
func errorDetail(resp *http.Response) string {
	code, msg := readError(resp)
	if code != "" {
		return code + ": " + msg
	}
	return msg
}

// readError reads and closes resp's body and returns its ARM error code
// ("" when it is not an ARM error body) and message (the body's text when
// it is not one).
func readError(resp *http.Response) (code, message string) {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	var arm struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &arm) == nil && arm.Error.Message != "" {
		return arm.Error.Code, arm.Error.Message
	}
	if s := strings.TrimSpace(string(b)); s != "" {
		return "", s
	}
	return "", "no detail"
}

// hello returns the Hello message and the state reported for each job.
func (a *agent) hello() (agentproto.Message, map[string]agentproto.JobState) {
	a.mu.Lock()
	jobs := a.jobList()
	a.mu.Unlock()
	m := agentproto.Message{
		Type:     agentproto.TypeHello,
		Protocol: agentproto.Version,
		NodeID:   a.cfg.NodeID,
		Address:  a.address,
		Note:     a.note,
		HostKey:  a.hostKey,
	}
	reported := make(map[string]agentproto.JobState, len(jobs))
	for _, j := range jobs {
		r := j.report()
		reported[j.id] = r.State
		m.Jobs = append(m.Jobs, r)
	}
	return m, reported
}

// jobList returns the jobs; a.mu must be held.
func (a *agent) jobList() []*job {
	jobs := make([]*job, 0, len(a.jobs))
	for _, j := range a.jobs {
		jobs = append(jobs, j)
	}
	return jobs
}

// startJob handles Run: it starts the job in its own goroutine, or, for a
// run ID it holds, resends how the job ended if it has.
func (a *agent) startJob(s *session, spec *agentproto.JobSpec) {
	if spec == nil {
		a.log.Warn("agent: run message without a job")
		return
	}
	if err := checkRunID(spec.RunID); err != nil {
		a.log.Warn("agent: refusing job", "runId", spec.RunID, "err", err)
		s.send(agentproto.Message{Type: agentproto.TypeDone, RunID: spec.RunID, Reason: reasonError, Message: err.Error(), Time: time.Now()})
		return
	}
	a.mu.Lock()
	if j, ok := a.jobs[spec.RunID]; ok {
		a.mu.Unlock()
		j.resendEnd()
		return
	}
	j := newJob(a, *spec)
	j.sess = s
	a.jobs[spec.RunID] = j
	a.wg.Add(1)
	a.mu.Unlock()
	go j.run()
}

func (a *agent) cancelJob(id string) {
	a.mu.Lock()
	j := a.jobs[id]
	a.mu.Unlock()
	if j != nil {
		j.cancel()
	}
}

// evictJob gives a job notice that its node is taken at deadline.
func (a *agent) evictJob(id string, deadline time.Time) {
	a.mu.Lock()
	j := a.jobs[id]
	a.mu.Unlock()
	if j != nil {
		a.log.Warn("agent: node evicted", "runId", id, "deadline", deadline)
		j.evict(deadline)
	}
}

// ackJob forgets an ended job: its journal entry and its directory go.
func (a *agent) ackJob(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[id]
	if j == nil {
		return
	}
	if !j.forget() {
		a.log.Warn("agent: ignoring ack of a job that has not ended", "runId", id)
		return
	}
	delete(a.jobs, id)
}

// checkRunID refuses run IDs that are not a single safe path element.
func checkRunID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 255 || strings.ContainsAny(id, "/\\\x00") {
		return fmt.Errorf("invalid run ID %q", id)
	}
	return nil
}
