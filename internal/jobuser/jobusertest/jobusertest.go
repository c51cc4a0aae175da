// Package jobusertest gives tests job uids of their own: claimed host-wide
// (see jobuser.ClaimBlock) from a range kept for tests, so that a second
// copy of the test suite running beside this one never uses, or kills the
// processes of, the same uid.
package jobusertest

import (
	"testing"

	"kumo/internal/jobuser"
)

// Range is where test uids come from, apart from jobuser.DefaultRange's
// first uids that a control plane hands out.
var Range = jobuser.Range{First: 910000, Last: 919999}

// Block claims n consecutive uids for owner (the directory of the component
// that will use them, or t.TempDir()) and releases them when the test ends.
// It skips the test when not run as root.
func Block(t testing.TB, n int, owner string) jobuser.Range {
	t.Helper()
	if !jobuser.Enabled() {
		t.Skip("job uids need root")
	}
	r, err := jobuser.ClaimBlock(Range, n, owner)
	if err != nil {
		t.Fatalf("claim %d test job uids: %v", n, err)
	}
	t.Cleanup(func() {
		for uid := r.First; uid <= r.Last; uid++ {
			jobuser.KillAll(uid)
			jobuser.Release(uid, owner)
		}
	})
	return r
}

// User claims one uid for the test and returns it as a job user.
func User(t testing.TB) jobuser.User {
	t.Helper()
	r := Block(t, 1, t.TempDir())
	return jobuser.User{UID: r.First, GID: r.First}
}
