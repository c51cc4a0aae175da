package runner

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
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

// BenchmarkRunTrivial measures one trivial job through the runner: job
// directory, log files, process group, output pipes and wait.
func BenchmarkRunTrivial(b *testing.B) {
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Run(context.Background(), Spec{Dir: dir, Command: "true"}); err != nil {
			b.Fatal(err)
		}
	}
}
