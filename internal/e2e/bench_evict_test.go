package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"kumo/api"
)

// BenchmarkEviction measures, over b.N evictions of a LowPriority job that
// exits on SIGTERM, the time from the simulate-eviction request to the job
// being requeued (its attempt ended and the job Queued again, or already
// assigned), and to its next attempt running on the one replacement node
// (the agent's start time). A job is evicted 5 times (the preemption cap)
// and then replaced by a new one. Run with -benchtime=50x for the figures in
// BENCHMARKS.md.
func BenchmarkEviction(b *testing.B) { benchEviction(b, 1, "e") }

// waitForFast polls cond every 5 ms until it holds or timeout passes.
func waitForFast(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitEvery(t, 5*time.Millisecond, timeout, what, func() (bool, string) { return cond(), "" })
}

// BenchmarkGangEviction is BenchmarkEviction for a job of two nodes on a
// LowPriority cluster of at most two: each iteration evicts the job's
// rank-1 node, and measures until the job is requeued and until its retry
// runs again on the surviving node and one replacement (rank 0's start
// time).
func BenchmarkGangEviction(b *testing.B) { benchEviction(b, 2, "g") }

// benchEviction is BenchmarkEviction for jobs of nodes nodes (named prefix
// and a number) on a LowPriority cluster of at most that many: each
// iteration evicts the job's last-ranked node and measures until the job
// is requeued and until its retry runs again (rank 0's start time).
func benchEviction(b *testing.B, nodes int, prefix string) {
	s := startServer(b, "", "--heartbeat-interval", "1s", "--eviction-lead-time", "30s")
	createPriorityCluster(b, s, "spot", "LowPriority", nodes)
	const command = `trap 'exit 0' TERM; sleep 1000 & wait`
	var requeued, running []time.Duration
	job, attempt := "", 0
	get := func() api.JobProperties { return *getJob(b, s, job).Properties }
	poll := func(what string, cond func(p api.JobProperties) bool) api.JobProperties {
		var p api.JobProperties
		waitForFast(b, 120*time.Second, what, func() bool { p = get(); return cond(p) })
		return p
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if attempt == 0 || attempt > 5 {
			job, attempt = fmt.Sprintf("%s%04d", prefix, i), 1
			body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: command, ComputeID: "spot",
				Resources: &api.JobResourceConfig{InstanceCount: nodes}}}
			if status, raw := s.request(context.Background(), "PUT", workspacePath+"/jobs/"+job, body); status != 201 {
				b.Fatalf("submit %s: %d %s", job, status, raw)
			}
		}
		p := poll("attempt to run", func(p api.JobProperties) bool {
			return p.Status == api.JobRunning && p.Attempts == attempt && (nodes == 1 || len(p.NodeIDs) == nodes)
		})
		victim := p.NodeID
		if nodes > 1 {
			victim = p.NodeIDs[nodes-1]
		}
		b.StartTimer()
		t0 := time.Now()
		if status, raw := s.request(context.Background(), "POST", workspacePath+"/computes/spot/simulateEviction?nodeId="+victim, nil); status != 202 {
			b.Fatalf("simulate eviction: %d %s", status, raw)
		}
		poll("requeue", func(p api.JobProperties) bool { return p.Attempts > attempt || p.Status == api.JobQueued })
		requeued = append(requeued, time.Since(t0))
		if attempt == 5 {
			// The next eviction would reach the cap: cancel the job and
			// start a new one.
			b.StopTimer()
			if status, raw := s.request(context.Background(), "POST", workspacePath+"/jobs/"+job+"/cancel", nil); status != 202 {
				b.Fatalf("cancel: %d %s", status, raw)
			}
			waitJob(b, s, job, 60*time.Second)
			attempt++
			continue
		}
		attempt++
		p = poll("retry to run", func(p api.JobProperties) bool { return p.Status == api.JobRunning && p.Attempts == attempt })
		started, err := time.Parse(api.TimeFormat, p.StartTime)
		if err != nil {
			b.Fatal(err)
		}
		running = append(running, started.Sub(t0))
		b.StopTimer()
	}
	reportLatency(b, "requeue-", requeued, false)
	reportLatency(b, "retry-", running, false)
	b.ReportMetric(float64(len(running)), "retries")
}
