package agentproto

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
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
	mux, err := yamux.Server(joinFrames(&stream.Buffered{Conn: c, R: r}), MuxConfig())
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

// Client is the agent's side of a version 3 connection once the control
// plane switched protocols on c: the yamux session that opens the message
// stream. Closing it closes c.
func Client(c io.ReadWriteCloser) (*yamux.Session, error) {
	return yamux.Client(joinFrames(c), MuxConfig())
}

// addrs is what a connection tells of its ends; a yamux session passes
// them on to its streams when its connection has them.
type addrs interface {
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
}

// joinFrames returns c as a frameConn, with c's addresses if it has them.
func joinFrames(c io.ReadWriteCloser) io.ReadWriteCloser {
	f := &frameConn{ReadWriteCloser: c}
	if a, ok := c.(addrs); ok {
		return struct {
			*frameConn
			addrs
		}{f, a}
	}
	return f
}

// yamux frames: a 12-byte header (version, type, flags, stream ID, length)
// and, for a data frame, a body of length bytes.
const (
	muxHeaderSize = 12
	muxTypeData   = 0
	// frameKeep is the largest buffer a frameConn keeps between frames.
	frameKeep = 64 << 10
)

// frameConn is the connection under a yamux session. The session writes a
// frame's header and its body in two writes, which on TLS are two records
// and two system calls; frameConn holds the header of a data frame with a
// body and writes it with the body, in one write. Any other write is
// passed on at once. Only the session's send loop writes, one frame after
// the other, so Write needs no lock.
type frameConn struct {
	io.ReadWriteCloser
	buf  []byte // the held header
	held bool
}

// Write writes p, or holds it when it is the header of a data frame whose
// body comes next.
func (c *frameConn) Write(p []byte) (int, error) {
	if !c.held {
		if len(p) == muxHeaderSize && p[1] == muxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
			c.buf = append(c.buf[:0], p...)
			c.held = true
			return len(p), nil
		}
		return c.ReadWriteCloser.Write(p)
	}
	c.held = false
	c.buf = append(c.buf, p...)
	n, err := c.ReadWriteCloser.Write(c.buf)
	if cap(c.buf) > frameKeep {
		c.buf = nil
	}
	return max(n-muxHeaderSize, 0), err
}
