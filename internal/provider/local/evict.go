package local

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"kumo/internal/provider"
)

// Defaults for the eviction settings of [Config].
const DefaultEvictionLead = 30 * time.Second

var (
	_ provider.PreemptionNotifier = (*Local)(nil)
	_ provider.Evicter            = (*Local)(nil)
)

// Evict implements [provider.Evicter]: each preemptible instance is to be
// taken away EvictionLead from now. The record keeps the notice, so it
// survives a restart of the control plane; an instance already noticed
// keeps its time. Instances not created Preemptible are refused.
func (l *Local) Evict(ctx context.Context, ids []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, err := l.load()
	if err != nil {
		return err
	}
	var refused []string
	var errs []error
	at := l.now().Add(l.cfg.EvictionLead)
	for _, id := range ids {
		r, ok := recs[id]
		switch {
		case !ok:
		case !r.Instance.Preemptible:
			refused = append(refused, id)
		case r.EvictAt.IsZero():
			r.EvictAt = at
			if err := writeRecord(l.dir(id), r); err != nil {
				errs = append(errs, fmt.Errorf("local provider: evict %s: %w", id, err))
			}
		}
	}
	if len(refused) > 0 {
		errs = append(errs, fmt.Errorf("local provider: %s: %w", strings.Join(refused, ", "), provider.ErrNotPreemptible))
	}
	return errors.Join(errs...)
}

// Preempted implements [provider.PreemptionNotifier]: the instances that
// were evicted, with when they are taken. When Config.MeanTimeBetweenEvictions
// is set, each call first draws whether an eviction happened since the
// previous call (a Poisson process of that mean over the whole provider)
// and, if so, evicts one running preemptible instance at random.
func (l *Local) Preempted(ctx context.Context) ([]provider.Preemption, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, err := l.load()
	if err != nil {
		return nil, err
	}
	now := l.now()
	if mtbe := l.cfg.MeanTimeBetweenEvictions; mtbe > 0 {
		since := now.Sub(l.lastDraw)
		if l.lastDraw.IsZero() || since < 0 {
			since = 0
		}
		l.lastDraw = now
		if since > 0 && l.cfg.Rand() < 1-math.Exp(-float64(since)/float64(mtbe)) {
			var cands []string
			for id, r := range recs {
				if r.Instance.Preemptible && r.EvictAt.IsZero() && alive(r.PID, r.StartTime) {
					cands = append(cands, id)
				}
			}
			slices.Sort(cands)
			if len(cands) > 0 {
				id := cands[int(l.cfg.Rand()*float64(len(cands)))%len(cands)]
				recs[id].EvictAt = now.Add(l.cfg.EvictionLead)
				if err := writeRecord(l.dir(id), recs[id]); err != nil {
					return nil, fmt.Errorf("local provider: evict %s: %w", id, err)
				}
			}
		}
	}
	var out []provider.Preemption
	for id, r := range recs {
		if !r.EvictAt.IsZero() {
			out = append(out, provider.Preemption{ID: id, At: r.EvictAt})
		}
	}
	slices.SortFunc(out, func(a, b provider.Preemption) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (l *Local) now() time.Time { return l.cfg.Now().UTC() }
