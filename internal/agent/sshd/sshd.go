// Package sshd is the node agent's SSH server. It lets a cluster's admin
// log in to a node with the cluster's admin user name and either its
// password (checked against the argon2id hash the control plane sends: the
// node never learns the password) or its public key.
//
// Connections reach it through the control plane's tunnel (a stream of the
// agent's connection, see agentproto) or, when the cluster's
// remoteLoginPortPublicAccess is Enabled, on the node's SSH port. Either way
// it serves an interactive shell with a PTY and window-size changes, exec
// with the command's exit status, environment variables, the sftp
// subsystem (so scp and sftp work) and local port forwarding (ssh -L).
//
// Everything a login starts runs as the node's job user (Config.JobUser),
// with an environment built from nothing (runner.JobEnv), in the running
// job's directory or else the node's work directory (Config.Dir): never as
// the agent's own user. The sftp server and the dials of port forwards run
// in a helper process (Config.Helper, `kumo ssh-helper`) as that user too.
//
// Failed logins are reported (Config.Report) with their source; a source
// that keeps failing is slowed, then refused for a while before any hash
// is computed (see Limits). Passwords are never logged.
package sshd

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"kumo/internal/agentproto"
	"kumo/internal/jobuser"
	"kumo/internal/secret"
)

// handshakeTimeout bounds a connection's SSH handshake and login.
const handshakeTimeout = 30 * time.Second

// Config configures a [Server].
type Config struct {
	// HostKey is the node's host key; required.
	HostKey ssh.Signer
	// JobUser is who sessions run as; nil means the agent's own user
	// (the agent does not run as root, so jobs run as it too).
	JobUser *jobuser.User
	// Dir returns where a session starts: the running job's directory,
	// or the node's work directory; required.
	Dir func() string
	// Env is what kumo adds to every session's environment (after the
	// client's variables, so it wins), e.g. KUMO_NODE_ID.
	Env map[string]string
	// Helper is the argv of the helper that runs as JobUser: Helper +
	// "sftp" serves SFTP on its stdin and stdout, Helper + "dial" +
	// "HOST:PORT" connects and copies (see [RunHelper]). Nil means no
	// sftp subsystem, and port forwards dialed by the agent itself (only
	// when JobUser is nil).
	Helper []string
	// Limits bound failed logins per source; zero fields take
	// DefaultLimits' values.
	Limits Limits
	// Report is told of each refused login (source, user name tried,
	// what failed), and once when a source is refused for a while; it
	// must not block for long. Nil means nobody is told.
	Report func(source, user, message string)
	// Sessions is told the number of open logins whenever it changes; it
	// must not block for long. Nil means nobody is told.
	Sessions func(open int)
	// Log receives operational logs; nil means slog.Default().
	Log *slog.Logger
}

// Server is a node's SSH server. Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	lim   *limiter
	login atomic.Pointer[login]

	// hashes counts password hash checks (tests read it).
	hashes atomic.Int64

	mu     sync.Mutex
	sids   map[int]bool          // session IDs of the processes sessions run (each is started with setsid)
	open   int                   // authenticated connections
	conns  map[net.Conn]struct{} // every connection served
	closed bool
	wg     sync.WaitGroup
}

// login is the accepted credentials.
type login struct {
	user         string
	passwordHash string
	key          []byte // wire form of the public key; nil means none
}

// New returns a Server that accepts no login until [Server.SetLogin].
func New(cfg Config) (*Server, error) {
	if cfg.HostKey == nil || cfg.Dir == nil {
		return nil, errors.New("sshd: a host key and a directory are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Report == nil {
		cfg.Report = func(string, string, string) {}
	}
	if cfg.Sessions == nil {
		cfg.Sessions = func(int) {}
	}
	return &Server{cfg: cfg, lim: newLimiter(cfg.Limits.withDefaults(), time.Now), conns: map[net.Conn]struct{}{}, sids: map[int]bool{}}, nil
}

// SetLogin sets the accepted credentials; nil refuses every login.
func (s *Server) SetLogin(st *agentproto.SSHSettings) error {
	if st == nil || st.User == "" {
		s.login.Store(nil)
		return nil
	}
	l := &login{user: st.User, passwordHash: st.PasswordHash}
	if st.PublicKey != "" {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(st.PublicKey))
		if err != nil {
			return fmt.Errorf("sshd: admin public key: %w", err)
		}
		l.key = k.Marshal()
	}
	s.login.Store(l)
	return nil
}

