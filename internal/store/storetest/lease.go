package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var leaseTests = []test{
	{"GetNeverTaken", testLeaseGetNeverTaken},
	{"AcquireRenewKeepsTerm", testLeaseAcquireRenew},
	{"HeldRefused", testLeaseHeldRefused},
	{"TakeoverAfterExpiry", testLeaseTakeoverAfterExpiry},
	{"ReleaseHandsOver", testLeaseReleaseHandsOver},
	{"Fence", testLeaseFence},
	{"FenceAmongConcurrentWrites", testLeaseFenceConcurrent},
}

// leaseTTL is long enough that a lease taken with it does not expire
// during a test.
const leaseTTL = time.Hour

// mustAcquire takes or renews the lease or fails the test.
func mustAcquire(t *testing.T, s store.Store, name, holder string, ttl time.Duration) model.Lease {
	t.Helper()
	l, err := s.LeaseAcquire(t.Context(), name, holder, holder+".example:8443", ttl)
	if err != nil {
		t.Fatalf("LeaseAcquire(%s, %s): %v", name, holder, err)
	}
	return l
}

// wantLease fails the test unless the stored lease equals want.
func wantLease(t *testing.T, s store.Store, want model.Lease) {
	t.Helper()
	got, err := s.LeaseGet(t.Context(), want.Name)
	if err != nil {
		t.Fatalf("LeaseGet(%s): %v", want.Name, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LeaseGet(%s) (-want +got):\n%s", want.Name, diff)
	}
}

// takeOver takes the lease for holder once the current one, taken with a
// tiny TTL, has expired (on the store's clock, which the test cannot
// move: it polls, every refusal being ErrLeaseHeld).
func takeOver(t *testing.T, s store.Store, name, holder string) model.Lease {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := s.LeaseAcquire(t.Context(), name, holder, holder+".example:8443", leaseTTL)
		if err == nil {
			return l
		}
		if !errors.Is(err, store.ErrLeaseHeld) {
			t.Fatalf("LeaseAcquire(%s, %s) error = %v, want nil or ErrLeaseHeld", name, holder, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("LeaseAcquire(%s, %s): still held by %s after 10s", name, holder, l.Holder)
		}
		time.Sleep(time.Millisecond)
	}
}

func testLeaseGetNeverTaken(t *testing.T, s store.Store) {
	if _, err := s.LeaseGet(t.Context(), "controller"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LeaseGet of a lease never taken: error = %v, want ErrNotFound", err)
	}
	// Releasing it is not an error either.
	if err := s.LeaseRelease(t.Context(), "controller", "a"); err != nil {
		t.Errorf("LeaseRelease of a lease never taken: %v", err)
	}
}

func testLeaseAcquireRenew(t *testing.T, s store.Store) {
	first := mustAcquire(t, s, "controller", "a", leaseTTL)
	if first.Name != "controller" || first.Holder != "a" || first.Address != "a.example:8443" || first.Term != 1 {
		t.Errorf("first LeaseAcquire = %+v, want controller held by a at a.example:8443 in term 1", first)
	}
	if !first.AcquiredAt.Equal(first.RenewedAt) || first.ExpiresAt.Sub(first.RenewedAt) != leaseTTL {
		t.Errorf("first LeaseAcquire times: acquired %v renewed %v expires %v, want acquired = renewed = expires - %v",
			first.AcquiredAt, first.RenewedAt, first.ExpiresAt, leaseTTL)
	}
	wantLease(t, s, first)

	renewed, err := s.LeaseAcquire(t.Context(), "controller", "a", "a2.example:8443", 2*leaseTTL)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if renewed.Term != 1 || renewed.Holder != "a" || renewed.Address != "a2.example:8443" {
		t.Errorf("renewed = %+v, want term 1, holder a, the new address", renewed)
	}
	if !renewed.AcquiredAt.Equal(first.AcquiredAt) {
		t.Errorf("renewal moved AcquiredAt from %v to %v", first.AcquiredAt, renewed.AcquiredAt)
	}
	if renewed.RenewedAt.Before(first.RenewedAt) || !renewed.ExpiresAt.After(first.ExpiresAt) {
		t.Errorf("renewal: renewed %v -> %v, expires %v -> %v; want both later", first.RenewedAt, renewed.RenewedAt, first.ExpiresAt, renewed.ExpiresAt)
	}
	wantLease(t, s, renewed)

	// Another lease name is another lease.
	if other := mustAcquire(t, s, "other", "b", leaseTTL); other.Term != 1 || other.Holder != "b" {
		t.Errorf("LeaseAcquire(other, b) = %+v, want term 1 held by b", other)
	}
}

func testLeaseHeldRefused(t *testing.T, s store.Store) {
	held := mustAcquire(t, s, "controller", "a", leaseTTL)
	got, err := s.LeaseAcquire(t.Context(), "controller", "b", "b.example:8443", leaseTTL)
	if !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("LeaseAcquire by b while a holds it: error = %v, want ErrLeaseHeld", err)
	}
	if diff := cmp.Diff(held, got); diff != "" {
		t.Errorf("refused LeaseAcquire returned (-a's lease +got):\n%s", diff)
	}
	wantLease(t, s, held)
}

