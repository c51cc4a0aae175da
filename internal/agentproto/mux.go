package agentproto

import (
	"bufio"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"kumo/internal/stream"
)

// Accept is the control plane's side of a version 3 connection after it
// wrote 101 Switching Protocols on c: it starts the yamux session (r is
// the buffer that read the request, which may already hold the agent's
// first bytes) and waits at most timeout for the agent's message stream.
// Closing the returned session closes c.
func Accept(c net.Conn, r *bufio.Reader, timeout time.Duration) (*yamux.Session, net.Conn, error) {
	mux, err := yamux.Server(&stream.Buffered{Conn: c, R: r}, MuxConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("start streams: %w", err)
	}
	type result struct {
		st  net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		st, err := mux.AcceptStream()
		ch <- result{st, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			mux.Close()
			return nil, nil, fmt.Errorf("accept message stream: %w", res.err)
		}
		return mux, res.st, nil
	case <-time.After(timeout):
		mux.Close()
		<-ch
		return nil, nil, fmt.Errorf("accept message stream: no stream within %s", timeout)
	}
}
