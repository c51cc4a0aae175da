package fake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/provider"
	"kumo/internal/provider/providertest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider { return New(Config{}) })
}

// clock is a settable test clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func inst(id string) provider.Instance {
	return provider.Instance{ID: id, Compute: "c", Size: provider.Size{Name: "S", VCPUs: 2, MemoryMB: 1024}}
}

func states(t *testing.T, f *Fake) map[string]provider.State {
	t.Helper()
	got, err := f.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]provider.State{}
	for _, s := range got {
		m[s.ID] = s.State
	}
	return m
}

func TestBootDelayAndFailures(t *testing.T) {
	ctx := context.Background()
	c := &clock{now: time.Unix(1000, 0)}
	f := New(Config{BootDelay: time.Minute, CreateFailIDs: []string{"bad"}, BootFailIDs: []string{"dud"}, Now: c.Now})

	err := f.Create(ctx, []provider.Instance{inst("a"), inst("bad"), inst("dud")})
	var ie *provider.InstanceError
	if !errors.As(err, &ie) || ie.ID != "bad" || !errors.Is(err, ErrInjected) {
		t.Fatalf("Create = %v, want injected failure for bad", err)
	}
	if diff := cmp.Diff(map[string]provider.State{"a": provider.StateStarting, "dud": provider.StateStarting}, states(t, f)); diff != "" {
		t.Errorf("before boot delay (-want +got):\n%s", diff)
	}
	c.now = c.now.Add(time.Minute)
	if diff := cmp.Diff(map[string]provider.State{"a": provider.StateRunning, "dud": provider.StateFailed}, states(t, f)); diff != "" {
		t.Errorf("after boot delay (-want +got):\n%s", diff)
	}
	f.Preempt("a")
	p, _ := f.Preempted(ctx)
	if len(p) != 1 || p[0].ID != "a" || states(t, f)["a"] != provider.StateStopped {
		t.Errorf("after Preempt(a): Preempted = %v, states %v", p, states(t, f))
	}
	want := Calls{Create: 1, List: 3, Created: 2}
	if diff := cmp.Diff(want, f.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestFailureRateIsSeeded(t *testing.T) {
	run := func() []string {
		f := New(Config{CreateFailRate: 0.5, Seed: 42})
		var ins []provider.Instance
		for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
			ins = append(ins, inst(id))
		}
		f.Create(context.Background(), ins)
		got, _ := f.List(context.Background())
		var ids []string
		for _, s := range got {
			ids = append(ids, s.ID)
		}
		return ids
	}
	first, second := run(), run()
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("same seed, different outcome (-first +second):\n%s", diff)
	}
	if len(first) == 0 || len(first) == 10 {
		t.Errorf("rate 0.5 over 10 instances created %d", len(first))
	}
}

func TestCapacity(t *testing.T) {
	ctx := context.Background()
	f := New(Config{Capacity: 2})
	err := f.Create(ctx, []provider.Instance{inst("a"), inst("b"), inst("c")})
	var ce *provider.CapacityError
	if !errors.As(err, &ce) || ce.Resource != "instances" || ce.Free != 0 || ce.Total != 2 {
		t.Fatalf("Create = %v, want a CapacityError for the third", err)
	}
	if n, _ := f.Capacity(ctx, inst("x").Size); n != 0 {
		t.Errorf("Capacity = %d, want 0", n)
	}
	f.SetCapacity(5)
	if n, _ := f.Capacity(ctx, inst("x").Size); n != 3 {
		t.Errorf("Capacity after SetCapacity(5) = %d, want 3", n)
	}
	f.Delete(ctx, []string{"a"})
	if n, _ := f.Capacity(ctx, inst("x").Size); n != 4 {
		t.Errorf("Capacity after Delete = %d, want 4", n)
	}
}