func testLeaseTakeoverAfterExpiry(t *testing.T, s store.Store) {
	a := mustAcquire(t, s, "controller", "a", time.Millisecond)
	b := takeOver(t, s, "controller", "b")
	if b.Holder != "b" || b.Term != a.Term+1 {
		t.Errorf("takeover = %+v, want held by b in term %d", b, a.Term+1)
	}
	if !b.AcquiredAt.After(a.AcquiredAt) {
		t.Errorf("takeover AcquiredAt %v, want after a's %v", b.AcquiredAt, a.AcquiredAt)
	}
	wantLease(t, s, b)
	// a, back, is refused: b holds it now.
	if _, err := s.LeaseAcquire(t.Context(), "controller", "a", "a.example:8443", leaseTTL); !errors.Is(err, store.ErrLeaseHeld) {
		t.Errorf("LeaseAcquire by the former holder: error = %v, want ErrLeaseHeld", err)
	}
}

func testLeaseReleaseHandsOver(t *testing.T, s store.Store) {
	a := mustAcquire(t, s, "controller", "a", leaseTTL)
	// Only the holder can release it.
	if err := s.LeaseRelease(t.Context(), "controller", "b"); err != nil {
		t.Fatalf("LeaseRelease by a non-holder: %v", err)
	}
	wantLease(t, s, a)

	if err := s.LeaseRelease(t.Context(), "controller", "a"); err != nil {
		t.Fatalf("LeaseRelease: %v", err)
	}
	released, err := s.LeaseGet(t.Context(), "controller")
	if err != nil {
		t.Fatalf("LeaseGet after release: %v", err)
	}
	if released.Holder != "" || released.Term != a.Term || !released.ExpiresAt.Before(a.ExpiresAt) {
		t.Errorf("after release: %+v, want no holder, term %d, expiry moved to now", released, a.Term)
	}
	// Another takes it at once, in the next term.
	b, err := s.LeaseAcquire(t.Context(), "controller", "b", "b.example:8443", leaseTTL)
	if err != nil {
		t.Fatalf("LeaseAcquire right after release: %v", err)
	}
	if b.Holder != "b" || b.Term != a.Term+1 {
		t.Errorf("after release, LeaseAcquire = %+v, want held by b in term %d", b, a.Term+1)
	}
}

