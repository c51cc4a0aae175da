package autoscale

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/provider/fake"
)

// sessions is a fake Sessions: open counts and close times by node.
type sessions struct {
	mu     sync.Mutex
	open   map[string]int
	closed map[string]time.Time
}

func (s *sessions) Sessions(id string) (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[id], s.closed[id]
}

func (s *sessions) set(id string, open int, closed time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open[id], s.closed[id] = open, closed
}

// TestOpenSessionKeepsIdleNode: an idle node with an SSH session open is
// kept past its idle time (one event says why); once the session closes,
// the idle clock starts from the close.
func TestOpenSessionKeepsIdleNode(t *testing.T) {
	ss := &sessions{open: map[string]int{}, closed: map[string]time.Time{}}
	e := newEnv(t, fake.Config{}, func(c *Config) { c.Sessions = ss })
	const idle = 2 * time.Minute
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 2, IdleTime: idle})
	j := e.jobs(c, 1)[0]
	e.reconcile(c)
	n := e.registerAll(c)[0]
	e.dispatch(j, n)
	e.finish(j)
	e.live.now = e.clock.Now
	ss.set(n.ID, 1, time.Time{})

	e.clock.Advance(idle)
	e.reconcile(c)
	e.clock.Advance(idle)
	e.reconcile(c) // a second pass records no second event
	if got := len(e.nodes(c)); got != 1 {
		t.Fatalf("nodes after twice the idle time with a session open = %d, want 1", got)
	}

	closed := e.clock.Now()
	ss.set(n.ID, 0, closed)
	e.clock.Advance(idle - time.Second)
	if res := e.reconcile(c); res.RequeueAfter != time.Second {
		t.Errorf("RequeueAfter = %s, want 1s (the idle time counted from the close)", res.RequeueAfter)
	}
	if got := len(e.nodes(c)); got != 1 {
		t.Fatalf("node removed %s after the session closed, before the idle time", idle-time.Second)
	}
	e.clock.Advance(time.Second)
	e.reconcile(c)
	if got := len(e.nodes(c)); got != 0 {
		t.Errorf("nodes after the idle time from the close = %d, want 0", got)
	}
	want := []string{
		"ScaleUp: 0 → 1 nodes: 1 node for waiting jobs",
		"NodeInUse: node " + n.ID + " kept although idle: 1 SSH session open",
		"ScaleDown: node " + n.ID + " idle for 2m0s ≥ PT2M",
	}
	if diff := cmp.Diff(want, e.events(c)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
