package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kumo/internal/server/connlimit"
)

// A thousand idle connections without a token, plus some that stop half
// way through their headers or their body, do not keep an authenticated
// client from being served: the control plane closes the oldest
// unauthenticated connections of an address to make room.
func TestIdleConnectionsDoNotLockOutClients(t *testing.T) {
	s := startServer(t, "")
	addr := strings.TrimPrefix(s.base, "https://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	idle := 1000
	for i := range idle {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("dial idle connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	tlsCfg := &tls.Config{RootCAs: s.caPool(), ServerName: "127.0.0.1"}
	partial := []string{
		"GET " + workspacePath + "/computes?api-version=2024-04-01 HTTP/1.1\r\nHost: x\r\n",                              // half a header
		"PUT " + workspacePath + "/jobs/x?api-version=2024-04-01 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{", // one byte of a body
	}
	for i := range 100 {
		raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("dial partial connection %d: %v", i, err)
		}
		conns = append(conns, raw)
		c := tls.Client(raw, tlsCfg)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if err := c.Handshake(); err != nil {
			t.Fatalf("TLS handshake of partial connection %d: %v", i, err)
		}
		if _, err := io.WriteString(c, partial[i%2]); err != nil {
			t.Fatalf("write partial request %d: %v", i, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kumo, "compute", "list")
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("kumo compute list did not answer within 20 s beside %d idle connections:\n%s", idle, out)
	}
	if err != nil {
		t.Fatalf("kumo compute list: %v\n%s", err, out)
	}

	// The control plane holds at most its per-address cap of the idle
	// connections; it closed the rest.
	var mu sync.Mutex
	open := 0
	var wg sync.WaitGroup
	for _, c := range conns[:idle] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(time.Second))
			_, err := c.Read(make([]byte, 1))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				open++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if open > connlimit.DefaultPerAddr {
		t.Errorf("%d of %d idle connections without a token are still open; want at most %d", open, idle, connlimit.DefaultPerAddr)
	}
}

// A second kumo up on a data directory in use exits at once, naming the
// running control plane; once that one stops, a new one starts.
func TestSecondUpOnSameDataDirRefused(t *testing.T) {
	s := startServer(t, "")
	other := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kumo, "up", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(s.dir, "data"))
	cmd.Dir = other
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("a second kumo up on the same data directory still ran after 20 s:\n%s", out)
	}
	if err == nil {
		t.Fatalf("a second kumo up on the same data directory exited 0:\n%s", out)
	}
	for _, want := range []string{fmt.Sprintf("pid %d", s.cmd.Process.Pid), s.base} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not name the running control plane (%q):\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(other, ".kumo")); err == nil {
		t.Error("the refused kumo up wrote a client config")
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop the first control plane: %v\n%s", err, s.out)
	}
	startServer(t, s.dir) // fails the test unless it serves
}
