package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{256 << 20, "256.0 MiB"},
		{5 << 30, "5.0 GiB"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestReportDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "files", "jobs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "files", "jobs", "log"), bytes.Repeat([]byte("x"), 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	var out bytes.Buffer
	reportDataDir(&out, dir, work)
	got := out.String()
	// Directories take a few blocks beside the 3 MiB file.
	if !strings.HasPrefix(got, "Data directory "+dir+" uses 3.0 MiB; jobs' work directory "+work+" uses ") || strings.Count(got, "\n") != 1 {
		t.Errorf("report = %q, want one line naming %s with about 3.0 MiB and %s", got, dir, work)
	}
}
