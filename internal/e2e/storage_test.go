package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

// TestJobLogLimit: a job printing 20 MiB under a 1 MiB log limit completes;
// its stored log is the limit plus one cut line, the job shows a warning,
// the log files where it runs (a node, or the control plane's host for
// compute local) stay within the limit while it runs, and the data and work
// directories grow by a few MiB, not by several copies of 20 MiB.
func TestJobLogLimit(t *testing.T) {
	const limit = 1 << 20
	for _, compute := range []string{"loud", "local"} {
		t.Run(compute, func(t *testing.T) {
			s := startServer(t, "", append(fastNodes, "--max-job-log-bytes", "1048576")...)
			if !strings.Contains(s.out.String(), "Data directory "+filepath.Join(s.dir, "data")+" uses ") {
				t.Errorf("kumo up output lacks the data directory's size:\n%s", s.out)
			}
			if compute != "local" {
				createCluster(t, s, compute, 0, 1, "PT30S")
			}
			gate := filepath.Join(s.dir, "go") // s.dir lets job users pass
			submitJob(t, s, "loud", compute, "echo start; head -c 20971520 /dev/zero | tr '\\0' a; echo; "+
				"while [ ! -e "+gate+" ]; do sleep 0.05; done; echo end >&2")

			var j api.JobResource
			waitFor(t, 60*time.Second, "the log to be cut", func() (bool, string) {
				j = getJob(t, s, "loud")
				return strings.Contains(jobLog(t, s, "loud"), "[kumo] log cut"), string(j.Properties.Status)
			})
			// While the job still runs, its log files where it runs hold the
			// limit and the cut line, not the 20 MiB it printed.
			var found []string
			for _, pattern := range []string{
				filepath.Join(s.dir, "*", "nodes", j.Properties.NodeID, "*jobs", j.Properties.RunID, "user_logs"),
				filepath.Join(s.dir, "*", "nodes", j.Properties.NodeID, "work", "jobs", j.Properties.RunID, "user_logs"),
				filepath.Join(s.dir, "*", "local*", j.Properties.RunID, "user_logs"),
			} {
				if m, _ := filepath.Glob(pattern); len(found) == 0 {
					found = m
				}
			}
			if len(found) != 1 {
				t.Fatalf("the job's log directory where it runs: found %q", found)
			}
			// Until the job has printed everything, the file being written
			// may hold one chunk more than that.
			waitFor(t, 30*time.Second, "the log files where the job runs to hold the limit and a cut line", func() (bool, string) {
				var sizes []int64
				ok := true
				for _, name := range []string{"std_log.txt", "stdout.txt", "stderr.txt"} {
					fi, err := os.Stat(filepath.Join(found[0], name))
					if errors.Is(err, fs.ErrNotExist) && name != "std_log.txt" {
						continue // the runner writes one file for its one pipe
					}
					if err != nil {
						t.Fatalf("log file where the job runs: %v", err)
					}
					sizes = append(sizes, fi.Size())
					ok = ok && fi.Size() <= limit+512
				}
				return ok, fmt.Sprintf("log file sizes %v", sizes)
			})
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}

			j = waitJob(t, s, "loud", 60*time.Second)
			if j.Properties.Status != api.JobCompleted {
				t.Fatalf("loud: %s %+v", j.Properties.Status, j.Properties.Error)
			}
			warned := false
			for _, w := range j.Properties.Warnings {
				warned = warned || strings.Contains(w, "log limit of 1048576 bytes")
			}
			if !warned {
				t.Errorf("warnings = %q, want one about the log limit", j.Properties.Warnings)
			}
			log := jobLog(t, s, "loud")
			if len(log) > limit+512 {
				t.Errorf("stored log holds %d bytes, want at most the limit %d and a cut line", len(log), limit)
			}
			if i := strings.Index(log, "[kumo] log cut"); i < 0 || strings.Count(log, "[kumo] log cut") != 1 || strings.Contains(log[i:], "end") {
				t.Errorf("stored log ends %q, want one cut line at its end", log[max(0, len(log)-300):])
			}
			if !strings.HasPrefix(log, "start\n") {
				t.Errorf("stored log starts %.20q, want the output before the cut", log)
			}
			// Before the limit, 20 MiB of output took about 80 MiB (stdout
			// and std_log where the job ran and on the control plane).
			if n := dirBytes(t, s.dir); n > 16<<20 {
				t.Errorf("data and work directories hold %d bytes after the job, want a few MiB", n)
			}
		})
	}
}

// dirBytes returns the size of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TestSnapshotCollected: with a short grace period, an uploaded snapshot no
// job uses is removed, one a running job uses is kept, and it goes once
// that job ends.
func TestSnapshotCollected(t *testing.T) {
	s := startServer(t, "", "--snapshot-grace", "1s")
	used, unused := uploadSnapshot(t, s), uploadSnapshot(t, s)
	gate := filepath.Join(s.dir, "go") // s.dir lets job users pass
	body := api.JobResource{Properties: &api.JobProperties{JobType: "Command", ComputeID: "local", CodeID: used,
		Command: "cat train.py; while [ ! -e " + gate + " ]; do sleep 0.05; done"}}
	if status, raw := s.request(context.Background(), "PUT", workspacePath+"/jobs/uses-code", body); status != 201 {
		t.Fatalf("submit: %d %s", status, raw)
	}
	snapshots := filepath.Join(s.dir, "data", "files", "snapshots")
	stored := func(id string) bool {
		_, err := os.Stat(filepath.Join(snapshots, id+".tar"))
		return err == nil
	}
	waitFor(t, 30*time.Second, "the unused snapshot to be removed", func() (bool, string) {
		return !stored(unused), "still stored"
	})
	if !stored(used) {
		t.Fatalf("the snapshot of a running job was removed")
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, s, "uses-code", 30*time.Second); j.Properties.Status != api.JobCompleted {
		t.Fatalf("job: %s %+v", j.Properties.Status, j.Properties.Error)
	}
	if log := jobLog(t, s, "uses-code"); !strings.Contains(log, "print('hi')") {
		t.Errorf("job log = %q, want the snapshot's train.py", log)
	}
	waitFor(t, 30*time.Second, "the ended job's snapshot to be removed", func() (bool, string) {
		return !stored(used), "still stored"
	})
}

// uploadSnapshot uploads a snapshot holding train.py and returns its ID.
func uploadSnapshot(t *testing.T, s *server) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	code := "print('hi')\n"
	tw.WriteHeader(&tar.Header{Name: "train.py", Mode: 0o644, Size: int64(len(code)), Typeflag: tar.TypeReg})
	tw.Write([]byte(code))
	tw.Close()
	req, err := http.NewRequest("POST", s.base+workspacePath+"/snapshots?api-version=2024-04-01", &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap api.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil || resp.StatusCode != 201 || snap.ID == "" {
		t.Fatalf("upload snapshot: %d %+v %v", resp.StatusCode, snap, err)
	}
	return snap.ID
}
