package leader

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/postgres"
	"kumo/internal/store/postgres/pgtest"
	"kumo/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend opens two stores on one fresh database, as two replicas of a
// control plane would.
type backend struct {
	name string
	open func(t testing.TB) (store.Store, store.Store)
}

// backends are SQLite (two Stores on one file) and PostgreSQL (two pools
// on one database; skipped without KUMO_TEST_POSTGRES_URL unless CI).
var backends = []backend{
	{"sqlite", func(t testing.TB) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "kumo.db")
		return openSQLite(t, path), openSQLite(t, path)
	}},
	{"postgres", func(t testing.TB) (store.Store, store.Store) {
		url := pgtest.NewDatabase(t)
		return openPostgres(t, url), openPostgres(t, url)
	}},
}

func openSQLite(t testing.TB, path string) store.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t testing.TB, url string) store.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// quietLog discards the electors' logs.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// replica is one running Elector and what its lead functions saw.
type replica struct {
	e       *Elector
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run returned

	started chan leadRun // each lead, when it starts
	ended   chan leadRun // each lead, when its context was cancelled
}

// leadRun is one call of a lead function.
type leadRun struct {
	lease model.Lease     // the lease it leads under
	ctx   context.Context // its context
	at    time.Time       // when it started or ended
	cause error           // why its context ended (ended only)
}

// startReplica runs an Elector for holder until the test ends or kill.
// With die set, stopping it does not release the lease (as kill -9).
func startReplica(t testing.TB, st Store, holder string, cfg Config, die bool) *replica {
	t.Helper()
	cfg.Store, cfg.Holder, cfg.Address = st, holder, holder+".example:8443"
	if cfg.Log == nil {
		cfg.Log = quietLog
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.noRelease = die
	r := &replica{e: e, stopped: make(chan struct{}), started: make(chan leadRun, 16), ended: make(chan leadRun, 16)}
	var lease model.Lease
	e.leadStarted = func(l model.Lease) { lease = l }
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.stopped)
		if err := e.Run(ctx, func(ctx context.Context) {
			r.started <- leadRun{lease: lease, ctx: ctx, at: time.Now()}
			<-ctx.Done()
			r.ended <- leadRun{lease: lease, ctx: ctx, at: time.Now(), cause: context.Cause(ctx)}
		}); err != nil {
			t.Errorf("Run(%s): %v", holder, err)
		}
	}()
	t.Cleanup(r.stop)
	return r
}

// stop ends the replica's Run and waits for it.
func (r *replica) stop() {
	r.cancel()
	<-r.stopped
}

// wait returns the next value of ch, failing the test after a generous
// deadline (the machine may be loaded; the bound is checked separately).
func wait(t testing.TB, ch <-chan leadRun, what string) leadRun {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not within 30s", what)
		return leadRun{}
	}
}

// testConfig has short times, so that a failover takes about a second.
var testConfig = Config{TTL: time.Second, RenewEvery: 250 * time.Millisecond}

// TestFailover: the first replica leads; it dies without releasing; the
// second takes the lease in the next term once it has expired, within
// TTL + RenewEvery; the first's lead context was cancelled, and a write
// under its fence is refused while the new leader's succeeds.
func TestFailover(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st1, st2 := b.open(t)
			r1 := startReplica(t, st1, "r1", testConfig, true)
			lead1 := wait(t, r1.started, "r1 leads")
			if lead1.lease.Holder != "r1" || lead1.lease.Term != 1 {
				t.Fatalf("r1 leads under %+v, want its own lease in term 1", lead1.lease)
			}
			if _, leads := r1.e.Current(); !leads {
				t.Errorf("r1.Current() says it does not lead")
			}
			w := model.Workspace{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws", Subscription: "s", ResourceGroup: "rg", Name: "ws", CreatedAt: time.Unix(1, 0).UTC(), ModifiedAt: time.Unix(1, 0).UTC()}
			if err := st1.WorkspaceCreate(lead1.ctx, w); err != nil {
				t.Fatalf("write under r1's fence while it leads: %v", err)
			}

			r2 := startReplica(t, st2, "r2", testConfig, false)
			// r2 follows: it sees r1's lease.
			for deadline := time.Now().Add(30 * time.Second); ; {
				l, leads := r2.e.Current()
				if leads {
					t.Fatalf("r2 leads while r1 holds the lease: %+v", l)
				}
				if l.Holder == "r1" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("r2 never saw r1's lease; Current = %+v", l)
				}
				time.Sleep(10 * time.Millisecond)
			}

			last, _ := r1.e.Current()
			r1.stop() // dies: no release
			died := time.Now()
			end1 := wait(t, r1.ended, "r1's lead context cancelled")
			if end1.lease.Term != 1 {
				t.Errorf("ended lead's term = %d, want 1", end1.lease.Term)
			}

			lead2 := wait(t, r2.started, "r2 takes over")
			took := lead2.at.Sub(died)
			t.Logf("%s: failover in %v", b.name, took)
			if lead2.lease.Holder != "r2" || lead2.lease.Term != 2 {
				t.Errorf("r2 leads under %+v, want its own lease in term 2", lead2.lease)
			}
			// On the store's clock: no overlap with r1's last lease.
			if lead2.lease.AcquiredAt.Before(last.ExpiresAt) {
				t.Errorf("r2 took the lease at %v, before r1's expired at %v", lead2.lease.AcquiredAt, last.ExpiresAt)
			}
			// The bound, with slack for a loaded machine.
			if bound := testConfig.TTL + testConfig.RenewEvery + 3*time.Second; took > bound {
				t.Errorf("failover took %v, want at most TTL + RenewEvery (+ slack) = %v", took, bound)
			}

			// r1's fence no longer writes; r2's does.
			old := context.WithoutCancel(lead1.ctx)
			w2 := w
			w2.Description = "written by the former leader"
			if err := st1.WorkspaceUpdate(old, w2); !errors.Is(err, store.ErrFenced) {
				t.Errorf("write under r1's fence after takeover: error = %v, want ErrFenced", err)
			}
			if got, err := st2.WorkspaceGet(t.Context(), w.ID); err != nil || got.Description != "" {
				t.Errorf("after the fenced write: workspace %+v, %v; want it unchanged", got, err)
			}
			w2.Description = "written by the new leader"
			if err := st2.WorkspaceUpdate(lead2.ctx, w2); err != nil {
				t.Errorf("write under r2's fence: %v", err)
			}

			// r2 stops cleanly: it releases the lease.
			r2.stop()
			wait(t, r2.ended, "r2's lead context cancelled")
			l, err := st1.LeaseGet(t.Context(), DefaultName)
			if err != nil || l.Holder != "" || l.Term != 2 {
				t.Errorf("after r2 stopped: lease %+v, %v; want released in term 2", l, err)
			}
		})
	}
}

