package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"kumo/internal/jobuser"
	"kumo/internal/jobuser/jobusertest"
)

// BenchmarkSpawnShell measures this host's ceiling for job processes: a
// bare `/bin/sh -c true` started and waited for from Go, in its own process
// group, with as many in flight as GOMAXPROCS×4. No kumo code runs; kumo's
// jobs per second cannot exceed 1e9 / ns/op of this benchmark.
func BenchmarkSpawnShell(b *testing.B) {
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cmd := exec.Command("/bin/sh", "-c", "true")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Run(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRunTrivial measures one trivial job through the runner as a
// node runs it: a fresh job directory, the process group, the output pipe,
// the wait, and the directory's removal afterwards.
func BenchmarkRunTrivial(b *testing.B) {
	benchRun(b, nil, nil)
}

// BenchmarkRunTrivialAsUser is BenchmarkRunTrivial with the job running as
// a job user of its own (as root only), its leftovers swept as a node
// agent sweeps them ([NewSweeper]).
func BenchmarkRunTrivialAsUser(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("jobs run as their own users only as root")
	}
	u := jobusertest.User(b)
	benchRun(b, &u, NewSweeper(u.UID))
}

func benchRun(b *testing.B, u *jobuser.User, sw *Sweeper) {
	parent := reachableDir(b)
	b.ResetTimer()
	cpu0 := selfCPU(b)
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(parent, strconv.Itoa(i))
		if _, err := Run(context.Background(), Spec{Dir: dir, Command: "true", User: u, Sweeper: sw}); err != nil {
			b.Fatal(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((selfCPU(b)-cpu0).Microseconds())/float64(b.N), "self-cpu-us/op")
}

// selfCPU is the CPU time this process has used, its children not
// counted: the runner's own share of a job.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
