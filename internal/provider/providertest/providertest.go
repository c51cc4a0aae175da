// Package providertest is the conformance suite every [provider.Provider]
// must pass: the contract in package provider, checked against a real
// implementation.
package providertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"kumo/internal/provider"
)

// Size is the VM size the suite creates; every provider under test must
// have room for four of it.
var Size = provider.Size{Name: "Test_1", VCPUs: 1, MemoryMB: 64}

func instance(id string) provider.Instance {
	return provider.Instance{ID: id, Compute: "cpu-cluster", Size: Size,
		Agent: provider.AgentConfig{URL: "https://127.0.0.1:1", Credential: "secret-" + id}}
}

// Run runs the suite. newProvider returns a fresh, empty provider for each
// subtest; instances it creates must reach Running on their own.
func Run(t *testing.T, newProvider func(t *testing.T) provider.Provider) {
	ctx := context.Background()

	t.Run("create list delete", func(t *testing.T) {
		p := newProvider(t)
		if err := p.Create(ctx, []provider.Instance{instance("n-b"), instance("n-a")}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		got := waitRunning(t, p, 2)
		for i, id := range []string{"n-a", "n-b"} {
			if got[i].ID != id || got[i].Compute != "cpu-cluster" || got[i].Size != Size || got[i].Created.IsZero() {
				t.Errorf("List()[%d] = %+v, want ID %s in cpu-cluster, size %v, created set", i, got[i], id, Size)
			}
		}
		if err := p.Delete(ctx, []string{"n-a"}); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if got := list(t, p); len(got) != 1 || got[0].ID != "n-b" {
			t.Errorf("after Delete(n-a), List = %v, want [n-b]", ids(got))
		}
		if err := p.Delete(ctx, []string{"n-b"}); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if got := list(t, p); len(got) != 0 {
			t.Errorf("after deleting all, List = %v, want none", ids(got))
		}
	})

	t.Run("create is idempotent", func(t *testing.T) {
		p := newProvider(t)
		if err := p.Create(ctx, []provider.Instance{instance("n-1")}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		first := waitRunning(t, p, 1)
		if err := p.Create(ctx, []provider.Instance{instance("n-1"), instance("n-1")}); err != nil {
			t.Fatalf("repeated Create: %v", err)
		}
		again := list(t, p)
		if len(again) != 1 || !again[0].Created.Equal(first[0].Created) || again[0].State != provider.StateRunning {
			t.Errorf("after repeated Create, List = %+v, want the first instance unchanged: %+v", again, first)
		}
		if err := p.Delete(ctx, []string{"n-1"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("delete ignores unknown IDs", func(t *testing.T) {
		p := newProvider(t)
		for _, del := range [][]string{nil, {"nope"}, {"nope", "nope"}} {
			if err := p.Delete(ctx, del); err != nil {
				t.Errorf("Delete(%q) = %v, want nil", del, err)
			}
		}
	})

	t.Run("invalid ID is refused alone", func(t *testing.T) {
		p := newProvider(t)
		err := p.Create(ctx, []provider.Instance{instance("../x"), instance("ok")})
		var ie *provider.InstanceError
		if !errors.As(err, &ie) || ie.ID != "../x" {
			t.Fatalf("Create = %v, want an *InstanceError for ../x", err)
		}
		if got := waitRunning(t, p, 1); got[0].ID != "ok" {
			t.Errorf("List = %v, want [ok]", ids(got))
		}
		if err := p.Delete(ctx, []string{"ok"}); err != nil {
			t.Fatal(err)
		}
	})
}

func list(t *testing.T, p provider.Provider) []provider.InstanceStatus {
	t.Helper()
	got, err := p.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].ID >= got[i].ID {
			t.Fatalf("List not sorted by ID: %v", ids(got))
		}
	}
	return got
}

// waitRunning polls List until n instances are all Running.
func waitRunning(t *testing.T, p provider.Provider, n int) []provider.InstanceStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := list(t, p)
		running := 0
		for _, s := range got {
			if s.State == provider.StateRunning {
				running++
			}
		}
		if len(got) == n && running == n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("List = %+v, want %d instances Running", got, n)
		}
		time.Sleep(5 * time.Millisecond) // providers report state on demand; poll
	}
}

func ids(s []provider.InstanceStatus) []string {
	out := make([]string, len(s))
	for i, st := range s {
		out[i] = st.ID
	}
	return out
}
