package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// reportLatency sorts lat and reports its p50 and p99 as prefix+"p50-ms"
// and prefix+"p99-ms", and its maximum as prefix+"max-ms" when withMax.
func reportLatency(b *testing.B, prefix string, lat []time.Duration, withMax bool) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(ms(percentile(lat, 50)), prefix+"p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), prefix+"p99-ms")
	if withMax {
		b.ReportMetric(ms(lat[len(lat)-1]), prefix+"max-ms")
	}
}

// benchNodeReady runs b.N trivial jobs, named prefix and a number, one at
// a time on a cluster that starts at 0 nodes each time. run submits one
// job, waits for its end and returns when its process started; reset
// waits until the cluster is back at 0 (untimed). It reports the time from
// submission to start.
func benchNodeReady(b *testing.B, prefix string, run func(name string) time.Time, reset func()) {
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		lat = append(lat, run(fmt.Sprintf("%s%04d", prefix, i)).Sub(t0))
		b.StopTimer()
		reset()
		b.StartTimer()
	}
	b.StopTimer()
	reportLatency(b, "", lat, true)
}

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
	reportLatency(b, "", lat, true)
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
	agents := nodeAgentPIDs(b, s.dir)
	if len(agents) != 8 {
		b.Fatalf("found %d node agent processes, want 8", len(agents))
	}
	const submitters = 16
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := readCPU(b, s.cmd.Process.Pid, agents)
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
	// Jobs start in submission order, so the last one submitted ends among
	// the last. It is polled every 250 ms (a queued job's GET counts the
	// jobs ahead of it), then the compute's counts confirm; the time taken
	// is the latest end among the last jobs submitted, which the polling
	// does not delay.
	last := fmt.Sprintf("t%06d", b.N-1)
	waitEvery(b, 250*time.Millisecond, 10*time.Minute, "job "+last+" to end", func() (bool, string) {
		st := getJob(b, s, last).Properties.Status
		return st.Terminal(), string(st)
	})
	waitFor(b, time.Minute, "all jobs to finish", func() (bool, string) {
		c := getCompute(b, s, "tput")
		p := c.Properties.Properties
		return p.QueuedJobCount == 0 && p.RunningJobCount == 0, fmt.Sprintf("queued %d running %d", p.QueuedJobCount, p.RunningJobCount)
	})
	cpu := readCPU(b, s.cmd.Process.Pid, agents).sub(cpu0)
	var end time.Time
	for i := max(0, b.N-64); i < b.N; i++ {
		j := getJob(b, s, fmt.Sprintf("t%06d", i))
		t, err := time.Parse(api.TimeFormat, j.Properties.EndTime)
		if err != nil {
			b.Fatalf("job %d end time %q: %v", i, j.Properties.EndTime, err)
		}
		if t.After(end) {
			end = t
		}
	}
	elapsed := end.Sub(t0)
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
	perJob := func(d time.Duration) float64 { return ms(d) / float64(b.N) }
	b.ReportMetric(perJob(cpu.server), "cp-cpu-ms/job")
	b.ReportMetric(perJob(cpu.agents), "agent-cpu-ms/job")
	b.ReportMetric(perJob(cpu.jobs), "jobproc-cpu-ms/job")
}

// cpuTimes is CPU time spent, read from /proc/<pid>/stat.
type cpuTimes struct {
	server time.Duration // the kumo up process (utime+stime, all its threads)
	agents time.Duration // the node agents (utime+stime)
	jobs   time.Duration // the agents' reaped children: the job processes (cutime+cstime)
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{server: c.server - o.server, agents: c.agents - o.agents, jobs: c.jobs - o.jobs}
}

// readCPU reads the CPU times of the control plane and the node agents.
// A job process counts in its agent's cutime and cstime once the agent has
// waited for it, with whatever it waited for in turn; every job of the
// benchmark has ended, and been waited for, when this is read.
func readCPU(b *testing.B, server int, agents []int) cpuTimes {
	b.Helper()
	var c cpuTimes
	f := cpuStat(b, server)
	c.server = f[0] + f[1]
	for _, pid := range agents {
		f := cpuStat(b, pid)
		c.agents += f[0] + f[1]
		c.jobs += f[2] + f[3]
	}
	return c
}

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuStat returns utime, stime, cutime and cstime of pid.
func cpuStat(b *testing.B, pid int) [4]time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("process %d: %v", pid, err)
	}
	// Fields after the command name start at field 3 (state); utime is 14.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	var t [4]time.Duration
	for i := range t {
		n, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			b.Fatalf("process %d stat: %v", pid, err)
		}
		t[i] = time.Duration(n) * clockTick
	}
	return t
}

// nodeAgentPIDs returns the pids of the live node agents whose records
// (instance.json of the local provider) lie under dir.
func nodeAgentPIDs(b *testing.B, dir string) []int {
	b.Helper()
	var pids []int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "instance.json" {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var rec struct {
			PID int `json:"pid"`
		}
		if json.Unmarshal(raw, &rec) == nil && rec.PID > 0 && syscall.Kill(rec.PID, 0) == nil {
			pids = append(pids, rec.PID)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return pids
}
