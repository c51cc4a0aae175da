package logcap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kumo/internal/jobfiles"
	"kumo/internal/runner"
)

// run runs command with the runner in a fresh job directory under a Cap of
// limit, and returns the directory and the bytes of output passed on.
func run(t *testing.T, limit int64, command string) (dir string, passed int64) {
	t.Helper()
	dir = t.TempDir()
	c := New(dir, limit)
	res, err := runner.Run(t.Context(), runner.Spec{Dir: dir, Command: command, Output: func(ch runner.Chunk) {
		pass, err := c.Chunk(ch)
		if err != nil {
			t.Logf("Chunk: %v", err)
		}
		if pass {
			passed += int64(len(ch.Data))
		}
	}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run %q: %+v, %v", command, res, err)
	}
	return dir, passed
}

func TestCap(t *testing.T) {
	const limit = 64 << 10
	line := jobfiles.CutLine("stdout", limit, limit)
	tests := []struct {
		name       string
		command    string
		wantLog    string // std_log.txt
		wantPassed int64  // -1: just over the limit (the passing chunk whole, nothing after)
	}{
		{name: "under the limit", command: "printf out; printf err >&2", wantLog: "outerr", wantPassed: 6},
		{name: "exactly the limit", command: "head -c 65536 /dev/zero | tr '\\0' a", wantLog: strings.Repeat("a", limit), wantPassed: limit},
		{name: "far past the limit", command: "head -c 5000000 /dev/zero | tr '\\0' a; echo late >&2",
			wantLog: strings.Repeat("a", limit) + "\n" + line, wantPassed: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, passed := run(t, limit, tt.command)
			b, err := os.ReadFile(filepath.Join(dir, runner.StdLogFile))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b); got != tt.wantLog {
				t.Errorf("std_log holds %d bytes ending %q, want %d ending %q", len(got), got[max(0, len(got)-40):], len(tt.wantLog), tt.wantLog[max(0, len(tt.wantLog)-40):])
			}
			switch {
			case tt.wantPassed >= 0 && passed != tt.wantPassed:
				t.Errorf("passed on %d bytes, want %d", passed, tt.wantPassed)
			case tt.wantPassed < 0 && (passed <= limit || passed > limit+64<<10):
				t.Errorf("passed on %d bytes, want just over the limit %d", passed, limit)
			}
		})
	}
}

// TestCapFollowsNoLinks: a job that replaces its log files with links to
// another file before passing the limit does not get that file cut.
func TestCapFollowsNoLinks(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	want := strings.Repeat("keep me\n", 1000)
	if err := os.WriteFile(victim, []byte(want), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, 1000, "for f in stdout stderr std_log; do ln -sf "+victim+" user_logs/$f.txt; done; head -c 100000 /dev/zero | tr '\\0' a")
	if got, err := os.ReadFile(victim); err != nil || string(got) != want {
		t.Errorf("the linked file holds %d bytes (%v), want its %d bytes untouched", len(got), err, len(want))
	}
}
