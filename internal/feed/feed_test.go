package feed

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kumo/internal/store"
	"kumo/internal/store/replicatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds each wait for an announcement.
const wait = 30 * time.Second

// recorder is a replica's loops: it records the computes it is told of.
type recorder struct {
	mu      sync.Mutex
	got     []string
	resyncs int
	signal  chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 100)} }

func (r *recorder) changed(id string) {
	r.mu.Lock()
	r.got = append(r.got, id)
	r.mu.Unlock()
	r.signal <- struct{}{}
}

func (r *recorder) resync() {
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
	r.signal <- struct{}{}
}

// next waits for the next call and returns what was called so far.
func (r *recorder) next(t *testing.T) ([]string, int) {
	t.Helper()
	select {
	case <-r.signal:
	case <-time.After(wait):
		t.Fatalf("not told within %s", wait)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...), r.resyncs
}

func start(t *testing.T, st store.Store, replica string, r *recorder) *Changes {
	t.Helper()
	c, err := New(Config{Store: st, Replica: replica, Changed: r.changed, Resync: r.resync})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

func TestChangesAcrossReplicas(t *testing.T) {
	for _, backend := range replicatest.Backends {
		t.Run(backend, func(t *testing.T) {
			stA, stB := replicatest.Pair(t, backend)
			ra, rb := newRecorder(), newRecorder()
			a := start(t, stA, "a", ra)
			start(t, stB, "b", rb)

			a.Publish("c1")
			// A's own loops are told at once, and only once.
			if got, _ := ra.next(t); len(got) != 1 || got[0] != "c1" {
				t.Fatalf("A told %q, want [c1]", got)
			}
			if got, _ := rb.next(t); len(got) != 1 || got[0] != "c1" {
				t.Fatalf("B told %q, want [c1]", got)
			}

			// A malformed announcement is skipped; a resync ("") is
			// passed on.
			for _, p := range []string{"nospace", ""} {
				if err := stA.Publish(t.Context(), ComputeChannel, p); err != nil {
					t.Fatal(err)
				}
			}
			got, resyncs := rb.next(t)
			if len(got) != 1 || resyncs != 1 {
				t.Errorf("after a malformed announcement and a resync, B told %q and resynced %d times; want [c1], 1", got, resyncs)
			}
			if got, resyncs := ra.next(t); len(got) != 1 || resyncs != 1 {
				t.Errorf("A told %q and resynced %d times; want [c1], 1", got, resyncs)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	st, _ := replicatest.Pair(t, "sqlite")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{Replica: "a", Changed: func(string) {}}},
		{"no replica", Config{Store: st, Changed: func(string) {}}},
		{"space in replica", Config{Store: st, Replica: "a b", Changed: func(string) {}}},
		{"no callback", Config{Store: st, Replica: "a"}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}
