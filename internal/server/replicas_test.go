package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/controller/autoscale"
	"kumo/internal/controller/provision"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/server"
	"kumo/internal/store"
	"kumo/internal/store/postgres"
	"kumo/internal/store/postgres/pgtest"
	"kumo/internal/store/sqlite"
)

// TestTwoControlPlanesOneDatabase runs two control planes (each an API
// server and an autoscaler with a Store of its own) on one database, as
// replicas of kumo up do, and drives both at once: every job name is
// submitted through both servers together, while both autoscalers scale
// the same clusters up. Whatever one process remembers, the database
// decides: no job name, job Seq, node or SSH port is handed out twice, and
// every instance the provider holds is a stored node. It runs on
// PostgreSQL (two Stores on one database), on one SQLite file opened twice
// (as two processes would) and on one SQLite Store shared by both.
func TestTwoControlPlanesOneDatabase(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		testTwoControlPlanes(t, func(t *testing.T) store.Store {
			s, err := postgres.Open(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("sqlite one store", func(t *testing.T) {
		// Both control planes in one process, on one Store.
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kumo.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		testTwoControlPlanes(t, func(t *testing.T) store.Store { return s })
	})
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kumo.db")
		testTwoControlPlanes(t, func(t *testing.T) store.Store {
			s, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

// replica is one control plane of the test: a store, an API server over
// it and an autoscaler.
type replica struct {
	st  store.Store
	srv *httptest.Server
	as  *autoscale.Autoscaler
}

func testTwoControlPlanes(t *testing.T, open func(t *testing.T) store.Store) {
	const (
		clients   = 3  // goroutines submitting per replica
		perClient = 20 // job names each submits, through both replicas
		clusters  = 2
	)
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	regions := map[string]model.Region{"local": model.NewRegion("local", "fake", model.Host{VCPUs: 10000, MemoryGB: 40000})}
	cloud := fake.New(fake.Config{}) // the one cloud both control planes use

	ws := model.Workspace{ID: wsBase, Subscription: testSub, ResourceGroup: "rg1", Name: "ws1", Location: "local"}
	var reps [2]replica
	var owner string
	for i := range reps {
		st := open(t)
		if i == 0 {
			tok, err := server.Bootstrap(ctx, st, ws, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			owner = tok.Secret
			if err := st.QuotaSet(ctx, model.Quota{WorkspaceID: wsBase, Family: "standardDSv2Family", Limit: 100000}); err != nil {
				t.Fatal(err)
			}
		}
		srv := httptest.NewServer(server.New(server.Config{Store: st, Regions: regions, Provisioner: provision.New(provision.Config{Store: st}),
			PollInterval: 10 * time.Millisecond, Log: log}))
		t.Cleanup(srv.Close)
		as := autoscale.New(autoscale.Config{Store: st, Providers: map[string]provider.Provider{"fake": cloud}, Regions: regions,
			AgentURL: "https://cp.example:8443", Resync: time.Hour, Log: log})
		reps[i] = replica{st: st, srv: srv, as: as}
	}
	h := [2]*harness{}
	for i, r := range reps {
		h[i] = &harness{t: t, st: r.st, srv: r.srv, tokens: map[model.Role]string{model.RoleOwner: owner}}
	}

	// One cluster made through each replica, provisioned by the other.
	var computeIDs []string
	for i := range clusters {
		name := fmt.Sprintf("cpu%d", i)
		h[i%2].mustDo("PUT", wsBase+"/computes/"+name, computeBody("Standard_DS2_v2", 0, 12), model.RoleOwner, 201, nil)
		if err := provision.New(provision.Config{Store: reps[(i+1)%2].st}).Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		computeIDs = append(computeIDs, wsBase+"/computes/"+name)
	}

	// Both autoscalers scale every cluster, over and over, while jobs
	// arrive.
	submitted := make(chan struct{})
	var scaling sync.WaitGroup
	for _, r := range reps {
		scaling.Add(1)
		go func() {
			defer scaling.Done()
			for pass := 0; ; pass++ {
				for _, id := range computeIDs {
					if _, err := r.as.Reconcile(ctx, id); err != nil {
						t.Errorf("Reconcile(%s): %v", id, err)
						return
					}
				}
				select {
				case <-submitted:
					if pass > 0 {
						return
					}
				default:
				}
			}
		}()
	}

	// Every name goes to both replicas at once; one of them must win.
	type answer struct {
		client string // which replica and goroutine sent it
		k      int    // the how-many-th request of its client
		name   string
		status int
		body   string
	}
	answers := make(chan answer, 2*clusters*clients*perClient)
	var submit sync.WaitGroup
	for c := range clients {
		for i, hh := range h {
			submit.Add(1)
			go func() {
				defer submit.Done()
				for k := range perClient {
					name := fmt.Sprintf("job-%d-%d", c, k)
					// The two replicas' clients take the names in opposite
					// orders, so that they meet in the middle.
					if i == 1 {
						name = fmt.Sprintf("job-%d-%d", c, perClient-1-k)
					}
					compute := fmt.Sprintf("cpu%d", (c+k)%clusters)
					status, body, _ := hh.do("PUT", wsBase+"/jobs/"+name, api.JobResource{Properties: &api.JobProperties{
						JobType: "Command", ComputeID: compute, Command: "true"}}, model.RoleOwner)
					answers <- answer{fmt.Sprintf("%d/%d", i, c), k, name, status, string(body)}
				}
			}()
		}
	}
	submit.Wait()
	close(submitted)
	scaling.Wait()
	close(answers)

	created := map[string]int{}
	byClient := map[string][]answer{} // each client's created jobs, in the order it sent them
	for a := range answers {
		switch a.status {
		case 201:
			created[a.name]++
			byClient[a.client] = append(byClient[a.client], a)
		case 409:
		default:
			t.Errorf("PUT job %s: status %d, want 201 or 409; body %s", a.name, a.status, a.body)
		}
	}
	for c := range clients {
		for k := range perClient {
			if name := fmt.Sprintf("job-%d-%d", c, k); created[name] != 1 {
				t.Errorf("job %s created %d times, want once", name, created[name])
			}
		}
	}

	st := reps[0].st
	jobs, err := st.JobListByStatus(ctx, model.JobQueued)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != clients*perClient {
		t.Errorf("stored %d jobs, want %d", len(jobs), clients*perClient)
	}
	seqs := map[int64]string{}
	names := map[string]bool{}
	for _, j := range jobs {
		if j.Seq <= 0 {
			t.Errorf("job %s has Seq %d, want one above 0", j.Name, j.Seq)
		}
		if other, ok := seqs[j.Seq]; ok {
			t.Errorf("jobs %s and %s share Seq %d", other, j.Name, j.Seq)
		}
		seqs[j.Seq] = j.Name
		if names[j.Name] {
			t.Errorf("job name %s stored twice", j.Name)
		}
		names[j.Name] = true
	}

	// FIFO: the jobs one client submitted one after another are queued in
	// that order, whichever replica numbered them.
	seqOf := map[string]int64{}
	for _, j := range jobs {
		seqOf[j.Name] = j.Seq
	}
	for client, as := range byClient {
		slices.SortFunc(as, func(a, b answer) int { return a.k - b.k })
		for i := 1; i < len(as); i++ {
			if seqOf[as[i].name] <= seqOf[as[i-1].name] {
				t.Errorf("client %s: job %s (Seq %d) submitted after %s (Seq %d), want a larger Seq",
					client, as[i].name, seqOf[as[i].name], as[i-1].name, seqOf[as[i-1].name])
			}
		}
	}

	nodes, err := st.NodeList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) == 0 {
		t.Fatal("no node was made")
	}
	ports := map[int]string{}
	var ids []string
	for _, n := range nodes {
		if n.SSHPort < autoscale.FirstSSHPort {
			t.Errorf("node %s has SSH port %d, want one from %d", n.ID, n.SSHPort, autoscale.FirstSSHPort)
		}
		if other, ok := ports[n.SSHPort]; ok {
			t.Errorf("nodes %s and %s share SSH port %d", other, n.ID, n.SSHPort)
		}
		ports[n.SSHPort] = n.ID
		ids = append(ids, n.ID)
	}
	slices.Sort(ids)
	insts, err := cloud.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var instIDs []string
	for _, in := range insts {
		instIDs = append(instIDs, in.ID)
	}
	if !slices.Equal(ids, slices.Compact(slices.Clone(ids))) {
		t.Errorf("node IDs repeat: %v", ids)
	}
	if !slices.Equal(instIDs, ids) {
		t.Errorf("provider instances %v, want the stored nodes %v", instIDs, ids)
	}
	t.Logf("%d jobs, %d nodes, SSH ports %d..%d", len(jobs), len(nodes), slices.Min(slices.Collect(maps.Keys(ports))), slices.Max(slices.Collect(maps.Keys(ports))))
}
