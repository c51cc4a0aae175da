package snapshotgc

import (
	"archive/tar"
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wsID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"

type env struct {
	st    *sqlite.Store
	files *jobfiles.Files
	dir   string // the files' root
	now   time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "kumo.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	files, err := jobfiles.New(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, files: files, dir: filepath.Join(dir, "files"), now: time.Now()}
}

// snapshot uploads a one-file snapshot and dates its upload age before now.
func (e *env) snapshot(t *testing.T, id string, age time.Duration) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "train.py", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("print"))
	tw.Close()
	if _, err := e.files.SaveSnapshot(id, &buf); err != nil {
		t.Fatalf("SaveSnapshot(%s): %v", id, err)
	}
	at := e.now.Add(-age)
	if err := os.Chtimes(filepath.Join(e.dir, "snapshots", id+".tar"), at, at); err != nil {
		t.Fatal(err)
	}
}

func (e *env) job(t *testing.T, name, snapshot string, status model.JobStatus, seq int64) {
	t.Helper()
	j := model.Job{ID: wsID + "/jobs/" + name, WorkspaceID: wsID, Name: name, RunID: "run-" + name,
		ComputeID: wsID + "/computes/cpu", Command: "python train.py", InstanceCount: 1, Status: status,
		SnapshotID: snapshot, Seq: seq, CreatedAt: e.now}
	if err := e.st.JobCreate(t.Context(), j); err != nil {
		t.Fatalf("JobCreate(%s): %v", name, err)
	}
}

// stored returns the IDs of the snapshots on disk, sorted.
func (e *env) stored(t *testing.T) []string {
	t.Helper()
	snaps, err := e.files.SnapshotList()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

func (e *env) collector() *Collector {
	return New(Config{Store: e.st, Snapshots: e.files, Grace: time.Hour, Now: func() time.Time { return e.now },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func TestReconcile(t *testing.T) {
	e := newEnv(t)
	e.snapshot(t, "unused-old", 2*time.Hour)
	e.snapshot(t, "unused-new", 10*time.Minute) // uploaded, job not yet created
	e.snapshot(t, "queued-old", 2*time.Hour)
	e.snapshot(t, "running-old", 2*time.Hour)
	e.snapshot(t, "finished-old", 2*time.Hour)
	e.snapshot(t, "shared-old", 2*time.Hour)
	e.job(t, "q", "queued-old", model.JobQueued, 1)
	e.job(t, "r", "running-old", model.JobRunning, 2)
	e.job(t, "f", "finished-old", model.JobCompleted, 3)
	e.job(t, "s1", "shared-old", model.JobFailed, 4)
	e.job(t, "s2", "shared-old", model.JobPreparing, 5)
	e.job(t, "nocode", "", model.JobQueued, 6)

	c := e.collector()
	removed, err := c.Reconcile(t.Context())
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	slices.Sort(removed)
	if diff := cmp.Diff([]string{"finished-old", "unused-old"}, removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"queued-old", "running-old", "shared-old", "unused-new"}, e.stored(t)); diff != "" {
		t.Errorf("left on disk (-want +got):\n%s", diff)
	}

	// When the queued job ends, the next pass removes its snapshot; a
	// second pass changes nothing.
	if err := store.JobChange(t.Context(), e.st, "run-q", func(j *model.Job) bool {
		j.Status = model.JobCanceled
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for pass, want := range [][]string{{"queued-old"}, nil} {
		removed, err := c.Reconcile(t.Context())
		if err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if diff := cmp.Diff(want, removed); diff != "" {
			t.Errorf("pass %d removed (-want +got):\n%s", pass, diff)
		}
	}
	if diff := cmp.Diff([]string{"running-old", "shared-old", "unused-new"}, e.stored(t)); diff != "" {
		t.Errorf("left on disk (-want +got):\n%s", diff)
	}
}

// TestStartStop runs the loop: its first pass removes an old unused
// snapshot, and Stop ends its goroutine.
func TestStartStop(t *testing.T) {
	e := newEnv(t)
	e.snapshot(t, "old", 2*time.Hour)
	c := e.collector()
	c.Start(t.Context())
	deadline := time.Now().Add(10 * time.Second)
	for len(e.stored(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot still stored: %v", e.stored(t))
		}
		time.Sleep(5 * time.Millisecond) // the pass gives no signal; poll the disk
	}
	c.Stop()
}
