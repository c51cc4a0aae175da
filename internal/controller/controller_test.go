package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a Reconciler whose behaviour per key the test sets.
type recorder struct {
	mu      sync.Mutex
	calls   map[string]int
	running map[string]int
	overlap bool
	do      func(key string, call int) (Result, error)
	called  chan string
}

func newRecorder(do func(key string, call int) (Result, error)) *recorder {
	return &recorder{calls: map[string]int{}, running: map[string]int{}, do: do, called: make(chan string, 1000)}
}

func (r *recorder) Reconcile(ctx context.Context, key string) (Result, error) {
	r.mu.Lock()
	r.calls[key]++
	n := r.calls[key]
	r.running[key]++
	if r.running[key] > 1 {
		r.overlap = true
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running[key]--
		r.mu.Unlock()
		r.called <- key
	}()
	if r.do != nil {
		return r.do(key, n)
	}
	return Result{}, nil
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[key]
}

// wait waits for n calls in all.
func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.called:
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %d reconciles", n)
		}
	}
}

func run(t *testing.T, c *Controller) {
	t.Helper()
	g := Start(t.Context(), c)
	t.Cleanup(g.Stop)
}

func TestRetriesAndOutcomes(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		do        func(key string, call int) (Result, error)
		wantCalls int
	}{
		{"success runs once", func(string, int) (Result, error) { return Result{}, nil }, 1},
		{"failures retry until success", func(_ string, n int) (Result, error) {
			if n < 4 {
				return Result{}, boom
			}
			return Result{}, nil
		}, 4},
		{"terminal errors are not retried", func(string, int) (Result, error) { return Result{}, Terminal(boom) }, 1},
		{"a panic is retried like an error", func(_ string, n int) (Result, error) {
			if n == 1 {
				panic("bad record")
			}
			return Result{}, nil
		}, 2},
		{"requeue after runs again", func(_ string, n int) (Result, error) {
			if n < 3 {
				return Result{RequeueAfter: 10 * time.Millisecond}, nil
			}
			return Result{}, nil
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(tc.do)
			c := New(Config{Name: "t", Reconciler: r, BaseDelay: time.Millisecond, Log: quiet})
			run(t, c)
			c.Enqueue("k")
			r.wait(t, tc.wantCalls)
			time.Sleep(100 * time.Millisecond) // no further call comes
			if got := r.count("k"); got != tc.wantCalls {
				t.Errorf("calls = %d, want %d", got, tc.wantCalls)
			}
		})
	}
}

// A key added many times while queued is reconciled once; a key added
// while its Reconcile runs is reconciled once more after it, never by two
// workers at once.
func TestKeysAreDeduplicatedAndNeverConcurrent(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	r := newRecorder(func(key string, n int) (Result, error) {
		if key == "slow" && n == 1 {
			started <- struct{}{}
			<-release
		}
		return Result{}, nil
	})
	c := New(Config{Name: "t", Reconciler: r, Workers: 4, Log: quiet})
	c.Enqueue("slow")
	for range 50 {
		c.Enqueue("other") // queued once
	}
	run(t, c)
	<-started
	for range 50 {
		c.Enqueue("slow")
	}
	r.wait(t, 1) // other
	close(release)
	r.wait(t, 2) // slow, then slow once more
	time.Sleep(100 * time.Millisecond)
	if got := r.count("slow"); got != 2 {
		t.Errorf("slow reconciled %d times, want 2 (once, then once for the adds during it)", got)
	}
	if got := r.count("other"); got != 1 {
		t.Errorf("other reconciled %d times, want 1", got)
	}
	if r.overlap {
		t.Error("one key was reconciled by two workers at once")
	}
}

func TestBackoffGrowsToTheCap(t *testing.T) {
	c := New(Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{1, 10 * time.Millisecond}, {2, 20 * time.Millisecond}, {3, 40 * time.Millisecond}, {4, 50 * time.Millisecond}, {40, 50 * time.Millisecond}} {
		if got := c.backoff(tc.failures); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestResyncAddsEveryKey(t *testing.T) {
	r := newRecorder(nil)
	var lists atomic.Int32
	c := New(Config{Name: "t", Reconciler: r, Resync: 20 * time.Millisecond, Log: quiet,
		ResyncKeys: func(context.Context) ([]string, error) { lists.Add(1); return []string{"a", "b"}, nil }})
	run(t, c)
	r.wait(t, 4) // a and b at start, and again after a tick
	if lists.Load() < 2 {
		t.Errorf("keys listed %d times, want at least 2", lists.Load())
	}
}

func TestEnqueueAfterKeepsTheEarliest(t *testing.T) {
	r := newRecorder(nil)
	c := New(Config{Name: "t", Reconciler: r, Log: quiet})
	run(t, c)
	c.EnqueueAfter("k", time.Hour)
	c.EnqueueAfter("k", 10*time.Millisecond)
	c.EnqueueAfter("k", time.Hour)
	r.wait(t, 1)
}

func TestStopWaitsForReconcilesUnderWay(t *testing.T) {
	var ended atomic.Bool
	started := make(chan struct{})
	r := newRecorder(func(string, int) (Result, error) {
		close(started)
		time.Sleep(50 * time.Millisecond)
		ended.Store(true)
		return Result{}, nil
	})
	var seen []Observation
	var mu sync.Mutex
	c := New(Config{Name: "loop", Reconciler: r, Log: quiet, Observe: func(o Observation) {
		mu.Lock()
		seen = append(seen, o)
		mu.Unlock()
	}})
	g := Start(context.Background(), c)
	c.Enqueue("k")
	<-started
	g.Stop()
	if !ended.Load() {
		t.Fatal("Stop returned while a Reconcile ran")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0].Controller != "loop" || seen[0].Key != "k" || seen[0].Duration < 50*time.Millisecond {
		t.Errorf("observations = %+v, want one of loop/k lasting the call", seen)
	}
}
