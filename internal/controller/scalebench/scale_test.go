package scalebench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/controller/autoscale"
	"kumo/internal/controller/dispatch"
	"kumo/internal/controller/nodehealth"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/server"
	"kumo/internal/store"
	"kumo/internal/store/sqlite"
)

const (
	wsID   = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
	vmSize = "Standard_DS2_v2"
	// queuedJobs is how many jobs wait in the queue when the cluster
	// scales up.
	queuedJobs = 100_000
	// idleWindow is how long the idle control plane's CPU is read.
	idleWindow = 30 * time.Second
	// gets is how many GET compute requests are timed.
	gets = 200
)

// BenchmarkScale runs a control plane's loops (autoscaler, dispatcher,
// node health) over one cluster of the fake provider with a real SQLite
// store on disk and 100,000 queued jobs, at 1,000 and 10,000 nodes. It
// reports:
//
//   - scaleup-s, scaleup-cpu-s: wall and control-plane CPU time from the
//     autoscaler's start to every node created (0 → N);
//   - placements/s: jobs placed per second with every node busy and jobs
//     finishing: half the nodes' jobs end in one batch, as the hub stores
//     reports, and the time runs until as many new jobs are sent to
//     nodes; twice; cpu-us/placement is the process's CPU time in that
//     window per job placed (finishing included), which other load on the
//     host disturbs less than the wall time;
//   - idle-cpu-%: CPU of the idle control plane (nodes busy, nothing
//     finishing) over 30 s, in % of a core;
//   - get-compute-p50-ms, get-compute-p99-ms: GET of the compute through
//     the real HTTP server;
//   - rss-MB: the process's resident memory at the end.
//
// With KUMO_SCALE_IDLE_PROFILE set to a file name, the idle window's CPU
// profile is written there; with KUMO_SCALE_GET_PROFILE, that of the GETs;
// with KUMO_SCALE_BUSY_PROFILE, that of the placement rounds.
//
// Run it with -benchtime 1x: each iteration builds the whole cluster.
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for range b.N {
				runScale(b, n)
			}
		})
	}
}

// sender is a fake agent hub: every node is connected; it counts the jobs
// sent.
type sender struct {
	sent atomic.Int64
}

func (s *sender) Connected(string) bool { return true }

func (s *sender) Send(nodeID string, m agentproto.Message) error {
	if m.Type != agentproto.TypeRun {
		return nil
	}
	s.sent.Add(1)
	return nil
}

type alive struct{}

