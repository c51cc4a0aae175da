package local

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/provider"
)

// Evict gives preemptible instances a notice EvictionLead ahead, kept
// across provider values (a restart); a Dedicated (non-preemptible)
// instance is refused and never reported.
func TestEvict(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	l := newLocal(t, Config{Dir: dir, EvictionLead: 20 * time.Second, Now: func() time.Time { return now }})
	low, ded := inst("low", 1, 64, 0), inst("ded", 1, 64, 0)
	low.Preemptible = true
	if err := l.Create(t.Context(), []provider.Instance{low, ded}); err != nil {
		t.Fatal(err)
	}
	err := l.Evict(t.Context(), []string{"low", "ded", "unknown"})
	if !errors.Is(err, provider.ErrNotPreemptible) {
		t.Errorf("Evict error = %v, want ErrNotPreemptible for ded", err)
	}
	now = now.Add(5 * time.Second)
	if err := l.Evict(t.Context(), []string{"low"}); err != nil { // again: keeps its time
		t.Fatal(err)
	}
	l2 := newLocal(t, Config{Dir: dir, Now: func() time.Time { return now }})
	got, err := l2.Preempted(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []provider.Preemption{{ID: "low", At: now.Add(15 * time.Second)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Preempted (-want +got):\n%s", diff)
	}
}

// With a mean time between evictions, each poll draws an eviction with the
// probability that the time since the last poll gives; only preemptible
// instances are chosen.
func TestRandomEviction(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	draw := 0.99
	l := newLocal(t, Config{MeanTimeBetweenEvictions: time.Minute, Now: func() time.Time { return now },
		Rand: func() float64 { return draw }})
	low, ded := inst("low", 1, 64, 0), inst("ded", 1, 64, 0)
	low.Preemptible = true
	if err := l.Create(t.Context(), []provider.Instance{low, ded}); err != nil {
		t.Fatal(err)
	}
	poll := func() []provider.Preemption {
		t.Helper()
		got, err := l.Preempted(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	poll() // the first poll only starts the clock
	now = now.Add(time.Second)
	if got := poll(); len(got) != 0 { // 1-e^(-1/60) ≈ 0.016 < 0.99
		t.Fatalf("evicted %v on an unlikely draw", got)
	}
	draw = 0.01
	now = now.Add(time.Second)
	want := []provider.Preemption{{ID: "low", At: now.Add(DefaultEvictionLead)}}
	if diff := cmp.Diff(want, poll()); diff != "" {
		t.Errorf("Preempted (-want +got):\n%s", diff)
	}
	now = now.Add(time.Hour) // certain, but nothing left to evict
	if diff := cmp.Diff(want, poll()); diff != "" {
		t.Errorf("Preempted after the only preemptible instance (-want +got):\n%s", diff)
	}
}