func testLeaseFence(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	quota := func(limit int64) model.Quota {
		return model.Quota{WorkspaceID: w.ID, Family: "standardDSv2Family", Limit: limit}
	}
	wantQuota := func(want int64) {
		t.Helper()
		qs, err := s.QuotaList(t.Context(), w.ID)
		if err != nil {
			t.Fatalf("QuotaList: %v", err)
		}
		if len(qs) != 1 || qs[0].Limit != want {
			t.Errorf("quotas = %+v, want one with limit %d", qs, want)
		}
	}

	// A fence on a lease never taken refuses.
	never := store.WithFence(t.Context(), "controller", 1)
	if err := s.QuotaSet(never, quota(1)); !errors.Is(err, store.ErrFenced) {
		t.Errorf("write fenced by a lease never taken: error = %v, want ErrFenced", err)
	}

	a := mustAcquire(t, s, "controller", "a", time.Millisecond)
	fenceA := store.WithFence(t.Context(), "controller", a.Term)
	if err := s.QuotaSet(fenceA, quota(10)); err != nil {
		t.Fatalf("write under the current fence: %v", err)
	}
	wantQuota(10)

	// The lease has expired but nobody took it: a's term still holds.
	for time.Now().Before(a.ExpiresAt.Add(time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
	if err := s.QuotaSet(fenceA, quota(11)); err != nil {
		t.Fatalf("write under an expired but not taken over fence: %v", err)
	}
	wantQuota(11)

	b := takeOver(t, s, "controller", "b")
	fenceB := store.WithFence(t.Context(), "controller", b.Term)

	// Single statements and transactions alike are refused under a's
	// fence, and change nothing.
	if err := s.QuotaSet(fenceA, quota(20)); !errors.Is(err, store.ErrFenced) {
		t.Errorf("QuotaSet under the old fence: error = %v, want ErrFenced", err)
	}
	wantQuota(11)
	c := newCompute(w, "fenced")
	if err := s.ComputeCreate(fenceA, c, newOperation("op-fenced", c, model.OpCreate)); !errors.Is(err, store.ErrFenced) {
		t.Errorf("ComputeCreate under the old fence: error = %v, want ErrFenced", err)
	}
	if _, err := s.ComputeGet(t.Context(), c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("compute written under the old fence: ComputeGet error = %v, want ErrNotFound", err)
	}
	wantNoOperation(t, s, "op-fenced")

	// The current fence writes, and so do writes without one.
	if err := s.QuotaSet(fenceB, quota(30)); err != nil {
		t.Fatalf("write under the new fence: %v", err)
	}
	wantQuota(30)
	mustCreateCompute(t, s, c, newOperation("op-fenced", c, model.OpCreate))
	if err := s.QuotaSet(t.Context(), quota(40)); err != nil {
		t.Fatalf("unfenced write: %v", err)
	}
	wantQuota(40)

	// A fence whose lease was released refuses too.
	if err := s.LeaseRelease(t.Context(), "controller", "b"); err != nil {
		t.Fatalf("LeaseRelease: %v", err)
	}
	if err := s.QuotaSet(fenceB, quota(50)); !errors.Is(err, store.ErrFenced) {
		t.Errorf("write fenced by a released lease: error = %v, want ErrFenced", err)
	}
	wantQuota(40)
}

// testLeaseFenceConcurrent runs writes under a stale fence among many
// unfenced ones at once (sharing transactions where the backend groups
// them): each stale write fails alone and every other write is kept.
func testLeaseFenceConcurrent(t *testing.T, s store.Store) {
	w := setupWorkspace(t, s, "ws")
	a := mustAcquire(t, s, "controller", "a", time.Millisecond)
	takeOver(t, s, "controller", "b")
	stale := store.WithFence(t.Context(), "controller", a.Term)

	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		ctx := t.Context()
		if i%4 == 0 {
			ctx = stale
		}
		wg.Go(func() {
			errs[i] = s.QuotaSet(ctx, model.Quota{WorkspaceID: w.ID, Family: family(i), Limit: int64(i + 1)})
		})
	}
	wg.Wait()
	qs, err := s.QuotaList(t.Context(), w.ID)
	if err != nil {
		t.Fatalf("QuotaList: %v", err)
	}
	stored := map[string]bool{}
	for _, q := range qs {
		stored[q.Family] = true
	}
	for i, err := range errs {
		fenced := i%4 == 0
		switch {
		case fenced && !errors.Is(err, store.ErrFenced):
			t.Errorf("write %d under a stale fence: error = %v, want ErrFenced", i, err)
		case !fenced && err != nil:
			t.Errorf("unfenced write %d: %v", i, err)
		}
		if stored[family(i)] == fenced {
			t.Errorf("write %d (fenced %v): stored = %v", i, fenced, stored[family(i)])
		}
	}
}

// family returns a distinct VM family name for i.
func family(i int) string {
	return "standardF" + string(rune('A'+i%26)) + string(rune('a'+i/26)) + "Family"
}

// BenchFence measures what a fence costs a write: the same writes with
// and without a fence (store.WithFence) of the current term, both a
// single-statement write (QuotaSet) and a transaction (ComputeCreate, a
// compute and its operation).
func BenchFence(b *testing.B, s store.Store) {
	ctx := b.Context()
	w := newWorkspace("sub1", "rg", "ws")
	if err := s.WorkspaceCreate(ctx, w); err != nil {
		b.Fatal(err)
	}
	l, err := s.LeaseAcquire(ctx, "controller", "a", "", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, fenced := range []bool{false, true} {
		wctx, name := ctx, "unfenced"
		if fenced {
			wctx, name = store.WithFence(ctx, "controller", l.Term), "fenced"
		}
		b.Run("statement/"+name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if err := s.QuotaSet(wctx, model.Quota{WorkspaceID: w.ID, Family: "standardDSv2Family", Limit: int64(i)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("transaction/"+name, func(b *testing.B) {
			for b.Loop() {
				n++
				c := newCompute(w, fmt.Sprintf("c%d", n))
				if err := s.ComputeCreate(wctx, c, newOperation("op-"+c.Name, c, model.OpCreate)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
