// Package connlimit bounds the connections a server holds for clients that
// have not yet proved who they are.
//
// A connection counts as unauthenticated from accept until a request on it
// passes token or node authentication (the server calls Authenticated).
// Unauthenticated connections are capped per client IP and in total; when
// a cap is reached, the oldest unauthenticated connection under it is
// closed to make room for the new one. Closing the oldest rather than
// refusing the newest means that a thousand idle connections from one
// address cannot lock out a client that connects after them from the same
// address: its connection is the newest, and it authenticates with its
// first request. A cap on all connections keeps the server below its
// file-descriptor limit; past it, the oldest unauthenticated connection is
// closed, or the new one when every connection is authenticated.
package connlimit

import (
	"container/list"
	"context"
	"net"
	"sync"
)

// Defaults for Config's zero values.
const (
	// DefaultPerAddr is how many unauthenticated connections one client
	// IP may hold at once.
	DefaultPerAddr = 128
	// DefaultUnauthenticated is how many unauthenticated connections all
	// clients together may hold.
	DefaultUnauthenticated = 1024
	// DefaultTotal is how many connections the listener holds in all.
	DefaultTotal = 8192
)

// Config bounds a Listener. Zero fields take the defaults above.
type Config struct {
	PerAddr         int // unauthenticated connections per client IP
	Unauthenticated int // unauthenticated connections in all
	Total           int // connections in all, authenticated or not
}

// Listener wraps a net.Listener and enforces Config on the connections it
// accepts. It is safe for concurrent use.
type Listener struct {
	net.Listener
	cfg Config

	mu     sync.Mutex
	unauth list.List             // *Conn not yet authenticated, oldest first
	byAddr map[string]*list.List // the same, per client IP, oldest first
	total  int                   // open connections accepted
}

// Wrap returns a Listener over ln.
func Wrap(ln net.Listener, cfg Config) *Listener {
	if cfg.PerAddr <= 0 {
		cfg.PerAddr = DefaultPerAddr
	}
	if cfg.Unauthenticated <= 0 {
		cfg.Unauthenticated = DefaultUnauthenticated
	}
	if cfg.Total <= 0 {
		cfg.Total = DefaultTotal
	}
	return &Listener{Listener: ln, cfg: cfg, byAddr: map[string]*list.List{}}
}

// Conn is an accepted connection. Close releases its place.
type Conn struct {
	net.Conn
	l    *Listener
	addr string // client IP

	// Guarded by l.mu.
	elem     *list.Element // in l.unauth; nil once authenticated or released
	addrElem *list.Element // in l.byAddr[addr]
	released bool          // no longer counted in l.total
}

// Accept waits for a connection, makes room for it under the caps, and
// returns it as a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &Conn{Conn: nc, l: l, addr: hostOf(nc.RemoteAddr())}
		var evict []*Conn
		l.mu.Lock()
		if l.total >= l.cfg.Total {
			if old := l.oldest(l.unauth.Front()); old != nil {
				evict = append(evict, old)
			} else {
				l.mu.Unlock()
				nc.Close()
				continue
			}
		}
		if q := l.byAddr[c.addr]; q != nil && q.Len() >= l.cfg.PerAddr {
			evict = append(evict, l.oldest(q.Front()))
		}
		if l.unauth.Len() >= l.cfg.Unauthenticated {
			if old := l.oldest(l.unauth.Front()); old != nil {
				evict = append(evict, old)
			}
		}
		l.total++
		c.elem = l.unauth.PushBack(c)
		q := l.byAddr[c.addr]
		if q == nil {
			q = list.New()
			l.byAddr[c.addr] = q
		}
		c.addrElem = q.PushBack(c)
		l.mu.Unlock()
		for _, old := range evict {
			if old != nil {
				old.Conn.Close()
			}
		}
		return c, nil
	}
}

// oldest releases the connection at e (of either list) and returns it, or
// returns nil when e is nil. l.mu is held.
func (l *Listener) oldest(e *list.Element) *Conn {
	if e == nil {
		return nil
	}
	c := e.Value.(*Conn)
	l.release(c)
	return c
}

// forget takes c off the unauthenticated lists. l.mu is held.
func (l *Listener) forget(c *Conn) {
	if c.elem == nil {
		return
	}
	l.unauth.Remove(c.elem)
	q := l.byAddr[c.addr]
	q.Remove(c.addrElem)
	if q.Len() == 0 {
		delete(l.byAddr, c.addr)
	}
	c.elem, c.addrElem = nil, nil
}

// release forgets c and stops counting it. l.mu is held.
func (l *Listener) release(c *Conn) {
	l.forget(c)
	if !c.released {
		c.released = true
		l.total--
	}
}

// Close closes the connection and frees its place.
func (c *Conn) Close() error {
	c.l.mu.Lock()
	c.l.release(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// NetConn returns the connection c wraps.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Stats is a snapshot of a Listener's counts.
type Stats struct {
	Open            int // connections accepted and not closed
	Unauthenticated int // of those, not yet authenticated
}

// Stats returns the listener's current counts.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Open: l.total, Unauthenticated: l.unauth.Len()}
}

type connKey struct{}

// ConnContext is an http.Server ConnContext: it records the *Conn under c
// (c itself, or the connection a *tls.Conn wraps) so that Authenticated
// can find it from a request's context.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	for {
		switch v := c.(type) {
		case *Conn:
			return context.WithValue(ctx, connKey{}, v)
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return ctx
		}
	}
}

// Authenticated marks the connection of ctx (see ConnContext) as
// authenticated: it no longer counts against the caps on unauthenticated
// connections and is never closed to make room. It does nothing when ctx
// carries no connection, and may be called more than once.
func Authenticated(ctx context.Context) {
	c, ok := ctx.Value(connKey{}).(*Conn)
	if !ok {
		return
	}
	c.l.mu.Lock()
	c.l.forget(c)
	c.l.mu.Unlock()
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