// Holds reports whether process pid belongs to a session of this server
// (a shell, command, sftp server or dial helper, or what they started
// without leaving their session): a job's end spares it (runner.Spec.Spare).
func (s *Server) Holds(pid int) bool {
	sid, ok := jobuser.Session(pid)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sids[sid]
}

// started records a session process's session ID (its pid: it was
// started with setsid) until done.
func (s *Server) started(pid int) (done func()) {
	s.mu.Lock()
	s.sids[pid] = true
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.sids, pid)
		s.mu.Unlock()
	}
}

// Open returns the number of logged-in connections.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// Close ends every connection and waits for their sessions; later
// connections are closed at once.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Serve accepts connections on ln until it fails (ln closed) and serves
// each; the source of each is its remote address.
func (s *Server) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		if !s.track(c) {
			return net.ErrClosed
		}
		go func() {
			defer s.wg.Done()
			s.serve(c, host)
		}()
	}
}

// ServeConn serves one connection until it ends; source names its origin
// for the records of refused logins and the per-source limits.
func (s *Server) ServeConn(c net.Conn, source string) {
	if !s.track(c) {
		return
	}
	defer s.wg.Done()
	s.serve(c, source)
}

// track registers c; false (c closed) after Close.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *Server) sessions(delta int) {
	s.mu.Lock()
	s.open += delta
	n := s.open
	s.mu.Unlock()
	s.cfg.Sessions(n)
}

var errRefused = errors.New("login refused")

// serve runs one connection: the handshake under the per-source limits,
// then its channels.
func (s *Server) serve(c net.Conn, source string) {
	defer s.untrack(c)
	if source == "" {
		source = "unknown"
	}
	if _, refused := s.lim.check(source); refused {
		return // refused before any work, hash or handshake
	}
	var triedPassword atomic.Bool
	var lastUser atomic.Value
	conf := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-kumo",
		MaxAuthTries:  6,
		PasswordCallback: func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			lastUser.Store(meta.User())
			triedPassword.Store(true)
			delay, refused := s.lim.check(source)
			if refused {
				return nil, errRefused
			}
			if delay > 0 {
				time.Sleep(delay)
			}
			l := s.login.Load()
			if l == nil || l.passwordHash == "" {
				s.failed(source, meta.User(), "password login is not enabled")
				return nil, errRefused
			}
			s.hashes.Add(1)
			okPw := secret.PasswordMatches(l.passwordHash, string(pw))
			okUser := subtle.ConstantTimeCompare([]byte(meta.User()), []byte(l.user)) == 1
			if okPw && okUser {
				return nil, nil
			}
			s.failed(source, meta.User(), "wrong user name or password")
			return nil, errRefused
		},
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			lastUser.Store(meta.User())
			if _, refused := s.lim.check(source); refused {
				return nil, errRefused
			}
			l := s.login.Load()
			if l == nil || l.key == nil {
				return nil, errRefused
			}
			okKey := subtle.ConstantTimeCompare(key.Marshal(), l.key) == 1
			okUser := subtle.ConstantTimeCompare([]byte(meta.User()), []byte(l.user)) == 1
			if okKey && okUser {
				return nil, nil
			}
			return nil, errRefused
		},
	}
	conf.AddHostKey(s.cfg.HostKey)
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		// A login that never succeeded: count it once, unless its
		// passwords were already counted one by one.
		if u, ok := lastUser.Load().(string); ok && !triedPassword.Load() {
			s.failed(source, u, "wrong user name or key")
		}
		return
	}
	c.SetDeadline(time.Time{})
	s.lim.succeed(source)
	s.sessions(1)
	defer s.sessions(-1)
	s.cfg.Log.Info("sshd: login", "user", sc.User(), "source", source)
	go ssh.DiscardRequests(reqs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer sc.Close()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			wg.Go(func() { s.session(ctx, ch, creqs, sc.User()) })
		case "direct-tcpip":
			wg.Go(func() { s.forward(ctx, nc) })
		default:
			nc.Reject(ssh.UnknownChannelType, "unsupported channel type "+nc.ChannelType())
		}
	}
}

// failed records a refused login with the limiter and reports it.
func (s *Server) failed(source, user, what string) {
	if len(user) > 64 {
		user = user[:64] + "..."
	}
	blocked := s.lim.fail(source)
	s.cfg.Log.Warn("sshd: login refused", "source", source, "user", user, "why", what)
	s.cfg.Report(source, user, what)
	if blocked {
		s.cfg.Report(source, "", fmt.Sprintf("too many refused logins: source refused for %s", s.lim.l.Block))
	}
}
