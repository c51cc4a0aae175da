package sshd

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"

	"kumo/internal/runner"
)

// maxEnv bounds the variables a client may set in one session.
const maxEnv = 128

// shell returns the login shell sessions use: bash where the node has it.
func shell() string {
	if _, err := os.Stat("/bin/bash"); err == nil {
		return "/bin/bash"
	}
	return "/bin/sh"
}

// session serves one session channel: env and pty-req before one of
// shell, exec or subsystem; window-change while it runs.
func (s *Server) session(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, user string) {
	defer ch.Close()
	env := map[string]string{}
	var ptyReq *ptyRequest
	var proc *process
	for {
		var req *ssh.Request
		var ok bool
		var done <-chan struct{}
		if proc != nil {
			done = proc.done
		}
		select {
		case req, ok = <-reqs:
		case <-done:
			proc.finish(ch)
			return
		case <-ctx.Done():
			if proc != nil {
				proc.kill()
			}
			return
		}
		if !ok {
			if proc != nil {
				proc.kill()
			}
			return
		}
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			ok := ssh.Unmarshal(req.Payload, &kv) == nil && len(env) < maxEnv && validName(kv.Name)
			if ok {
				env[kv.Name] = kv.Value
			}
			req.Reply(ok, nil)
		case "pty-req":
			var p ptyRequest
			ok := proc == nil && ssh.Unmarshal(req.Payload, &p) == nil
			if ok {
				ptyReq = &p
			}
			req.Reply(ok, nil)
		case "window-change":
			var w struct{ Columns, Rows, Width, Height uint32 }
			if ssh.Unmarshal(req.Payload, &w) == nil && proc != nil && proc.tty != nil {
				pty.Setsize(proc.tty, &pty.Winsize{Cols: uint16(w.Columns), Rows: uint16(w.Rows)})
			}
			if req.WantReply {
				req.Reply(true, nil)
			}
		case "shell", "exec", "subsystem":
			if proc != nil {
				req.Reply(false, nil)
				continue
			}
			argv, ok := s.argv(req)
			if !ok {
				req.Reply(false, nil)
				continue
			}
			p, err := s.start(ch, argv, env, ptyReq, user)
			if err != nil {
				s.cfg.Log.Warn("sshd: start session", "err", err)
				req.Reply(false, nil)
				continue
			}
			proc = p
			req.Reply(true, nil)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// validName reports whether an environment variable name is plain.
func validName(n string) bool {
	if n == "" || len(n) > 256 {
		return false
	}
	for _, r := range n {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

type ptyRequest struct {
	Term                         string
	Columns, Rows, Width, Height uint32
	Modes                        string
}

// argv returns the command a shell, exec or subsystem request runs.
func (s *Server) argv(req *ssh.Request) ([]string, bool) {
	switch req.Type {
	case "shell":
		return []string{shell(), "-l"}, true
	case "exec":
		var c struct{ Command string }
		if ssh.Unmarshal(req.Payload, &c) != nil {
			return nil, false
		}
		return []string{shell(), "-c", c.Command}, true
	default: // subsystem
		var sub struct{ Name string }
		if ssh.Unmarshal(req.Payload, &sub) != nil || sub.Name != "sftp" || len(s.cfg.Helper) == 0 {
			return nil, false
		}
		return append(append([]string{}, s.cfg.Helper...), "sftp"), true
	}
}

// process is a session's running command.
type process struct {
	cmd  *exec.Cmd
	tty  *os.File // the PTY's controlling side; nil without a PTY
	done chan struct{}
	code int
	io   sync.WaitGroup // copies of output to the channel
}

// command returns an exec.Cmd for argv as the job user in the session's
// directory with the session's environment.
func (s *Server) command(argv []string, env map[string]string, extra map[string]string, user string) *exec.Cmd {
	dir := s.cfg.Dir()
	set := map[string]string{"USER": user, "LOGNAME": user, "SHELL": shell()}
	maps.Copy(set, extra)
	maps.Copy(set, s.cfg.Env)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = runner.JobEnv(dir, env, set)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if u := s.cfg.JobUser; u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}
	}
	return cmd
}

// start starts argv for a session channel.
func (s *Server) start(ch ssh.Channel, argv []string, env map[string]string, pr *ptyRequest, user string) (*process, error) {
	extra := map[string]string{}
	if pr != nil && pr.Term != "" {
		extra["TERM"] = pr.Term
	}
	cmd := s.command(argv, env, extra, user)
	p := &process{cmd: cmd, done: make(chan struct{})}
	if pr != nil {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, err
		}
		if u := s.cfg.JobUser; u != nil {
			os.Chown(tty.Name(), u.UID, u.GID)
		}
		pty.Setsize(ptmx, &pty.Winsize{Cols: uint16(pr.Columns), Rows: uint16(pr.Rows)})
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
		err = cmd.Start()
		tty.Close()
		if err != nil {
			ptmx.Close()
			return nil, err
		}
		p.tty = ptmx
		go io.Copy(ptmx, ch)
		p.io.Go(func() { io.Copy(ch, ptmx) }) // ends with EIO once every holder of the tty is gone
	} else {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		cmd.WaitDelay = 2 * time.Second
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() {
			io.Copy(stdin, ch)
			stdin.Close()
		}()
	}
	untrack := s.started(cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		untrack()
		p.code = exitCode(cmd, err)
		if p.tty != nil {
			// Output still buffered in the PTY is read before the end;
			// a background process holding the tty keeps it open, so
			// the wait is bounded.
			waitTimeout(&p.io, 2*time.Second)
			p.tty.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// finish sends the exit status and closes the channel.
func (p *process) finish(ch ssh.Channel) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(p.code)}))
	ch.CloseWrite()
}

// kill ends the process's session (its process group): the client left.
func (p *process) kill() {
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGHUP)
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

func exitCode(cmd *exec.Cmd, err error) int {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && cmd.ProcessState == nil {
		return 255
	}
	st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && st.Signaled() {
		return 128 + int(st.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// forward serves a direct-tcpip channel (ssh -L): it dials the target as
// the job user (through the helper) and copies both ways.
func (s *Server) forward(ctx context.Context, nc ssh.NewChannel) {
	var t struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &t); err != nil || t.Port == 0 || t.Port > 65535 {
		nc.Reject(ssh.ConnectionFailed, "bad forward request")
		return
	}
	addr := joinHostPort(t.Host, t.Port)
	conn, err := s.dial(addr)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "cannot connect to "+addr)
		return
	}
	defer conn.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	stop := context.AfterFunc(ctx, func() { conn.Close(); ch.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(conn, ch)
		closeWrite(conn)
	})
	io.Copy(ch, conn)
	ch.CloseWrite()
	wg.Wait()
}

func joinHostPort(host string, port uint32) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + itoa(int(port))
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func closeWrite(c io.Closer) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
