package daemon

import (
	"syscall"
	"time"

	"kumo/internal/server"
	"kumo/internal/server/connlimit"
)

// Limits are the deadlines and caps of the API listener. Every zero field
// takes the default named in its comment.
type Limits struct {
	// ReadHeaderTimeout bounds the TLS handshake and reading a request's
	// headers; default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request on ordinary routes;
	// default 1m. Streaming routes use TransferTimeout instead.
	ReadTimeout time.Duration
	// WriteTimeout bounds handling and answering a request on ordinary
	// routes; default 1m.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request; default 2m.
	IdleTimeout time.Duration
	// TransferTimeout is how long a streaming route (code upload, artifact
	// download, log follow, the agents' transfers) may go without moving
	// a byte; default server.DefaultTransferTimeout.
	TransferTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers; default 64 KiB.
	MaxHeaderBytes int
	// MaxUnauthConnsPerAddr caps the connections one client IP holds
	// before authenticating; past it the oldest is closed; default
	// connlimit.DefaultPerAddr.
	MaxUnauthConnsPerAddr int
	// MaxUnauthConns caps unauthenticated connections from all clients;
	// default connlimit.DefaultUnauthenticated.
	MaxUnauthConns int
	// MaxConns caps all connections; default the open-file limit less
	// fileReserve, at most connlimit.DefaultTotal.
	MaxConns int
	// RateLimit is the requests per second each API token may make, on
	// average; default server.DefaultRateLimit; negative means no limit.
	// Node agents are not limited by it.
	RateLimit float64
	// RateBurst is how many requests a token may make at once; default
	// server.DefaultRateBurst.
	RateBurst int
}

// fileReserve is how many file descriptors are kept for everything but
// API connections: the database, job logs, node processes' pipes.
const fileReserve = 256

// withDefaults fills zero fields; nofile is the open-file limit (0 if
// unknown).
func (l Limits) withDefaults(nofile uint64) Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.ReadTimeout, time.Minute)
	def(&l.WriteTimeout, time.Minute)
	def(&l.IdleTimeout, 2*time.Minute)
	def(&l.TransferTimeout, server.DefaultTransferTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxConns <= 0 {
		l.MaxConns = connlimit.DefaultTotal
		if nofile > 0 && nofile < uint64(l.MaxConns)+fileReserve {
			l.MaxConns = max(64, int(nofile)-fileReserve)
		}
	}
	return l
}

// raiseNofile raises the soft open-file limit to the hard one (Go does so
// at start on most systems; this makes sure) and returns the soft limit,
// or 0 if it cannot be read.
func raiseNofile() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		up := rl
		up.Cur = up.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			rl = up
		}
	}
	return rl.Cur
}
