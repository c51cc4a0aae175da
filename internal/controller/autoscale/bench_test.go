package autoscale

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/store/sqlite"
)

// timedProvider records when Create is called.
type timedProvider struct {
	provider.Provider
	created chan time.Time
}

func (p *timedProvider) Create(ctx context.Context, in []provider.Instance) error {
	p.created <- time.Now()
	return p.Provider.Create(ctx, in)
}

// BenchmarkQueuedToCreate measures the time from a job being queued (and
// the autoscaler notified, as the API does) to the provider's Create call
// for a node to run it, with the real loop, a real SQLite store and the
// fake provider. Each iteration uses a fresh cluster scaled to 0.
func BenchmarkQueuedToCreate(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "kumo.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ws := model.Workspace{ID: wsID, Subscription: "sub", ResourceGroup: "rg", Name: "ws", Location: "local", CreatedAt: t0, ModifiedAt: t0}
	if err := st.WorkspaceCreate(ctx, ws); err != nil {
		b.Fatal(err)
	}
	region := model.NewRegion("local", "fake", model.Host{VCPUs: 1 << 20, MemoryGB: 1 << 20})
	size, _ := region.Size(vmSize)
	if err := st.QuotaSet(ctx, model.Quota{WorkspaceID: wsID, Family: size.Family, Limit: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	prov := &timedProvider{Provider: fake.New(fake.Config{}), created: make(chan time.Time, 1)}
	a := New(Config{
		Store: st, Providers: map[string]provider.Provider{"local": prov}, Regions: map[string]model.Region{"local": region},
		AgentURL: "https://cp.example:8443", Resync: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	a.Start(ctx)
	defer a.Stop()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("c%d", i)
		c := model.Compute{
			ID: wsID + "/computes/" + name, WorkspaceID: wsID, Name: name, Location: "local", VMSize: vmSize,
			Priority: model.PriorityDedicated, Scale: model.ScaleSettings{MaxNodes: 1, IdleTime: time.Hour},
			RemoteLogin: "Disabled", State: model.StateSucceeded, ETag: "e", CreatedAt: t0, ModifiedAt: t0,
		}
		op := model.Operation{ID: "op-" + name, Location: "local", Kind: model.OpCreate, ComputeID: c.ID, Status: model.OpSucceeded, StartedAt: t0, EndedAt: t0}
		if err := st.ComputeCreate(ctx, c, op); err != nil {
			b.Fatal(err)
		}
		j := model.Job{ID: wsID + "/jobs/j" + name, WorkspaceID: wsID, Name: "j" + name, RunID: "run-" + name, ComputeID: c.ID,
			Command: "true", InstanceCount: 1, Status: model.JobQueued, Seq: int64(i + 1), CreatedAt: time.Now()}
		start := time.Now()
		if err := st.JobCreate(ctx, j); err != nil {
			b.Fatal(err)
		}
		a.Notify(c.ID)
		select {
		case at := <-prov.created:
			lat = append(lat, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatalf("no Create call for %s within 10s", name)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)-1)*99/100])/1e6, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
}
