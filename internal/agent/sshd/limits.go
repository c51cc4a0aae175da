package sshd

import (
	"sync"
	"time"
)

// Limits bound refused logins per source. A source's refused logins are
// counted over Window; from SlowAfter on, each further password check
// waits Delay first; at RefuseAfter the source is refused, before any
// hash is computed, for Block.
type Limits struct {
	SlowAfter   int           // refused logins before checks are slowed
	RefuseAfter int           // refused logins before the source is refused
	Delay       time.Duration // wait before each slowed check
	Window      time.Duration // how long a refused login counts
	Block       time.Duration // how long a refused source stays refused
}

// DefaultLimits are the limits of zero Limits fields.
var DefaultLimits = Limits{SlowAfter: 3, RefuseAfter: 10, Delay: time.Second, Window: 10 * time.Minute, Block: 5 * time.Minute}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.SlowAfter > 0 {
		d.SlowAfter = l.SlowAfter
	}
	if l.RefuseAfter > 0 {
		d.RefuseAfter = l.RefuseAfter
	}
	if l.Delay > 0 {
		d.Delay = l.Delay
	}
	if l.Window > 0 {
		d.Window = l.Window
	}
	if l.Block > 0 {
		d.Block = l.Block
	}
	return d
}

// maxSources bounds the sources remembered; past it the oldest half of
// the record is dropped (refused sources are kept).
const maxSources = 4096

// limiter counts refused logins per source.
type limiter struct {
	l   Limits
	now func() time.Time

	mu sync.Mutex
	m  map[string]*record
}

type record struct {
	failures int
	first    time.Time // of the current window
	until    time.Time // refused until; zero when not refused
}

func newLimiter(l Limits, now func() time.Time) *limiter {
	return &limiter{l: l, now: now, m: map[string]*record{}}
}

// check returns how long to wait before checking a login of source, or
// refused when the source is refused now.
func (lm *limiter) check(source string) (delay time.Duration, refused bool) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	r := lm.m[source]
	if r == nil {
		return 0, false
	}
	now := lm.now()
	if now.Before(r.until) {
		return 0, true
	}
	if !r.until.IsZero() || now.Sub(r.first) > lm.l.Window {
		delete(lm.m, source) // the block or the window is over
		return 0, false
	}
	if r.failures >= lm.l.SlowAfter {
		return lm.l.Delay, false
	}
	return 0, false
}

// fail counts a refused login of source; it reports whether the source
// is refused from now on.
func (lm *limiter) fail(source string) (blocked bool) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	now := lm.now()
	r := lm.m[source]
	if r == nil || now.Sub(r.first) > lm.l.Window {
		if len(lm.m) >= maxSources {
			lm.prune(now)
		}
		r = &record{first: now}
		lm.m[source] = r
	}
	if now.Before(r.until) {
		return false
	}
	r.failures++
	if r.failures >= lm.l.RefuseAfter {
		r.until = now.Add(lm.l.Block)
		return true
	}
	return false
}

// succeed forgets source's refused logins.
func (lm *limiter) succeed(source string) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if r := lm.m[source]; r != nil && !lm.now().Before(r.until) {
		delete(lm.m, source)
	}
}

// prune drops records that no longer matter, then, if still full, every
// record of a source not refused now; lm.mu must be held.
func (lm *limiter) prune(now time.Time) {
	for k, r := range lm.m {
		if now.After(r.until) && now.Sub(r.first) > lm.l.Window {
			delete(lm.m, k)
		}
	}
	if len(lm.m) < maxSources {
		return
	}
	for k, r := range lm.m {
		if !now.Before(r.until) {
			delete(lm.m, k)
		}
	}
}
