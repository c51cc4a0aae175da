package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"time"

	"kumo/internal/server/connlimit"
)

// streaming lifts the http.Server's read and write deadlines from a route
// that moves many bytes or waits on a job, and holds it to progress
// instead: every read of the body and every write of the answer must
// complete within s.transfer. Between them (a log follower waiting for
// output) no deadline runs.
func (s *Server) streaming(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		pw := &progressWriter{ResponseWriter: w, rc: rc, d: s.transfer}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &progressReader{ReadCloser: r.Body, rc: rc, d: s.transfer}
		}
		h.ServeHTTP(pw, r)
		if !pw.hijacked {
			// The server flushes the rest of the answer after we return.
			_ = rc.SetWriteDeadline(time.Now().Add(s.transfer))
		}
	})
}

// progressReader gives each Read of a request body its own deadline.
type progressReader struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (p *progressReader) Read(b []byte) (int, error) {
	_ = p.rc.SetReadDeadline(time.Now().Add(p.d))
	n, err := p.ReadCloser.Read(b)
	// No deadline while the handler works between reads: the server's
	// background read, which watches for the client going away, must not
	// time out.
	_ = p.rc.SetReadDeadline(time.Time{})
	return n, err
}

// progressWriter gives each Write of an answer its own deadline.
type progressWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	d        time.Duration
	hijacked bool
}

func (p *progressWriter) WriteHeader(code int) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.d))
	p.ResponseWriter.WriteHeader(code)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.d))
	return p.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (p *progressWriter) Flush() {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.d))
	_ = p.rc.Flush()
}

// Hijack implements http.Hijacker; a hijacked connection has no deadline
// (the server clears them) and is its new owner's to bound.
func (p *progressWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := p.rc.Hijack()
	if err == nil {
		p.hijacked = true
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// agentAuthWatch marks a node agent's connection authenticated (see
// connlimit) once the agent handler lets the request through: it answers
// with anything but 401, or takes the connection over. A 401 also closes
// the connection, as for API tokens.
func agentAuthWatch(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(&authWatcher{ResponseWriter: w, r: r}, r)
	})
}

type authWatcher struct {
	http.ResponseWriter
	r       *http.Request
	written bool
}

func (a *authWatcher) WriteHeader(code int) {
	if !a.written {
		a.written = true
		if code == http.StatusUnauthorized {
			a.Header().Set("Connection", "close")
		} else {
			connlimit.Authenticated(a.r.Context())
		}
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *authWatcher) Write(b []byte) (int, error) {
	if !a.written {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseWriter.Write(b)
}

// Hijack implements http.Hijacker: the agent handler takes a connection
// over only after it authenticated the node.
func (a *authWatcher) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	connlimit.Authenticated(a.r.Context())
	return http.NewResponseController(a.ResponseWriter).Hijack()
}

// Flush implements http.Flusher.
func (a *authWatcher) Flush() {
	if !a.written {
		a.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(a.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (a *authWatcher) Unwrap() http.ResponseWriter { return a.ResponseWriter }
