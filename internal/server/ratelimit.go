package server

import (
	"math"
	"sync"
	"time"
)

// Defaults for the per-token rate limit: generous, so that scripts, busy
// CLIs and kumo's own throughput benchmark (one token submitting 600+ jobs
// a second) never meet it, while a runaway client is held well below what
// the control plane serves in all.
const (
	DefaultRateLimit = 1000.0 // requests per second, on average
	DefaultRateBurst = 2000   // requests at once
)

// rateLimiter is a token bucket per API token. Node agents are not rate
// limited here: they authenticate with node credentials, not API tokens.
type rateLimiter struct {
	rate  float64 // refill per second; <= 0 means no limit
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket // by token ID; bounded by the number of tokens
}

type bucket struct {
	level float64 // requests left
	at    time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	if rate == 0 {
		rate = DefaultRateLimit
	}
	if burst <= 0 {
		burst = DefaultRateBurst
	}
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes one request from key's bucket at now. When the bucket is
// empty it returns false and how long until a request is allowed.
func (l *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{level: l.burst, at: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.level = math.Min(l.burst, b.level+el*l.rate)
		b.at = now
	}
	if b.level >= 1 {
		b.level--
		return true, 0
	}
	wait := time.Duration((1 - b.level) / l.rate * float64(time.Second))
	return false, wait
}
