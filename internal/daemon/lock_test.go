package daemon

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestDataDirLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.describe("serving on https://127.0.0.1:1234"); err != nil {
		t.Fatal(err)
	}
	// flock conflicts between open files, even within one process.
	_, err = lockDataDir(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock error = %v, want ErrLocked", err)
	}
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "https://127.0.0.1:1234"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name the holder (%q)", err, want)
		}
	}
	first.release()
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.release()
}

func TestLimitsDefaults(t *testing.T) {
	tests := []struct {
		name   string
		nofile uint64
		want   int
	}{
		{"unknown open-file limit", 0, 8192},
		{"high limit", 1 << 20, 8192},
		{"low limit leaves a reserve", 1024, 1024 - fileReserve},
		{"tiny limit keeps a floor", 100, 64},
	}
	for _, tt := range tests {
		if got := (Limits{}).withDefaults(tt.nofile).MaxConns; got != tt.want {
			t.Errorf("%s: MaxConns = %d, want %d", tt.name, got, tt.want)
		}
	}
	if got := (Limits{MaxConns: 10}).withDefaults(1024).MaxConns; got != 10 {
		t.Errorf("a set MaxConns became %d", got)
	}
}
