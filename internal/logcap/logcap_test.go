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
	tests := []struct {
		name       string
		command    string
		wantCut    bool
		wantStdout string // "" to skip; else the file's content before any cut line
		wantStderr string
	}{
		{name: "under the limit", command: "printf out; printf err >&2", wantStdout: "out", wantStderr: "err"},
		// stderr comes once stdout has passed the limit: it is dropped.
		{name: "far past the limit", command: "head -c 5000000 /dev/zero | tr '\\0' a; printf late >&2", wantCut: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, passed := run(t, limit, tt.command)
			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			stdout, stderr, stdLog := read(runner.StdoutFile), read(runner.StderrFile), read(runner.StdLogFile)
			if tt.wantStderr != stderr {
				t.Errorf("stderr = %q, want %q", stderr, tt.wantStderr)
			}
			if !tt.wantCut {
				if stdout != tt.wantStdout || passed != int64(len(stdout)+len(stderr)) {
					t.Errorf("stdout = %q, passed %d; want %q, all passed", stdout, passed, tt.wantStdout)
				}
				return
			}
			line := jobfiles.CutLine("stdout", limit, limit)
			if want := strings.Repeat("a", limit) + "\n" + line; stdout != want {
				t.Errorf("stdout holds %d bytes ending %q, want %d ending with the cut line", len(stdout), stdout[max(0, len(stdout)-40):], len(want))
			}
			if !strings.HasSuffix(stdLog, "\n"+line) || len(stdLog) != limit+1+len(line) {
				t.Errorf("std_log holds %d bytes ending %q, want %d ending with the cut line", len(stdLog), stdLog[max(0, len(stdLog)-40):], limit+1+len(line))
			}
			// The chunk that passes the limit is passed on whole, nothing
			// after it.
			if passed <= limit || passed > limit+64<<10 {
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
