package sshd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/pkg/sftp"
)

// dialTimeout bounds a port forward's connect.
const dialTimeout = 10 * time.Second

// dial connects to addr for a port forward: as the job user through the
// helper when there is one, else (jobs run as the agent's user) itself.
func (s *Server) dial(addr string) (io.ReadWriteCloser, error) {
	if s.cfg.JobUser == nil || len(s.cfg.Helper) == 0 {
		if s.cfg.JobUser != nil {
			return nil, errors.New("no helper to dial as the job user")
		}
		return net.DialTimeout("tcp", addr, dialTimeout)
	}
	argv := append(append([]string{}, s.cfg.Helper...), "dial", addr)
	cmd := s.command(argv, nil, nil, "")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	untrack := s.started(cmd.Process.Pid)
	// The helper writes one byte once connected, or exits.
	br := bufio.NewReader(stdout)
	if b, err := br.ReadByte(); err != nil || b != 0 {
		cmd.Process.Kill()
		cmd.Wait()
		untrack()
		return nil, fmt.Errorf("dial %s: refused", addr)
	}
	return &helperConn{cmd: cmd, r: br, w: stdin, untrack: untrack}, nil
}

// helperConn is a connection through a dial helper's stdin and stdout.
type helperConn struct {
	cmd     *exec.Cmd
	r       io.Reader
	w       io.WriteCloser
	untrack func()
	once    sync.Once
}

func (h *helperConn) Read(p []byte) (int, error)  { return h.r.Read(p) }
func (h *helperConn) Write(p []byte) (int, error) { return h.w.Write(p) }

// CloseWrite ends what is sent: the helper half-closes its connection.
func (h *helperConn) CloseWrite() error { return h.w.Close() }

func (h *helperConn) Close() error {
	h.once.Do(func() {
		h.w.Close()
		h.cmd.Process.Kill()
		h.cmd.Wait()
		h.untrack()
	})
	return nil
}

// RunHelper is the helper process's body (`kumo ssh-helper`), run as the
// job user: "sftp" serves SFTP on stdin and stdout in the current
// directory; "dial HOST:PORT" connects, writes one zero byte, then copies
// stdin to the connection and the connection to stdout.
func RunHelper(args []string, stdin io.Reader, stdout io.WriteCloser) error {
	switch {
	case len(args) == 1 && args[0] == "sftp":
		wd, _ := os.Getwd()
		srv, err := sftp.NewServer(struct {
			io.Reader
			io.WriteCloser
		}{stdin, stdout}, sftp.WithServerWorkingDirectory(wd))
		if err != nil {
			return err
		}
		if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	case len(args) == 2 && args[0] == "dial":
		c, err := net.DialTimeout("tcp", args[1], dialTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := stdout.Write([]byte{0}); err != nil {
			return err
		}
		done := make(chan struct{})
		go func() {
			io.Copy(c, stdin)
			closeWrite(c)
			close(done)
		}()
		io.Copy(stdout, c)
		stdout.Close()
		<-done
		return nil
	}
	return fmt.Errorf("ssh-helper: want \"sftp\" or \"dial HOST:PORT\", got %q", args)
}
