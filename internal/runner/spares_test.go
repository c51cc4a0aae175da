package runner

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSparesKeepOnlyPristineDirectories releases job directories in the
// states a job may leave them, and checks which one becomes the spare.
func TestSparesKeepOnlyPristineDirectories(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		kept  bool
	}{
		{"empty, 0700", func(*testing.T, string) {}, true},
		{"holds a file", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "left"), "x") }, false},
		{"holds a hidden directory", func(t *testing.T, dir string) { mkdir(t, filepath.Join(dir, ".cache")) }, false},
		{"mode 0755", func(t *testing.T, dir string) { chmod(t, dir, 0o755) }, false},
		{"setgid", func(t *testing.T, dir string) { chmod(t, dir, 0o700|fs.ModeSetgid) }, false},
		{"extended attribute", func(t *testing.T, dir string) {
			if err := unix.Setxattr(dir, "user.kumo-test", []byte("1"), 0); err != nil {
				t.Skipf("no user extended attributes here: %v", err)
			}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jobs := t.TempDir()
			sp, err := NewSpares(filepath.Join(jobs, ".spare"))
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(jobs, "a")
			if _, err := makeDir(dir, sp); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir)
			if err := sp.Release(dir); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("released directory still there (%v)", err)
			}
			_, err = os.Lstat(filepath.Join(jobs, ".spare"))
			if kept := err == nil; kept != tc.kept {
				t.Errorf("kept as the spare: %v, want %v", kept, tc.kept)
			}
			next := filepath.Join(jobs, "b")
			fresh, err := makeDir(next, sp)
			if err != nil || !fresh {
				t.Fatalf("makeDir = %v, %v; want a fresh directory", fresh, err)
			}
			if _, err := os.Lstat(filepath.Join(jobs, ".spare")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a spare is still there after the next job took a directory (%v)", err)
			}
			assertPristine(t, next)
		})
	}
}

// TestSparesTakenOnce checks that one spare serves one job: a second
// release while one is held removes its directory, and a job directory
// that already exists is not replaced.
func TestSparesTakenOnce(t *testing.T) {
	jobs := t.TempDir()
	sp, err := NewSpares(filepath.Join(jobs, ".spare"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(jobs, "a"), filepath.Join(jobs, "b")
	mkdirMode(t, a, 0o700)
	mkdirMode(t, b, 0o700)
	inoA := inode(t, a)
	for _, d := range []string{a, b} {
		if err := sp.Release(d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(b); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second released directory still there (%v)", err)
	}
	// An existing directory (a checkpoint restored into it) stays.
	c := filepath.Join(jobs, "c")
	mkdirMode(t, c, 0o700)
	write(t, filepath.Join(c, "checkpoint"), "x")
	if fresh, err := makeDir(c, sp); err != nil || fresh {
		t.Fatalf("makeDir of an existing directory = %v, %v; want it kept", fresh, err)
	}
	if _, err := os.Stat(filepath.Join(c, "checkpoint")); err != nil {
		t.Fatalf("existing job directory lost its files: %v", err)
	}
	// A job directory whose parent is missing is made as usual, and the
	// spare stays for the next one.
	deep := filepath.Join(jobs, "new", "f")
	if fresh, err := makeDir(deep, sp); err != nil || !fresh {
		t.Fatalf("makeDir(%s) = %v, %v", deep, fresh, err)
	}
	if inode(t, deep) == inoA {
		t.Errorf("the spare went where the job directory's parent was missing")
	}
	d := filepath.Join(jobs, "d")
	if fresh, err := makeDir(d, sp); err != nil || !fresh {
		t.Fatalf("makeDir = %v, %v", fresh, err)
	}
	if inode(t, d) != inoA {
		t.Errorf("the next job did not get the spare directory")
	}
	e := filepath.Join(jobs, "e")
	if fresh, err := makeDir(e, sp); err != nil || !fresh {
		t.Fatalf("makeDir = %v, %v", fresh, err)
	}
	if inode(t, e) == inoA {
		t.Errorf("one spare served two jobs")
	}
	// A restart finds the spare left and removes it.
	if err := sp.Release(d); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSpares(filepath.Join(jobs, ".spare")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(jobs, ".spare")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewSpares left the spare of an earlier run (%v)", err)
	}
}

// TestSpareServesJobUser runs jobs as a job user of their own (as root):
// a job that leaves nothing hands its directory on, and the next job finds
// it empty and its own; a job that leaves a file does not.
func TestSpareServesJobUser(t *testing.T) {
	u := sweepUID(t)
	jobs := reachableDir(t)
	sp, err := NewSpares(filepath.Join(jobs, ".spare"))
	if err != nil {
		t.Fatal(err)
	}
	// run runs a job and releases its directory; it returns the
	// directory's inode.
	run := func(name, command string) uint64 {
		t.Helper()
		dir := filepath.Join(jobs, name)
		res, err := Run(context.Background(), Spec{Dir: dir, Command: command, User: &u, Sweeper: NewSweeper(u.UID), Spares: sp})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("job %s: %+v, %v", name, res, err)
		}
		ino := inode(t, dir)
		if err := Reclaim(dir, &u); err != nil {
			t.Fatal(err)
		}
		if err := sp.Release(dir); err != nil {
			t.Fatal(err)
		}
		return ino
	}
	a := run("a", "true")
	if b := run("b", `test -z "$(ls -A)" && test -O . && touch left`); b != a {
		t.Errorf("the second job did not get the first one's directory")
	}
	run("c", `test -z "$(ls -A)" && test -O .`) // nothing of b's
}

func assertPristine(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 0 {
		t.Errorf("job directory holds %v (%v), want nothing", ents, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil || fi.Mode() != fs.ModeDir|0o700 {
		t.Errorf("job directory mode %v (%v), want drwx------", fi.Mode(), err)
	}
	if n, err := unix.Listxattr(dir, nil); err != nil || n != 0 {
		t.Errorf("job directory has %d bytes of extended attribute names (%v)", n, err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) { t.Helper(); mkdirMode(t, path, 0o755) }

func mkdirMode(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
