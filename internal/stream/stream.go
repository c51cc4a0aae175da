// Package stream holds what kumo's tunnels share for byte streams over
// connections: a connection whose first bytes were already read into a
// buffer (after an HTTP upgrade), and the splice of two connections both
// ways.
package stream

import (
	"io"
	"net"
	"sync"
)

// Buffered is a connection read through R, which holds what was read of
// Conn ahead.
type Buffered struct {
	net.Conn
	R io.Reader
}

// Read reads through R.
func (c *Buffered) Read(p []byte) (int, error) { return c.R.Read(p) }

// CloseWrite ends the writing half of the connection where it has one,
// else closes it.
func (c *Buffered) CloseWrite() error { return closeWrite(c.Conn) }

// closeWrite half-closes c where it can, else closes it.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// Splice copies both ways until both directions end, passing on each
// side's end of writing as a half close.
func Splice(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		closeWrite(dst)
	}
	wg.Go(func() { cp(a, b) })
	cp(b, a)
	wg.Wait()
}
