package autoscale

import (
	"errors"
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/store"
)

// eventually polls cond every millisecond until it holds, failing the test
// after five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The loops run on the real clock: Notify drives a pass at once, a
// requeue timer removes an idle node, the health loop deletes an orphan;
// the resync tick (an hour) never fires.
func TestStartNotify(t *testing.T) {
	e := newEnv(t, fake.Config{Now: time.Now}, func(c *Config) { c.Now = time.Now })
	e.live.now = time.Now
	c := e.compute("cpu", model.ScaleSettings{MaxNodes: 2, IdleTime: 50 * time.Millisecond})
	if err := e.prov.Create(t.Context(), []provider.Instance{{ID: "orphan", Compute: c.ID}}); err != nil {
		t.Fatal(err)
	}

	e.a.Start(t.Context())
	defer e.a.Stop()
	e.h.Start(t.Context())
	defer e.h.Stop()
	eventually(t, "the first pass to write a status", func() bool {
		_, err := e.st.ComputeStatusGet(t.Context(), c.ID)
		return !errors.Is(err, store.ErrNotFound)
	})
	eventually(t, "the orphan to be deleted", func() bool {
		_, ok := e.prov.Instance("orphan")
		return !ok
	})

	j := e.jobs(c, 1)[0]
	queued := time.Now()
	e.a.Notify(c.ID)
	eventually(t, "a node to be created", func() bool { return e.prov.Calls().Created == 2 }) // the orphan was the first
	t.Logf("queued job to provider Create: %v", time.Since(queued))

	e.clock.Set(time.Now()) // the hub's stand-ins below stamp times from e.clock
	n := e.registerAll(c)[0]
	e.dispatch(j, n)
	e.finish(j)
	e.a.Notify(c.ID)
	idleAt := e.clock.Now() // finish stamped the node idle then
	eventually(t, "the idle node to be removed", func() bool { return len(e.nodes(c)) == 0 })
	if d := time.Since(idleAt); d < 50*time.Millisecond {
		t.Errorf("idle node removed after %v, before the idle time", d)
	}
	if got := e.prov.Calls().Deleted; got != 2 {
		t.Errorf("provider deleted %d instances, want 2 (the orphan and the node)", got)
	}
}

func TestStopWithoutStart(t *testing.T) {
	e := newEnv(t, fake.Config{})
	e.a.Stop()
}
