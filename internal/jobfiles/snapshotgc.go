package jobfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Snapshot is a stored code snapshot.
type Snapshot struct {
	ID     string
	Size   int64     // bytes of its tar
	Stored time.Time // when its upload finished
}

// SnapshotList returns the stored snapshots in no particular order;
// uploads still being received are not listed.
func (f *Files) SnapshotList() ([]Snapshot, error) {
	entries, err := os.ReadDir(filepath.Join(f.root, "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Snapshot
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".tar")
		if !ok || !e.Type().IsRegular() || !idRE.MatchString(id) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		out = append(out, Snapshot{ID: id, Size: fi.Size(), Stored: fi.ModTime()})
	}
	return out, nil
}

// SnapshotRemove removes a stored snapshot; removing one that is not there
// is not an error.
func (f *Files) SnapshotRemove(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("remove snapshot: invalid ID %q", id)
	}
	err := os.Remove(filepath.Join(f.root, "snapshots", id+".tar"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	return nil
}
