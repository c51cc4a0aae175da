package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/crypto/ssh"

	"kumo/internal/agent/sshd"
	"kumo/internal/agentproto"
)

// newSSH makes the node's host key (in memory: it lives as long as the
// process, which is as long as the node, since a restarted agent's node is
// replaced) and its SSH server, which accepts no login until a Welcome
// carries the cluster's credentials.
func (a *agent) newSSH() error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("agent: host key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return fmt.Errorf("agent: host key: %w", err)
	}
	a.hostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	env := map[string]string{"KUMO_NODE_ID": a.cfg.NodeID}
	maps.Copy(env, a.cfg.JobEnv)
	a.ssh, err = sshd.New(sshd.Config{
		HostKey:  signer,
		JobUser:  a.cfg.JobUser,
		Dir:      a.sessionDir,
		Env:      env,
		Helper:   a.cfg.SSHHelper,
		Limits:   a.cfg.SSHLimits,
		Report:   a.reportLogin,
		Sessions: a.reportSessions,
		Log:      a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// sessionDir is where an SSH session starts: the directory of the job
// running now, else the node's work directory.
func (a *agent) sessionDir() string {
	a.mu.Lock()
	jobs := a.jobList()
	a.mu.Unlock()
	for _, j := range jobs {
		j.mu.Lock()
		running := j.state == agentproto.JobRunning
		j.mu.Unlock()
		if running {
			return j.dir
		}
	}
	return a.cfg.WorkDir
}

// reportLogin sends a refused SSH login to the control plane, which
// records it as a compute event; it is dropped while disconnected.
func (a *agent) reportLogin(source, user, message string) {
	a.mu.Lock()
	s := a.sess
	a.mu.Unlock()
	if s != nil {
		s.send(agentproto.Message{Type: agentproto.TypeAuthFailed, Source: source, User: user, Message: message, Time: time.Now()})
	}
}

// reportSessions sends the count of open SSH logins at once, so that the
// control plane's idle clock is right to the second.
func (a *agent) reportSessions(open int) {
	a.mu.Lock()
	s := a.sess
	a.mu.Unlock()
	if s != nil {
		s.send(agentproto.Message{Type: agentproto.TypeHeartbeat, Sessions: &open})
	}
}

// welcomeSSH applies a Welcome's SSH settings: the logins accepted, and
// the public SSH port, opened the first time it is asked for and kept
// until the agent stops.
func (a *agent) welcomeSSH(st *agentproto.SSHSettings) {
	if err := a.ssh.SetLogin(st); err != nil {
		a.log.Warn("agent: ssh settings refused", "err", err)
		a.ssh.SetLogin(nil)
		return
	}
	if st == nil || st.Port == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.public != nil {
		return
	}
	select {
	case <-a.stopping:
		return
	default:
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(st.Port)))
	if err != nil {
		a.log.Warn("agent: cannot open the node's SSH port", "port", st.Port, "err", err)
		return
	}
	a.public = ln
	a.log.Info("agent: ssh listening", "port", st.Port)
	a.sshWG.Go(func() { a.ssh.Serve(ln) })
}

// maxStreamHeader bounds a stream's header line.
const maxStreamHeader = 4 << 10

// acceptStreams serves the streams the control plane opens on a
// connection (each a byte stream to the SSH server) until it ends.
func (a *agent) acceptStreams(mux *yamux.Session) {
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		a.sshWG.Go(func() {
			h, err := readHeader(st)
			if err != nil {
				a.log.Warn("agent: bad stream header", "err", err)
				st.Close()
				return
			}
			a.ssh.ServeConn(st, h.Source)
		})
	}
}

// readHeader reads a stream's header line byte by byte, so that nothing
// after it is consumed.
func readHeader(c net.Conn) (agentproto.StreamHeader, error) {
	var h agentproto.StreamHeader
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return h, err
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
		if len(line) > maxStreamHeader {
			return h, errors.New("stream header too long")
		}
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("stream header: %w", err)
	}
	return h, nil
}
