package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockFile is the file in the data directory that one control plane holds
// an exclusive flock on while it runs. It holds that control plane's pid
// and, once it serves, its address. The kernel drops the lock when the
// process ends, however it ends (kill -9 included); the file stays.
const lockFile = "kumo.lock"

// ErrLocked is returned by Run when another control plane holds the data
// directory.
var ErrLocked = errors.New("the data directory is in use by another kumo control plane")

// dataLock is a held lock on a data directory.
type dataLock struct {
	f *os.File
}

// lockDataDir takes the data directory's lock without waiting. When
// another process holds it, the error wraps ErrLocked and names that
// process as its lock file describes it.
func lockDataDir(dir string) (*dataLock, error) {
	path := filepath.Join(dir, lockFile)
	// O_CLOEXEC (Go's default) keeps the lock out of child processes, so
	// that jobs and local nodes never hold it after kumo ends.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "a process that has not written its pid yet"
			}
			return nil, fmt.Errorf("%w (%s): %s; stop it first, or use another --data-dir", ErrLocked, path, who)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l := &dataLock{f: f}
	if err := l.describe("starting"); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

// describe records who holds the lock: this pid and what it is doing.
func (l *dataLock) describe(doing string) error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	if _, err := l.f.WriteAt([]byte(fmt.Sprintf("pid %d %s\n", os.Getpid(), doing)), 0); err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	return nil
}

// release drops the lock. The file stays: removing it would let a third
// process lock a new file while a second still waits on the old one.
func (l *dataLock) release() {
	_ = l.f.Truncate(0)
	l.f.Close()
}