// TestReleaseHandsOverAtOnce: a leader that stops cleanly releases the
// lease, and a follower takes it before the lease would have expired.
func TestReleaseHandsOverAtOnce(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st1, st2 := b.open(t)
			cfg := Config{TTL: 30 * time.Second, RenewEvery: 100 * time.Millisecond}
			r1 := startReplica(t, st1, "r1", cfg, false)
			wait(t, r1.started, "r1 leads")
			r2 := startReplica(t, st2, "r2", cfg, false)
			last, _ := r1.e.Current()
			r1.stop()
			lead2 := wait(t, r2.started, "r2 takes over")
			if lead2.lease.Term != 2 {
				t.Errorf("r2 leads in term %d, want 2", lead2.lease.Term)
			}
			if !lead2.lease.AcquiredAt.Before(last.ExpiresAt) {
				t.Errorf("r2 took the lease at %v, not before r1's would have expired (%v): the release did not hand it over",
					lead2.lease.AcquiredAt, last.ExpiresAt)
			}
		})
	}
}

// pausable is a Store whose lease calls hang while paused, as those of a
// process that is stopped (SIGSTOP) or cut off from its database.
type pausable struct {
	Store
	mu     sync.Mutex
	paused chan struct{} // closed to resume; nil when running
}

func (p *pausable) pause() {
	p.mu.Lock()
	p.paused = make(chan struct{})
	p.mu.Unlock()
}

// resume lets lease calls through again; it does nothing unless paused.
func (p *pausable) resume() {
	p.mu.Lock()
	if p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
	p.mu.Unlock()
}

func (p *pausable) LeaseAcquire(ctx context.Context, name, holder, address string, ttl time.Duration) (model.Lease, error) {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return p.Store.LeaseAcquire(ctx, name, holder, address, ttl)
}

// TestLapseStopsBeforeTakeover: a leader whose renewals hang stops
// leading (its lead context is cancelled, cause errLapsed) before its
// lease expires, so before the follower starts; when its renewal finally
// goes through, it learns it lost and does not lead again.
func TestLapseStopsBeforeTakeover(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st1, st2 := b.open(t)
			p := &pausable{Store: st1}
			r1 := startReplica(t, p, "r1", testConfig, false)
			wait(t, r1.started, "r1 leads")
			r2 := startReplica(t, st2, "r2", testConfig, false)

			p.pause()
			t.Cleanup(p.resume) // runs before r1's stop
			end1 := wait(t, r1.ended, "r1 stops leading")
			if !errors.Is(end1.cause, errLapsed) {
				t.Errorf("r1's lead ended with %v, want errLapsed", end1.cause)
			}
			lead2 := wait(t, r2.started, "r2 takes over")
			if !end1.at.Before(lead2.at) {
				t.Errorf("r1 stopped at %v, not before r2 started at %v", end1.at, lead2.at)
			}
			p.resume()
			// r1, resumed, follows: r2 keeps the lease.
			for deadline := time.Now().Add(30 * time.Second); ; {
				l, leads := r1.e.Current()
				if leads {
					t.Fatalf("resumed r1 leads again: %+v", l)
				}
				if l.Holder == "r2" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("resumed r1 never saw r2's lease; Current = %+v", l)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, leads := r2.e.Current(); !leads {
				t.Errorf("r2 no longer leads after r1 resumed")
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	st, _ := backends[0].open(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{Holder: "r1"}},
		{"no holder", Config{Store: st}},
		{"renew too slow", Config{Store: st, Holder: "r1", TTL: time.Second, RenewEvery: time.Second}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("New(%s) succeeded, want an error", tt.name)
		}
	}
	e, err := New(Config{Store: st, Holder: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.cfg, (Config{Store: st, Holder: "r1", Name: DefaultName, TTL: 3 * time.Second, RenewEvery: time.Second, Margin: 500 * time.Millisecond, Log: slog.Default()}); got != want {
		t.Errorf("defaults: got %+v, want %+v", got, want)
	}
}