func (alive) LastSeen(string) (time.Time, bool) { return time.Now(), true }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMB(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// waitFor polls cond every 10ms until it holds or the deadline passes.
func waitFor(b *testing.B, what string, limit time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runScale(b *testing.B, nodes int) {
	b.StopTimer()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := filepath.Join(b.TempDir(), "kumo.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	ws := model.Workspace{ID: wsID, Subscription: "00000000-0000-0000-0000-000000000000", ResourceGroup: "rg", Name: "ws", Location: "local"}
	owner, err := server.Bootstrap(ctx, st, ws, now)
	if err != nil {
		b.Fatal(err)
	}
	region := model.NewRegion("local", "fake", model.Host{VCPUs: 1 << 20, MemoryGB: 1 << 20})
	size, _ := region.Size(vmSize)
	if err := st.QuotaSet(ctx, model.Quota{WorkspaceID: wsID, Family: size.Family, Limit: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	c := model.Compute{
		ID: wsID + "/computes/big", WorkspaceID: wsID, Name: "big", Location: "local", VMSize: vmSize,
		Priority: model.PriorityDedicated, Scale: model.ScaleSettings{MaxNodes: nodes, IdleTime: time.Hour},
		RemoteLogin: "Disabled", State: model.StateSucceeded, ETag: "e", CreatedAt: now, ModifiedAt: now,
	}
	op := model.Operation{ID: "op-big", Location: "local", Kind: model.OpCreate, ComputeID: c.ID, Status: model.OpSucceeded, StartedAt: now, EndedAt: now}
	if err := st.ComputeCreate(ctx, c, op); err != nil {
		b.Fatal(err)
	}
	setup := time.Now()
	first := model.Job{ID: wsID + "/jobs/j000000", WorkspaceID: wsID, Name: "j000000", RunID: "run-j000000", ComputeID: c.ID,
		Command: "true", InstanceCount: 1, Status: model.JobQueued, Seq: 1, CreatedAt: now}
	if err := st.JobCreate(ctx, first); err != nil {
		b.Fatal(err)
	}
	// The rest of the queue is copied from the first job in one statement,
	// with the store closed, so that the store reads it all when it opens.
	st.Close()
	if err := cloneJobs(ctx, path, queuedJobs-1); err != nil {
		b.Fatal(err)
	}
	if st, err = sqlite.Open(ctx, path); err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.Logf("nodes=%d: %d jobs queued in %s", nodes, queuedJobs, time.Since(setup).Round(time.Millisecond))

	prov := fake.New(fake.Config{})
	provs := map[string]provider.Provider{"local": prov}
	regions := map[string]model.Region{"local": region}
	snd := &sender{}
	var scaler *autoscale.Autoscaler
	disp := dispatch.New(dispatch.Config{Store: st, Sender: snd, Log: log,
		Run: func(j model.Job) agentproto.Message {
			return agentproto.Message{Type: agentproto.TypeRun, RunID: j.RunID}
		},
		Changed: func(id string) { scaler.Notify(id) }})
	scaler = autoscale.New(autoscale.Config{Store: st, Providers: provs, Regions: regions,
		AgentURL: "https://cp.example:8443", Changed: disp.Notify, Log: log})
	health := nodehealth.New(nodehealth.Config{Store: st, Providers: provs, Regions: regions, Liveness: alive{},
		Changed: func(id string) { disp.Notify(id); scaler.Notify(id) }, Log: log})

	// Scale up 0 → nodes.
	cpu0, t0 := cpuTime(), time.Now()
	scaler.Start(ctx)
	defer scaler.Stop()
	waitFor(b, "scale up", 30*time.Minute, func() bool { return prov.Calls().Created >= nodes })
	scaleWall, scaleCPU := time.Since(t0), cpuTime()-cpu0

	// The agents register: every node becomes idle, as the hub makes it.
	ns, err := st.NodeListByCompute(ctx, c.ID)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range ns {
		u := n
		u.State, u.StateSince = model.NodeIdle, time.Now().UTC()
		if err := st.NodeUpdate(ctx, u, model.NodePreparing); err != nil {
			b.Fatal(err)
		}
	}
	health.Start(ctx)
	defer health.Stop()
	disp.Start(ctx)
	defer disp.Stop()
	disp.Notify(c.ID)
	waitFor(b, "fill the cluster", 10*time.Minute, func() bool { return snd.sent.Load() >= int64(nodes) })

	// Every node busy; half of them finish their jobs at once (one batch,
	// as the hub commits its reports), and the dispatcher places as many
	// new jobs. Twice.
	var placed int64
	var busyWall, busyCPU time.Duration
	// A CPU profile of the two placement windows (and the finishing
	// between them, outside the timer).
	stopProfile := startProfile(b, "KUMO_SCALE_BUSY_PROFILE")
	for round := range 2 {
		batch := ns[round*nodes/2 : (round+1)*nodes/2]
		updates := make([]store.JobNodesUpdate, 0, len(batch))
		for _, n := range batch {
			u, err := finishing(ctx, st, n.ID)
			if err != nil {
				b.Fatal(err)
			}
			updates = append(updates, u)
		}
		target := snd.sent.Load() + int64(len(batch))
		tb, cb := time.Now(), cpuTime()
		b.StartTimer()
		errs, err := st.JobUpdateBatch(ctx, updates)
		if err != nil {
			b.Fatal(err)
		}
		for i, err := range errs {
			if err != nil {
				b.Fatalf("finish %s: %v", updates[i].Job.Name, err)
			}
		}
		disp.Notify(c.ID)
		scaler.Notify(c.ID)
		waitFor(b, "place the freed nodes", 10*time.Minute, func() bool { return snd.sent.Load() >= target })
		b.StopTimer()
		busyWall, busyCPU = busyWall+time.Since(tb), busyCPU+cpuTime()-cb
		placed += int64(len(batch))
	}
	stopProfile()

	// Idle: every node busy, nothing finishing; the runtime returns the
	// busy phase's memory first.
	time.Sleep(5 * time.Second)
	stopProfile = startProfile(b, "KUMO_SCALE_IDLE_PROFILE") // the idle window alone
	cpu1, ti := cpuTime(), time.Now()
	time.Sleep(idleWindow)
	idle := float64(cpuTime()-cpu1) / float64(time.Since(ti)) * 100
	stopProfile()

	// GET compute through the HTTP server.
	srv := httptest.NewServer(server.New(server.Config{Store: st, Regions: regions, Log: log}))
	defer srv.Close()
	lat := make([]time.Duration, 0, gets)
	stopProfile = startProfile(b, "KUMO_SCALE_GET_PROFILE") // the GETs alone
	url := srv.URL + c.ID + "?api-version=2024-04-01"
	for range gets {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+owner.Secret)
		t := time.Now()
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET compute: %s", resp.Status)
		}
		lat = append(lat, time.Since(t))
	}
	stopProfile()
	slices.Sort(lat)

	b.ReportMetric(scaleWall.Seconds(), "scaleup-s")
	b.ReportMetric(scaleCPU.Seconds(), "scaleup-cpu-s")
	b.ReportMetric(float64(placed)/busyWall.Seconds(), "placements/s")
	b.ReportMetric(float64(busyCPU.Microseconds())/float64(placed), "cpu-us/placement")
	b.ReportMetric(idle, "idle-cpu-%")
	b.ReportMetric(float64(lat[(len(lat)-1)/2])/1e6, "get-compute-p50-ms")
	b.ReportMetric(float64(lat[(len(lat)-1)*99/100])/1e6, "get-compute-p99-ms")
	b.ReportMetric(rssMB("VmRSS"), "rss-MB")
	b.ReportMetric(rssMB("VmHWM"), "peak-rss-MB")
	b.ReportMetric(fileMB(path), "db-MB")
}

// finishing returns the update that ends the job a node runs, and frees
// the node, as the agent hub stores a node's report that its job is done.
func finishing(ctx context.Context, st store.Store, nodeID string) (store.JobNodesUpdate, error) {
	n, err := st.NodeGet(ctx, nodeID)
	if err != nil {
		return store.JobNodesUpdate{}, err
	}
	j, err := st.JobGet(ctx, n.JobID)
	if err != nil {
		return store.JobNodesUpdate{}, err
	}
	from := j.Status
	zero := 0
	now := time.Now().UTC()
	j.Finish(&zero, "", "", now)
	if !n.Free(j.ID, now) {
		return store.JobNodesUpdate{}, fmt.Errorf("node %s does not run job %s", n.ID, j.Name)
	}
	return store.JobNodesUpdate{Job: j, From: from, Nodes: []store.NodeChange{{Node: n, From: model.NodeRunning}}}, nil
}

// cloneJobs adds n queued jobs j000001 … to the database at path, copies of
// job j000000 with their own names, run IDs and places in the queue, in one
// transaction: JobCreate one by one would take a minute.
func cloneJobs(ctx context.Context, path string, n int) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT name FROM pragma_table_info('jobs')")
	if err != nil {
		return err
	}
	var cols, exprs []string
	for rows.Next() {
		var col string
		if err := rows.Scan(&col); err != nil {
			return err
		}
		expr := col
		switch col {
		case "id", "id_key", "name", "name_key", "run_id":
			expr = "replace(" + col + ", 'j000000', printf('j%06d', n.i))"
		case "seq":
			expr = "n.i + 1"
		}
		cols, exprs = append(cols, col), append(exprs, expr)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	q := `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO jobs (` + strings.Join(cols, ", ") + `) SELECT ` + strings.Join(exprs, ", ") + `
		FROM jobs, n WHERE jobs.name = 'j000000'`
	_, err = db.ExecContext(ctx, q, n)
	return err
}

// startProfile starts a CPU profile into the file named by the environment
// variable env, when it is set, and returns what stops it (and does
// nothing otherwise).
func startProfile(b *testing.B, env string) (stop func()) {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// fileMB returns the size of the database file at path in MB, 0 if it
// cannot be read.
func fileMB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}
