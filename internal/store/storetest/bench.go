package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
)

// The benchmarks below are shared by every backend, so their figures
// compare in one session: each backend's BenchmarkJobLifecycle and
// BenchmarkJobReadAfterWrite call them on a fresh store.

// benchWS is the workspace of the benchmarks' jobs, and benchT0 their
// creation time.
const benchWS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"

var benchT0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

// benchJob returns the benchmarks' trivial job n: queued on compute cpu,
// with Seq n.
func benchJob(n int64) model.Job {
	name := fmt.Sprintf("job-%d", n)
	return model.Job{
		ID: benchWS + "/jobs/" + name, WorkspaceID: benchWS, Name: name, RunID: fmt.Sprintf("run-%d", n),
		ComputeID: benchWS + "/computes/cpu", Command: "true", InstanceCount: 1,
		Status: model.JobQueued, Seq: n, CreatedAt: benchT0, CreatedBy: "alice",
	}
}

// BenchJobLifecycle measures the control plane's write path for one
// trivial job: create it, assign it to an idle node, start it, and finish
// it, freeing the node. That is four write transactions, two of which
// also change the node.
func BenchJobLifecycle(b *testing.B, s store.Store) {
	ctx := b.Context()
	node := model.Node{
		ID: "node-1", ComputeID: benchWS + "/computes/cpu", State: model.NodeIdle,
		CredentialHash: "0123456789abcdef", Address: "10.0.0.4", SSHPort: 50000,
		CreatedAt: benchT0, StateSince: benchT0,
	}
	if err := s.NodeCreate(ctx, node); err != nil {
		b.Fatalf("NodeCreate: %v", err)
	}
	b.ReportAllocs()
	seq := int64(0)
	for b.Loop() {
		seq++
		j := benchJob(seq)
		if err := s.JobCreate(ctx, j); err != nil {
			b.Fatalf("JobCreate: %v", err)
		}

		j.Status, j.NodeID, j.Attempts = model.JobPreparing, node.ID, 1
		node.State, node.JobID = model.NodeRunning, j.ID
		if err := s.JobUpdate(ctx, j, model.JobQueued, &node, model.NodeIdle); err != nil {
			b.Fatalf("JobUpdate(Preparing): %v", err)
		}

		j.Status, j.StartedAt = model.JobRunning, benchT0.Add(time.Second)
		if err := s.JobUpdate(ctx, j, model.JobPreparing, nil, ""); err != nil {
			b.Fatalf("JobUpdate(Running): %v", err)
		}

		exit := 0
		j.Status, j.EndedAt, j.ExitCode = model.JobCompleted, benchT0.Add(2*time.Second), &exit
		node.State, node.JobID = model.NodeIdle, ""
		if err := s.JobUpdate(ctx, j, model.JobRunning, &node, model.NodeRunning); err != nil {
			b.Fatalf("JobUpdate(Completed): %v", err)
		}
	}
}

// BenchJobReadAfterWrite measures the pattern of the control plane's
// hot path: a job is changed, then read back by its run ID and by its ID,
// which must see the commit. The store holds 5,000 ended jobs and
// 1,000 queued ones, as a busy control plane does.
func BenchJobReadAfterWrite(b *testing.B, s store.Store) {
	ctx := b.Context()
	var jobs []model.Job
	for i := range 6000 {
		j := benchJob(int64(i + 1))
		if i < 5000 {
			j.Status = model.JobCompleted
		} else {
			jobs = append(jobs, j)
		}
		if err := s.JobCreate(ctx, j); err != nil {
			b.Fatalf("JobCreate: %v", err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := jobs[i%len(jobs)]
		i++
		from := j.Status
		j.Attempts++
		if err := s.JobUpdate(ctx, j, from, nil, ""); err != nil {
			b.Fatalf("JobUpdate: %v", err)
		}
		if _, err := s.JobGetByRunID(ctx, j.RunID); err != nil {
			b.Fatalf("JobGetByRunID: %v", err)
		}
		if _, err := s.JobGet(ctx, j.ID); err != nil {
			b.Fatalf("JobGet: %v", err)
		}
	}
}

// BenchJobSubmit measures the store's part of a job submission, one at a
// time: "Submit" is the control plane's path, JobSubmit; "MemorySeq" is
// JobCreate alone, with a Seq from a counter in memory (as one control
// plane did before Seqs came from the store), for comparison. open returns
// a fresh, empty store.
func BenchJobSubmit(b *testing.B, open func(b *testing.B) store.Store) {
	paths := []struct {
		name   string
		submit func(ctx context.Context, s store.Store, n int64) error
	}{
		{"MemorySeq", func(ctx context.Context, s store.Store, n int64) error { return s.JobCreate(ctx, benchJob(n)) }},
		{"Submit", func(ctx context.Context, s store.Store, n int64) error {
			_, err := s.JobSubmit(ctx, benchJob(n))
			return err
		}},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			s := open(b)
			ctx := b.Context()
			b.ReportAllocs()
			var n int64
			for b.Loop() {
				n++
				if err := p.submit(ctx, s, n); err != nil {
					b.Fatalf("submit: %v", err)
				}
			}
		})
	}
}

// BenchJobHead measures reading the head of a queue of 1,000 jobs as the
// dispatcher does on every pass: the first job, then as many as it has
// idle nodes (here 8), alternately.
func BenchJobHead(b *testing.B, s store.Store) {
	ctx := b.Context()
	for i := range 1000 {
		if err := s.JobCreate(ctx, benchJob(int64(i+1))); err != nil {
			b.Fatalf("JobCreate: %v", err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		limit := []int{1, 8}[i%2]
		i++
		js, err := s.JobHead(ctx, benchWS+"/computes/cpu", model.JobQueued, limit)
		if err != nil {
			b.Fatalf("JobHead: %v", err)
		}
		if len(js) != limit || js[0].Seq != 1 {
			b.Fatalf("JobHead(%d) returned %d jobs, the first of Seq %d", limit, len(js), js[0].Seq)
		}
	}
}
