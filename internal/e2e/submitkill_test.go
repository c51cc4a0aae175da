package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kumo/api"
)

// TestKillDuringSubmitKeepsAcceptedJobs kills the control plane (SIGKILL)
// while clients submit jobs as fast as they can, restarts it on the same
// data, and checks that every job a client was answered 201 for exists.
func TestKillDuringSubmitKeepsAcceptedJobs(t *testing.T) {
	s := startServer(t, "")
	createCluster(t, s, "sub", 0, 1, "PT30S")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const submitters, killAfter = 16, 100
	var (
		mu       sync.Mutex
		accepted []string
		next     atomic.Int64
		wg       sync.WaitGroup
		enough   = make(chan struct{})
		once     sync.Once
	)
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				name := fmt.Sprintf("s%05d", next.Add(1))
				body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: "true", ComputeID: "sub"}}
				status, raw := s.request(ctx, "PUT", workspacePath+"/jobs/"+name, body)
				var j api.JobResource
				// A whole 201 counts as accepted; an answer cut off by the
				// kill may or may not have been, and ends this client.
				if status != 201 || json.Unmarshal(raw, &j) != nil || j.Properties == nil {
					return
				}
				mu.Lock()
				accepted = append(accepted, name)
				if len(accepted) >= killAfter {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatal("too few submits accepted")
	}
	s.kill()
	wg.Wait()
	t.Logf("%d jobs accepted before SIGKILL", len(accepted))

	s2 := startServer(t, s.dir)
	for _, name := range accepted {
		if status, raw := s2.request(ctx, "GET", workspacePath+"/jobs/"+name, nil); status != 200 {
			t.Errorf("job %s was accepted before the kill; after restart GET answers %d %s", name, status, raw)
		}
	}
}
