package jobuser

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ClaimsDir holds one file per uid that a kumo process on this host has
// claimed for its jobs, named for the uid and holding its owner (an
// absolute directory: a local provider's instance directory, a control
// plane's local-jobs directory). It is under /run, so claims end with the
// processes they guard when the host restarts.
const ClaimsDir = "/run/kumo/job-uids"

// ErrNoUID is returned by [Claim] when every uid of the range is held.
var ErrNoUID = errors.New("every job uid of the range is held")

// Claim takes a uid of r for owner's jobs and returns it: the lowest uid
// that used (owner's own bookkeeping) does not hold and that no other
// owner on this host has claimed, so that two control planes sharing a
// host, or a range, never give one uid to two jobs and never kill each
// other's processes. A claim of owner's that used does not hold is taken
// again, and so is the claim of an owner whose directory no longer exists.
// Whatever still runs as the uid is killed before it is returned.
//
// Claims are serialized host-wide with a lock file in [ClaimsDir]; Claim
// may block while another process claims or kills.
func Claim(r Range, owner string, used func(uid int) bool) (int, error) {
	unlock, err := lockClaims()
	if err != nil {
		return 0, err
	}
	defer unlock()
	for uid := r.First; uid <= r.Last; uid++ {
		if used(uid) {
			continue
		}
		path := filepath.Join(ClaimsDir, strconv.Itoa(uid))
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist), err == nil && (string(b) == owner || ownerGone(string(b))):
		case err != nil:
			return 0, fmt.Errorf("claim job uid: %w", err)
		default:
			continue // another owner's
		}
		if err := os.WriteFile(path, []byte(owner), 0o600); err != nil {
			return 0, fmt.Errorf("claim job uid: %w", err)
		}
		// The claim holds the uid; kill what still runs as it without
		// holding up other claims meanwhile.
		unlock()
		return uid, KillAll(uid)
	}
	return 0, fmt.Errorf("job uids %s: %w", r, ErrNoUID)
}

// ClaimBlock claims n consecutive uids of r for owner and returns them as
// a range, under the same rules as [Claim]: uids that another living owner
// claimed are passed over. A component given that range with the same
// owner (a provider's directory, say) then finds every uid its own. It is
// meant for tests that must not share uids with a second copy of
// themselves running beside them.
func ClaimBlock(r Range, n int, owner string) (Range, error) {
	unlock, err := lockClaims()
	if err != nil {
		return Range{}, err
	}
	defer unlock()
	free := func(uid int) (bool, error) {
		b, err := os.ReadFile(filepath.Join(ClaimsDir, strconv.Itoa(uid)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return true, nil
		case err != nil:
			return false, fmt.Errorf("claim job uids: %w", err)
		}
		return string(b) == owner || ownerGone(string(b)), nil
	}
next:
	for first := r.First; first+n-1 <= r.Last; first++ {
		for uid := first; uid < first+n; uid++ {
			ok, err := free(uid)
			if err != nil {
				return Range{}, err
			}
			if !ok {
				first = uid
				continue next
			}
		}
		for uid := first; uid < first+n; uid++ {
			if err := os.WriteFile(filepath.Join(ClaimsDir, strconv.Itoa(uid)), []byte(owner), 0o600); err != nil {
				return Range{}, fmt.Errorf("claim job uids: %w", err)
			}
		}
		unlock()
		for uid := first; uid < first+n; uid++ {
			if err := KillAll(uid); err != nil {
				return Range{}, err
			}
		}
		return Range{First: first, Last: first + n - 1}, nil
	}
	return Range{}, fmt.Errorf("job uids %s: %w", r, ErrNoUID)
}

// Release gives up owner's claim on uid; a claim held by another owner
// (or none) is left alone.
func Release(uid int, owner string) error {
	unlock, err := lockClaims()
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(ClaimsDir, strconv.Itoa(uid))
	if b, err := os.ReadFile(path); err != nil || string(b) != owner {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("release job uid: %w", err)
	}
	return nil
}

// ReleaseUnder gives up every claim whose owner is dir or lies below it:
// what a control plane that will not run again (a test's, say) left
// claimed. It returns how many it released.
func ReleaseUnder(dir string) (int, error) {
	unlock, err := lockClaims()
	if err != nil {
		return 0, err
	}
	defer unlock()
	ents, err := os.ReadDir(ClaimsDir)
	if err != nil {
		return 0, fmt.Errorf("release job uids: %w", err)
	}
	dir = filepath.Clean(dir)
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue // the lock file
		}
		path := filepath.Join(ClaimsDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if owner := string(b); owner == dir || strings.HasPrefix(owner, dir+string(filepath.Separator)) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, fmt.Errorf("release job uids: %w", err)
			}
			n++
		}
	}
	return n, nil
}

// ownerGone reports whether a claim's owner directory was removed: no
// kumo process runs jobs from it any more.
func ownerGone(owner string) bool {
	_, err := os.Stat(owner)
	return errors.Is(err, fs.ErrNotExist)
}

// lockClaims takes the host-wide claims lock and returns its release,
// which may be called more than once.
func lockClaims() (func(), error) {
	if err := os.MkdirAll(ClaimsDir, 0o700); err != nil {
		return nil, fmt.Errorf("job uid claims: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(ClaimsDir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("job uid claims: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("job uid claims: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}
