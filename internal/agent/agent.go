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
// removed. A small journal, WorkDir/jobs/<runID>.state.json (mode 0600,
// beside the job's directory, out of the job's sight), written
// atomically (write and rename, without fsync: it guards against agent
// restarts, not host crashes), records each job's state and result until the
// server acknowledges Done, so an agent restarted by hand still reports the
// jobs it finished. A job the journal shows running when the agent starts is
// reported as ended with reason "error": its process cannot be supervised
// any more, so it is killed if it still runs.
//
// Goroutines: Run owns all of them. Per connection, one reads messages (Run's
// own goroutine) and one sends heartbeats; per job, one goroutine runs it
// from start to Done, plus the runner's own and, during an upload, one that
// writes the tar. All end before Run returns.
package agent

import (
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/cgroup"
	"kumo/internal/jobuser"
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

// errShutdown ends a session when the server sent Shutdown.
var errShutdown = errors.New("server sent shutdown")

// handshakeTimeout bounds the wait for Welcome after Hello.
const handshakeTimeout = 15 * time.Second

// Config configures [Run].
type Config struct {
	NodeID     string // this node's ID, sent in X-Kumo-Node and Hello; required
	WorkDir    string // directory for job directories (WorkDir/jobs/<runID>); required, created (mode 0711) if missing
	URL        string // control plane base URL, e.g. "https://10.0.0.1:8443"; required
	CAFile     string // PEM certificates to trust for URL; "" means the system's roots
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

	// HTTPClient makes all requests; it must speak HTTP/1.1 to URL (the
	// connection is an HTTP Upgrade) and have no overall Timeout. Nil means a
	// client that trusts CAFile and never uses HTTP/2.
	HTTPClient *http.Client

	// Log receives operational logs; nil means slog.Default().
	Log *slog.Logger
}

// Run runs the agent until ctx ends or the server sends Shutdown. Either way
// it cancels its running jobs (SIGTERM, grace, SIGKILL) and waits for them
// before it returns nil. Jobs ended by a canceled ctx stay in the journal,
// and are reported at the next start. Run returns an error for an invalid
// Config, an unusable work directory or CA file, a protocol version the
// server refuses (wrapping [ErrProtocolVersion]), and a work directory
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
	base    string // URL without a trailing slash
	client  *http.Client
	own     *http.Transport // the transport Run built, closed at the end; nil if cfg.HTTPClient
	log     *slog.Logger
	address string // Hello's Address
	note    string // Hello's Note
	jobsDir string

	runCtx     context.Context // Run's context, for uploads
	jobsCtx    context.Context // parent of every job's context; canceled when Run ends
	cancelJobs context.CancelFunc
	stopping   chan struct{} // closed when Run begins to end: retries stop
	stopOnce   sync.Once
	wg         sync.WaitGroup // job goroutines

	mu   sync.Mutex
	jobs map[string]*job // by run ID: every job not yet acknowledged
	sess *session        // the welcomed connection; nil while disconnected
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
		base:     strings.TrimRight(cfg.URL, "/"),
		client:   cfg.HTTPClient,
		log:      cfg.Log,
		jobsDir:  filepath.Join(cfg.WorkDir, "jobs"),
		stopping: make(chan struct{}),
		jobs:     make(map[string]*job),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.client == nil {
		tr, err := newTransport(cfg.CAFile)
		if err != nil {
			return nil, err
		}
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
	a.address = hostAddress()
	a.note = cgroup.Detect().Note()
	a.jobsCtx, a.cancelJobs = context.WithCancel(context.Background())
	return a, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// newTransport returns an HTTP/1.1-only transport trusting caFile.
func newTransport(caFile string) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.ResponseHeaderTimeout = time.Minute
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
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr, nil
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
		if errors.Is(serr, ErrProtocolVersion) {
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
		wait := backoff/2 + rand.N(backoff/2+1)
		msg := "agent: cannot connect; retrying"
		if welcomed {
			msg = "agent: disconnected; reconnecting"
		}
		a.log.Warn(msg, "err", serr, "in", wait)
		if !sleepCtx(ctx, wait) {
			break
		}
		backoff = min(2*backoff, a.cfg.ReconnectMax)
	}
	a.stop()
	return err
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
		a.cancelJobs()
		a.wg.Wait()
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
	conn, err := a.connect(sctx)
	if err != nil {
		return false, err
	}
	unwatch := context.AfterFunc(sctx, func() { conn.Close() })
	defer func() {
		unwatch()
		conn.Close()
	}()
	s := &session{conn: conn, enc: agentproto.NewEncoder(conn)}
	hello, reported := a.hello()
	handshake := time.AfterFunc(handshakeTimeout, func() { conn.Close() })
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
	a.log.Info("agent: connected", "url", a.base, "jobs", len(hello.Jobs))

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
	hb.Go(func() { a.heartbeat(sctx, s, interval) })

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

// connect opens the upgraded connection.
func (a *agent) connect(ctx context.Context) (io.ReadWriteCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+agentproto.ConnectPath, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	a.authorize(req)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", agentproto.Upgrade)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			return rwc, nil
		}
		resp.Body.Close()
		return nil, errors.New("connect: the HTTP client cannot write to an upgraded connection")
	}
	detail := errorDetail(resp)
	switch resp.StatusCode {
	case http.StatusUpgradeRequired:
		if up := resp.Header.Get("Upgrade"); up != "" {
			detail = "server speaks " + up + ": " + detail
		}
		return nil, fmt.Errorf("%w: this agent speaks %s (protocol %d); %s", ErrProtocolVersion, agentproto.Upgrade, agentproto.Version, detail)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("connect: node credential refused (%s): %s", resp.Status, detail)
	default:
		return nil, fmt.Errorf("connect: unexpected %s: %s", resp.Status, detail)
	}
}

// authorize adds the node's credentials to req.
func (a *agent) authorize(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+a.cfg.Credential)
	req.Header.Set(agentproto.NodeHeader, a.cfg.NodeID)
}

// errorDetail reads and closes resp's body and returns its message: the ARM
// error body's message when it is one, else the body's text.
func errorDetail(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	var arm struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &arm) == nil && arm.Error.Message != "" {
		return arm.Error.Code + ": " + arm.Error.Message
	}
	if s := strings.TrimSpace(string(b)); s != "" {
		return s
	}
	return "no detail"
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
