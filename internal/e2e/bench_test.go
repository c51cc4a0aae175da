package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kumo/api"
)

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// followLog blocks until the job is finished (the log stream ends then).
func followLog(b testing.TB, s *server, name string) {
	req, _ := http.NewRequest("GET", s.base+workspacePath+"/jobs/"+name+"/logs?follow=true&api-version=2024-04-01", nil)
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	resp, err := s.http.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// BenchmarkSubmitToStart measures, for trivial jobs submitted one at a time
// to a cluster with one idle node, the time from the client sending the
// job to its process starting on the node (the agent's start timestamp).
// Run with -benchtime=1000x for the figure in BENCHMARKS.md.
func BenchmarkSubmitToStart(b *testing.B) {
	s := startServer(b, "", "--heartbeat-interval", "2s")
	createCluster(b, s, "lat", 1, 1, "PT1H")
	waitFor(b, 60*time.Second, "an idle node", func() (bool, string) {
		c := getCompute(b, s, "lat")
		return c.Properties.Properties.NodeStateCounts.IdleNodeCount == 1, ""
	})
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("l%06d", i)
		t0 := time.Now()
		submitJob(b, s, name, "lat", "true")
		followLog(b, s, name)
		j := getJob(b, s, name)
		if j.Properties.Status != api.JobCompleted {
			b.Fatalf("job %s: %s %+v", name, j.Properties.Status, j.Properties.Error)
		}
		started, err := time.Parse(api.TimeFormat, j.Properties.StartTime)
		if err != nil {
			b.Fatalf("start time %q: %v", j.Properties.StartTime, err)
		}
		lat = append(lat, started.Sub(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}

// BenchmarkThroughput8Nodes measures trivial jobs completed per second
// through a cluster of 8 local nodes, from the first submission to the last
// job's end. b.N is the number of jobs; run with -benchtime=3000x.
func BenchmarkThroughput8Nodes(b *testing.B) {
	// Eight 2-vCPU, 7 GiB nodes on a 2-core host: overcommit both.
	args := []string{"--heartbeat-interval", "2s", "--cpu-overcommit", "8", "--memory-overcommit", "3"}
	if p := os.Getenv("KUMO_BENCH_CPUPROFILE"); p != "" {
		args = append(args, "--cpu-profile", p)
	}
	s := startServer(b, "", args...)
	createCluster(b, s, "tput", 8, 8, "PT1H")
	waitFor(b, 60*time.Second, "8 idle nodes", func() (bool, string) {
		c := getCompute(b, s, "tput")
		return c.Properties.Properties.NodeStateCounts.IdleNodeCount == 8, ""
	})
	const submitters = 16
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", Command: "true", ComputeID: "tput"}}
				if status, raw := s.request(context.Background(), "PUT", fmt.Sprintf("%s/jobs/t%06d", workspacePath, i), body); status != 201 {
					b.Errorf("submit: %d %s", status, raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	submitted := time.Since(t0)
	waitFor(b, 10*time.Minute, "all jobs to finish", func() (bool, string) {
		c := getCompute(b, s, "tput")
		p := c.Properties.Properties
		return p.QueuedJobCount == 0 && p.RunningJobCount == 0, fmt.Sprintf("queued %d running %d", p.QueuedJobCount, p.RunningJobCount)
	})
	elapsed := time.Since(t0)
	b.StopTimer()
	failed := 0
	for _, i := range []int{0, b.N / 2, b.N - 1} {
		if j := getJob(b, s, fmt.Sprintf("t%06d", i)); j.Properties.Status != api.JobCompleted {
			failed++
		}
	}
	if failed > 0 {
		b.Fatalf("%d sampled jobs did not complete", failed)
	}
	if os.Getenv("KUMO_BENCH_CPUPROFILE") != "" {
		_ = s.stop() // write the profile
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(float64(b.N)/submitted.Seconds(), "submits/s")
}
