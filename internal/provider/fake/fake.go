// Package fake is an in-memory [provider.Provider] for tests and
// benchmarks. Instances are records only: nothing runs. Knobs set a boot
// delay, inject failures (per ID, or at a rate drawn from a seeded random
// source, so runs repeat) and bound capacity. It starts no goroutines; boot
// progress is computed from the clock when List is called.
package fake

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"kumo/internal/provider"
)

var (
	_ provider.Provider           = (*Fake)(nil)
	_ provider.CapacityReporter   = (*Fake)(nil)
	_ provider.PreemptionNotifier = (*Fake)(nil)
)

// ErrInjected is wrapped by every failure the fake injects.
var ErrInjected = errors.New("injected failure")

// Config holds the fake's knobs. The zero Config creates instantly, never
// fails and has unlimited capacity.
type Config struct {
	BootDelay time.Duration // time from Create until an instance is Running; 0 means at once
	Capacity  int           // most instances held at once; 0 means unlimited

	CreateFailIDs  []string // Create returns an error for these IDs (and records nothing)
	CreateFailRate float64  // probability in [0,1] that Create fails an instance
	BootFailIDs    []string // these IDs are created but end Failed instead of Running
	BootFailRate   float64  // probability in [0,1] that an instance ends Failed
	Seed           uint64   // seeds the random source for the rates

	Now func() time.Time // clock; nil means time.Now
}

// Fake is an in-memory provider. Its methods are safe for concurrent use.
type Fake struct {
	cfg Config

	mu        sync.Mutex
	rnd       *rand.Rand
	instances map[string]*record
	calls     Calls
}

type record struct {
	status    provider.InstanceStatus
	instance  provider.Instance
	bootFail  bool
	preempted time.Time // zero if not preempted
}

// Calls counts the calls made to a Fake.
type Calls struct {
	Create, Delete, List int // calls of each method
	Created, Deleted     int // instances created and deleted
}

// New returns a Fake with the given knobs.
func New(cfg Config) *Fake {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Fake{cfg: cfg, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), instances: map[string]*record{}}
}

// Factory builds a Fake from settings: "boot_delay" (a Go duration),
// "capacity", "create_fail_rate", "boot_fail_rate" and "seed".
func Factory(p provider.Params) (provider.Provider, error) {
	var cfg Config
	for k, v := range p.Settings {
		var err error
		switch k {
		case "boot_delay":
			cfg.BootDelay, err = time.ParseDuration(v)
		case "capacity":
			cfg.Capacity, err = strconv.Atoi(v)
		case "create_fail_rate":
			cfg.CreateFailRate, err = strconv.ParseFloat(v, 64)
		case "boot_fail_rate":
			cfg.BootFailRate, err = strconv.ParseFloat(v, 64)
		case "seed":
			cfg.Seed, err = strconv.ParseUint(v, 10, 64)
		default:
			err = errors.New("unknown setting")
		}
		if err != nil {
			return nil, fmt.Errorf("fake provider setting %s: %w", k, err)
		}
	}
	return New(cfg), nil
}

// Create records the instances. It honours ctx only before it starts.
func (f *Fake) Create(ctx context.Context, instances []provider.Instance) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Create++
	now := f.cfg.Now()
	var errs []error
	for _, in := range instances {
		if _, ok := f.instances[in.ID]; ok {
			continue
		}
		var err error
		switch {
		case !provider.ValidID(in.ID):
			err = errors.New("invalid instance ID")
		case f.cfg.Capacity > 0 && len(f.instances) >= f.cfg.Capacity:
			n := int64(len(f.instances))
			err = &provider.CapacityError{Size: in.Size, Resource: "instances", Need: 1, Free: int64(f.cfg.Capacity) - n, Total: int64(f.cfg.Capacity)}
		case slices.Contains(f.cfg.CreateFailIDs, in.ID) || f.draw(f.cfg.CreateFailRate):
			err = ErrInjected
		}
		if err != nil {
			errs = append(errs, &provider.InstanceError{ID: in.ID, Err: err})
			continue
		}
		f.calls.Created++
		f.instances[in.ID] = &record{
			instance: in,
			bootFail: slices.Contains(f.cfg.BootFailIDs, in.ID) || f.draw(f.cfg.BootFailRate),
			status: provider.InstanceStatus{
				ID: in.ID, Compute: in.Compute, Size: in.Size, State: provider.StateStarting,
				Address: "fake-" + in.ID, Created: now,
			},
		}
	}
	return errors.Join(errs...)
}

func (f *Fake) draw(rate float64) bool { return rate > 0 && f.rnd.Float64() < rate }

// Delete forgets the instances; unknown IDs are ignored.
func (f *Fake) Delete(ctx context.Context, ids []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Delete++
	for _, id := range ids {
		if _, ok := f.instances[id]; ok {
			delete(f.instances, id)
			f.calls.Deleted++
		}
	}
	return nil
}

// List returns the instances, sorted by ID, with states as of now.
func (f *Fake) List(ctx context.Context) ([]provider.InstanceStatus, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.List++
	now := f.cfg.Now()
	out := make([]provider.InstanceStatus, 0, len(f.instances))
	for _, r := range f.instances {
		st := r.status
		switch {
		case !r.preempted.IsZero():
			st.State, st.Reason = provider.StateStopped, "preempted"
		case now.Sub(st.Created) < f.cfg.BootDelay:
			st.State = provider.StateStarting
		case r.bootFail:
			st.State, st.Reason = provider.StateFailed, ErrInjected.Error()
		default:
			st.State = provider.StateRunning
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b provider.InstanceStatus) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Capacity returns how many more instances fit; with no capacity knob, a
// large number.
func (f *Fake) Capacity(ctx context.Context, _ provider.Size) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg.Capacity == 0 {
		return 1 << 30, nil
	}
	return max(f.cfg.Capacity-len(f.instances), 0), nil
}

// Preempt marks an instance as taken away, as a spot VM would be: it is
// reported by Preempted and listed as Stopped until deleted. Unknown IDs are
// ignored.
func (f *Fake) Preempt(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.instances[id]; ok && r.preempted.IsZero() {
		r.preempted = f.cfg.Now()
	}
}

// Preempted reports the instances marked by Preempt.
func (f *Fake) Preempted(ctx context.Context) ([]provider.Preemption, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []provider.Preemption
	for id, r := range f.instances {
		if !r.preempted.IsZero() {
			out = append(out, provider.Preemption{ID: id, At: r.preempted})
		}
	}
	slices.SortFunc(out, func(a, b provider.Preemption) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// SetCapacity changes the capacity knob; 0 means unlimited.
func (f *Fake) SetCapacity(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg.Capacity = n
}

// Instance returns what Create was given for id, so a test can check what a
// node would have been told; ok is false for unknown IDs.
func (f *Fake) Instance(id string) (provider.Instance, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.instances[id]
	if !ok {
		return provider.Instance{}, false
	}
	return r.instance, true
}

// Calls returns the call counts so far.
func (f *Fake) Calls() Calls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
