package jobuser

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestClaim: two owners sharing a range never get the same uid; an owner
// takes its own unused claim again; the claim of an owner whose directory
// is gone is taken over; Release leaves another owner's claim alone.
func TestClaim(t *testing.T) {
	if !Enabled() {
		t.Skip("claims live in a root-owned directory; run as root")
	}
	r := Range{First: 2000000000, Last: 2000000002} // a range no control plane uses
	none := func(int) bool { return false }
	a, b := t.TempDir(), t.TempDir()
	var claimed []int
	t.Cleanup(func() {
		for _, uid := range claimed {
			Release(uid, a)
			Release(uid, b)
		}
	})
	claim := func(owner string, used func(int) bool) int {
		t.Helper()
		uid, err := Claim(r, owner, used)
		if err != nil {
			t.Fatalf("Claim(%s): %v", filepath.Base(owner), err)
		}
		claimed = append(claimed, uid)
		return uid
	}
	ua := claim(a, none)
	ub := claim(b, none)
	if ua == ub {
		t.Fatalf("owners a and b both got uid %d", ua)
	}
	if got := claim(a, none); got != ua {
		t.Errorf("a's unused claim: got %d, want its own %d again", got, ua)
	}
	ua2 := claim(a, func(u int) bool { return u == ua })
	if ua2 == ua || ua2 == ub {
		t.Errorf("a holding %d got %d; b holds %d", ua, ua2, ub)
	}
	if _, err := Claim(r, a, func(u int) bool { return u == ua || u == ua2 }); !errors.Is(err, ErrNoUID) {
		t.Errorf("range full: got %v, want ErrNoUID", err)
	}
	if err := Release(ub, a); err != nil {
		t.Fatal(err)
	}
	if uid, err := Claim(r, a, func(u int) bool { return u == ua || u == ua2 }); !errors.Is(err, ErrNoUID) {
		t.Errorf("after a released b's claim: got uid %d, %v; want b's claim kept and ErrNoUID", uid, err)
	}
	if err := os.RemoveAll(b); err != nil {
		t.Fatal(err)
	}
	if got := claim(a, func(u int) bool { return u == ua || u == ua2 }); got != ub {
		t.Errorf("b's directory is gone: got %d, want its uid %d taken over", got, ub)
	}
}
