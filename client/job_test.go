package client

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
)

// readTar returns the entries of a tar stream as name → content, with
// directories as name → "<dir>" and the mode of each entry.
func readTar(t *testing.T, r io.Reader) (map[string]string, map[string]int64) {
	t.Helper()
	files, modes := map[string]string{}, map[string]int64{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, modes
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		b, _ := io.ReadAll(tr)
		if hdr.Typeflag == tar.TypeDir {
			files[hdr.Name] = "<dir>"
		} else {
			files[hdr.Name] = string(b)
		}
		modes[hdr.Name] = hdr.Mode
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func TestUploadSnapshotTar(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	writeFile(t, outside, "do not send", 0o600)
	writeFile(t, filepath.Join(dir, "train.py"), "print('hi')\n", 0o644)
	writeFile(t, filepath.Join(dir, "sub", "run.sh"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(dir, ".git", "config"), "[core]\n", 0o644)
	writeFile(t, filepath.Join(dir, "sub", ".git", "HEAD"), "ref\n", 0o644)
	for link, target := range map[string]string{
		"inside":  "train.py",       // a file inside: copied
		"outside": outside,          // points outside: skipped
		"subdir":  "sub",            // a directory: skipped
		"broken":  "does-not-exist", // dangling: skipped
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}

	f := newFakeARM(t)
	var gotFiles map[string]string
	var gotModes map[string]int64
	var gotType string
	f.mux.HandleFunc("POST "+testWS+"/snapshots", func(w http.ResponseWriter, r *http.Request) {
		gotType = r.Header.Get("Content-Type")
		gotFiles, gotModes = readTar(t, r.Body)
		writeJSON(w, http.StatusCreated, api.Snapshot{ID: "snap-1", SizeBytes: 42})
	})
	snap, err := f.workspace().UploadSnapshot(context.Background(), dir)
	if err != nil {
		t.Fatalf("UploadSnapshot: %v", err)
	}
	if snap.ID != "snap-1" || snap.SizeBytes != 42 {
		t.Errorf("snapshot = %+v, want snap-1 of 42 bytes", snap)
	}
	if gotType != "application/x-tar" {
		t.Errorf("Content-Type = %q, want application/x-tar", gotType)
	}
	want := map[string]string{
		"inside":     "print('hi')\n",
		"sub/":       "<dir>",
		"sub/run.sh": "#!/bin/sh\n",
		"train.py":   "print('hi')\n",
	}
	if diff := cmp.Diff(want, gotFiles); diff != "" {
		t.Errorf("snapshot entries (-want +got):\n%s", diff)
	}
	if gotModes["sub/run.sh"] != 0o755 {
		t.Errorf("mode of sub/run.sh = %o, want 755", gotModes["sub/run.sh"])
	}
}

func TestUploadSnapshotRefusesBigDirectory(t *testing.T) {
	dir := t.TempDir()
	big, err := os.Create(filepath.Join(dir, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: nothing is written to disk.
	if err := big.Truncate(MaxSnapshotBytes + 1); err != nil {
		t.Fatal(err)
	}
	big.Close()
	f := newFakeARM(t)
	_, err = f.workspace().UploadSnapshot(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "100 MiB") {
		t.Errorf("UploadSnapshot of a 100 MiB + 1 directory: err = %v, want one naming the 100 MiB limit", err)
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("requests = %v, want none", reqs)
	}
	if _, err := f.workspace().UploadSnapshot(context.Background(), filepath.Join(dir, "data.bin")); err == nil {
		t.Error("UploadSnapshot of a file: got nil error")
	}
}

func TestSubmitJobBody(t *testing.T) {
	code := t.TempDir()
	writeFile(t, filepath.Join(code, "train.py"), "pass\n", 0o644)
	f := newFakeARM(t)
	f.mux.HandleFunc("POST "+testWS+"/snapshots", func(w http.ResponseWriter, r *http.Request) {
		files, _ := readTar(t, r.Body)
		if files["train.py"] != "pass\n" {
			t.Errorf("snapshot entries = %v, want train.py", files)
		}
		writeJSON(w, http.StatusCreated, api.Snapshot{ID: "snap-7", SizeBytes: 2048})
	})
	var got api.JobResource
	f.mux.HandleFunc("PUT "+testWS+"/jobs/train-1", func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("decode PUT body: %v", err)
		}
		res := got
		p := *got.Properties
		p.Status = api.JobQueued
		res.Name, res.Properties = "train-1", &p
		writeJSON(w, http.StatusCreated, res)
	})
	job, err := f.workspace().SubmitJob(context.Background(), "train-1", CommandJob{
		Command:        "python train.py --epochs ${{inputs.epochs}} --lr ${{inputs.lr}}",
		CodeDir:        code,
		Compute:        "azureml:gpu-cluster",
		Environment:    "azureml:AzureML-pytorch:6",
		Env:            map[string]string{"SEED": "1"},
		Inputs:         map[string]string{"epochs": "3", "lr": "0.01"},
		Outputs:        map[string]api.JobOutput{"model": {}, "ckpt": {Mode: "upload"}, "logs": {JobOutputType: "uri_folder", Mode: "rw_mount"}},
		InstanceCount:  2,
		Distribution:   &api.Distribution{DistributionType: "pytorch", ProcessCountPerInstance: 2},
		Timeout:        90*time.Minute + 500*time.Millisecond,
		DisplayName:    "train",
		ExperimentName: "cifar",
	})
	if err != nil {
		t.Fatalf("SubmitJob: %v", err)
	}
	want := api.JobResource{Properties: &api.JobProperties{
		JobType:              "Command",
		Command:              "python train.py --epochs ${{inputs.epochs}} --lr ${{inputs.lr}}",
		CodeID:               "snap-7",
		ComputeID:            "azureml:gpu-cluster",
		EnvironmentID:        "azureml:AzureML-pytorch:6",
		EnvironmentVariables: map[string]string{"SEED": "1"},
		Inputs: map[string]*api.JobInput{
			"epochs": {JobInputType: "literal", Value: "3"},
			"lr":     {JobInputType: "literal", Value: "0.01"},
		},
		Outputs: map[string]*api.JobOutput{
			"model": {JobOutputType: "uri_folder"},
			"ckpt":  {JobOutputType: "uri_folder", Mode: "Upload"},
			"logs":  {JobOutputType: "uri_folder", Mode: "ReadWriteMount"},
		},
		Resources:      &api.JobResourceConfig{InstanceCount: 2},
		Distribution:   &api.Distribution{DistributionType: "PyTorch", ProcessCountPerInstance: 2},
		Limits:         &api.CommandJobLimits{JobLimitsType: "Command", Timeout: "PT1H30M1S"},
		DisplayName:    "train",
		ExperimentName: "cifar",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PUT body (-want +got):\n%s", diff)
	}
	if job.Name() != "train-1" || job.Status() != api.JobQueued {
		t.Errorf("job = %s %s, want train-1 Queued", job.Name(), job.Status())
	}
	if reqs := f.requests(); len(reqs) != 2 || !strings.HasPrefix(reqs[0], "POST") {
		t.Errorf("requests = %v, want the snapshot upload then the PUT", reqs)
	}
}

func TestSubmitJobNameAndErrors(t *testing.T) {
	f := newFakeARM(t)
	var putPath string
	f.mux.HandleFunc("PUT "+testWS+"/jobs/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "taken" {
			armError(http.StatusConflict, "Conflict", "job taken exists")(w, r)
			return
		}
		putPath = r.URL.Path
		writeJSON(w, http.StatusCreated, api.JobResource{Name: r.PathValue("name"), Properties: &api.JobProperties{Status: api.JobQueued}})
	})
	ws := f.workspace()
	ctx := context.Background()
	job, err := ws.SubmitJob(ctx, "", CommandJob{Command: "true", Compute: "local"})
	if err != nil {
		t.Fatalf("SubmitJob: %v", err)
	}
	if !regexp.MustCompile(`^[a-z]+_[a-z]+_[0-9a-z]{6}$`).MatchString(job.Name()) || !strings.HasSuffix(putPath, "/jobs/"+job.Name()) {
		t.Errorf("generated name %q (PUT %s), want one like quiet_apple_3kx9q2", job.Name(), putPath)
	}
	if _, err := ws.SubmitJob(ctx, "taken", CommandJob{Command: "true", Compute: "local"}); !errors.Is(err, ErrJobExists) {
		t.Errorf("SubmitJob of a taken name: err = %v, want ErrJobExists", err)
	}
	for _, bad := range []CommandJob{
		{Compute: "local"},
		{Command: "true"},
		{Command: "true", Compute: "local", Distribution: &api.Distribution{DistributionType: "horovod"}},
		{Command: "true", Compute: "local", CodeDir: filepath.Join(t.TempDir(), "missing")},
	} {
		if _, err := ws.SubmitJob(ctx, "x", bad); err == nil {
			t.Errorf("SubmitJob(%+v): got nil error", bad)
		}
	}
}

func TestJobNotFound(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/jobs/nope", armError(http.StatusNotFound, api.CodeResourceNotFound, "no job nope"))
	_, err := f.workspace().Job(context.Background(), "nope")
	if !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Job(nope): err = %v, want ErrJobNotFound", err)
	}
}

func TestJobsFollowsNextLink(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/jobs", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "" {
			writeJSON(w, http.StatusOK, api.JobList{
				Value:    []api.JobResource{{Name: "a"}},
				NextLink: f.srv.URL + testWS + "/jobs?page=2",
			})
			return
		}
		writeJSON(w, http.StatusOK, api.JobList{Value: []api.JobResource{{Name: "b"}}})
	})
	jobs, err := f.workspace().Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, j.Name())
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("Jobs (-want +got):\n%s", diff)
	}
}

func TestListJobs(t *testing.T) {
	tests := []struct {
		name      string
		opts      JobListOptions
		wantQuery string // of the first request, without api-version
		wantNames []string
		wantPages int
	}{
		{name: "no filter", wantNames: []string{"a", "b", "c", "d"}, wantPages: 2},
		{name: "filters", opts: JobListOptions{Compute: "azureml:gpu", Statuses: []api.JobStatus{api.JobQueued, api.JobRunning}},
			wantQuery: "compute=azureml%3Agpu&status=Queued%2CRunning", wantNames: []string{"a", "b", "c", "d"}, wantPages: 2},
		{name: "max within the first page", opts: JobListOptions{Max: 1}, wantQuery: "%24top=1", wantNames: []string{"a"}, wantPages: 1},
		{name: "max across pages", opts: JobListOptions{Max: 3}, wantQuery: "%24top=3", wantNames: []string{"a", "b", "c"}, wantPages: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeARM(t)
			var queries []string
			f.mux.HandleFunc("GET "+testWS+"/jobs", func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				q.Del("api-version")
				queries = append(queries, q.Encode())
				if q.Get("page") == "" {
					writeJSON(w, http.StatusOK, api.JobList{
						Value:    []api.JobResource{{Name: "a"}, {Name: "b"}},
						NextLink: f.srv.URL + testWS + "/jobs?page=2",
					})
					return
				}
				writeJSON(w, http.StatusOK, api.JobList{Value: []api.JobResource{{Name: "c"}, {Name: "d"}}})
			})
			jobs, err := f.workspace().ListJobs(context.Background(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, j := range jobs {
				got = append(got, j.Name())
			}
			if diff := cmp.Diff(tt.wantNames, got); diff != "" {
				t.Errorf("ListJobs (-want +got):\n%s", diff)
			}
			if len(queries) != tt.wantPages || queries[0] != tt.wantQuery {
				t.Errorf("requests %q, want %d starting with %q", queries, tt.wantPages, tt.wantQuery)
			}
		})
	}
	if _, err := newFakeARM(t).workspace().ListJobs(context.Background(), JobListOptions{Max: -1}); err == nil {
		t.Error("ListJobs with a negative Max: nil error")
	}
}

func jobIn(status api.JobStatus, exit *int, e *api.ErrorDetail) api.JobResource {
	return api.JobResource{Name: "j", Properties: &api.JobProperties{Status: status, ExitCode: exit, Error: e}}
}

func TestWaitOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		statuses []api.JobResource
		wantIs   error  // nil: Wait returns nil
		wantMsg  string // substring of the error
		wantGets int
	}{
		{"completed", []api.JobResource{jobIn(api.JobQueued, nil, nil), jobIn(api.JobRunning, nil, nil), jobIn(api.JobCompleted, ptr(0), nil)}, nil, "", 3},
		{"failed", []api.JobResource{jobIn(api.JobRunning, nil, nil), jobIn(api.JobFailed, ptr(2), &api.ErrorDetail{Code: "UserError", Message: "the command exited with code 2"})},
			ErrJobFailed, "job j Failed: UserError: the command exited with code 2", 2},
		{"failed without detail", []api.JobResource{jobIn(api.JobFailed, ptr(2), nil)}, ErrJobFailed, "job j Failed (exit code 2)", 1},
		{"canceled", []api.JobResource{jobIn(api.JobCanceled, nil, &api.ErrorDetail{Code: "Canceled", Message: "canceled by user"})},
			ErrJobCanceled, "job j Canceled: Canceled: canceled by user", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeARM(t)
			seq := &sequence[api.JobResource]{vals: tt.statuses}
			f.mux.HandleFunc("GET "+testWS+"/jobs/j", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, seq.next())
			})
			job := &Job{ws: f.workspace(), name: "j"}
			err := job.Wait(context.Background())
			switch {
			case tt.wantIs == nil && err != nil:
				t.Errorf("Wait = %v, want nil", err)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Errorf("Wait = %v, want an error matching %v", err, tt.wantIs)
			case tt.wantIs != nil && err.Error() != tt.wantMsg:
				t.Errorf("Wait error = %q, want %q", err, tt.wantMsg)
			}
			if n := len(f.requests()); n != tt.wantGets {
				t.Errorf("made %d requests, want %d", n, tt.wantGets)
			}
		})
	}
}

func TestWaitStopsWithContext(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/jobs/j", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, jobIn(api.JobQueued, nil, nil))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	job := &Job{ws: f.workspace(), name: "j"}
	if err := job.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait = %v, want DeadlineExceeded", err)
	}
}

// logServer serves a job's log in the scripted pieces of a test: answer i
// sends parts[i] from the requested offset and then either breaks the
// connection or ends cleanly.
type logServer struct {
	mu      sync.Mutex
	log     string
	answers []logAnswer
	offsets []string // "offset/follow" of each request
}

type logAnswer struct {
	upTo  int  // send the log up to this byte
	abort bool // then break the connection instead of ending
}

func (s *logServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	q := r.URL.Query()
	s.offsets = append(s.offsets, q.Get("offset")+"/"+q.Get("follow"))
	a := logAnswer{upTo: len(s.log)}
	if len(s.answers) > 0 {
		a, s.answers = s.answers[0], s.answers[1:]
	}
	s.mu.Unlock()
	off, _ := strconv.Atoi(q.Get("offset"))
	w.Header().Set("Content-Type", "text/plain")
	if off < a.upTo {
		_, _ = io.WriteString(w, s.log[off:a.upTo])
	}
	w.(http.Flusher).Flush()
	if a.abort {
		panic(http.ErrAbortHandler) // the client sees the chunked body break off
	}
}

func TestStreamLogsFollowResumes(t *testing.T) {
	f := newFakeARM(t)
	logs := &logServer{
		log: "epoch 1\nepoch 2\ndone\n",
		answers: []logAnswer{
			{upTo: 5, abort: true},   // "epoch" then the connection breaks
			{upTo: 16, abort: false}, // " 1\nepoch 2\n" then a clean end while the job still runs
			{upTo: 21, abort: false}, // "done\n", the job has completed
		},
	}
	f.mux.Handle("GET "+testWS+"/jobs/j/logs", logs)
	seq := &sequence[api.JobResource]{vals: []api.JobResource{jobIn(api.JobRunning, nil, nil), jobIn(api.JobCompleted, ptr(0), nil)}}
	f.mux.HandleFunc("GET "+testWS+"/jobs/j", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, seq.next())
	})
	job := &Job{ws: f.workspace(), name: "j"}
	var out bytes.Buffer
	if err := job.StreamLogs(context.Background(), &out, true); err != nil {
		t.Fatalf("StreamLogs: %v", err)
	}
	if got := out.String(); got != logs.log {
		t.Errorf("streamed %q, want %q", got, logs.log)
	}
	if diff := cmp.Diff([]string{"0/true", "5/true", "16/true"}, logs.offsets); diff != "" {
		t.Errorf("log requests offset/follow (-want +got):\n%s", diff)
	}
}

func TestStreamLogsNoFollow(t *testing.T) {
	f := newFakeARM(t)
	logs := &logServer{log: "hello\n"}
	f.mux.Handle("GET "+testWS+"/jobs/j/logs", logs)
	job := &Job{ws: f.workspace(), name: "j"}
	var out bytes.Buffer
	if err := job.StreamLogs(context.Background(), &out, false); err != nil {
		t.Fatalf("StreamLogs: %v", err)
	}
	if out.String() != "hello\n" || len(logs.offsets) != 1 || logs.offsets[0] != "0/false" {
		t.Errorf("streamed %q with requests %v, want hello in one request 0/false", out.String(), logs.offsets)
	}
}

func TestStreamLogsNotFound(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/jobs/j/logs", armError(http.StatusNotFound, api.CodeResourceNotFound, "no job j"))
	job := &Job{ws: f.workspace(), name: "j"}
	if err := job.StreamLogs(context.Background(), io.Discard, true); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("StreamLogs = %v, want ErrJobNotFound", err)
	}
}

// tarOf builds a tar stream of name → content; a name ending in "/" is a
// directory.
func tarOf(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e[1]))}
		if strings.HasSuffix(e[0], "/") {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDownload(t *testing.T) {
	tests := []struct {
		name    string
		entries [][2]string
		wantErr string // "" for success
	}{
		{"outputs and logs", [][2]string{{"outputs/", ""}, {"outputs/model.txt", "weights"}, {"user_logs/std_log.txt", "hello\n"}, {"./logs/metrics.json", "{}"}}, ""},
		{"parent", [][2]string{{"outputs/ok.txt", "ok"}, {"../evil.txt", "evil"}}, "outside the download directory"},
		{"nested parent", [][2]string{{"outputs/../../evil.txt", "evil"}}, "outside the download directory"},
		{"absolute", [][2]string{{"/tmp/evil.txt", "evil"}}, "outside the download directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeARM(t)
			body := tarOf(t, tt.entries...)
			f.mux.HandleFunc("GET "+testWS+"/jobs/j/artifacts", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/x-tar")
				_, _ = w.Write(body)
			})
			parent := t.TempDir()
			dir := filepath.Join(parent, "j")
			err := (&Job{ws: f.workspace(), name: "j"}).Download(context.Background(), dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Download = %v, want an error containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(parent, "evil.txt")); err == nil {
					t.Error("Download wrote evil.txt outside its directory")
				}
				return
			}
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			for _, e := range tt.entries {
				if strings.HasSuffix(e[0], "/") {
					continue
				}
				b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(e[0])))
				if err != nil || string(b) != e[1] {
					t.Errorf("%s = %q, %v; want %q", e[0], b, err, e[1])
				}
			}
		})
	}
}

func TestDownloadDoesNotFollowLinksOut(t *testing.T) {
	f := newFakeARM(t)
	body := tarOf(t, [2]string{"outputs/x.txt", "x"})
	f.mux.HandleFunc("GET "+testWS+"/jobs/j/artifacts", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	})
	dir, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(dir, "outputs")); err != nil {
		t.Fatal(err)
	}
	if err := (&Job{ws: f.workspace(), name: "j"}).Download(context.Background(), dir); err == nil {
		t.Error("Download through a link out of the directory: got nil error")
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "x.txt")); err == nil {
		t.Error("Download wrote through a link out of its directory")
	}
}

func TestCancelAndEvents(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("POST "+testWS+"/jobs/j/cancel", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	})
	events := []api.ComputeEvent{{Time: "2025-01-01T00:00:00Z", Kind: "ScaleUp", Message: "0 -> 2 nodes: 2 queued jobs"}}
	f.mux.HandleFunc("GET "+testWS+"/computes/c1/events", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.ComputeEventList{Value: events})
	})
	ws := f.workspace()
	if err := (&Job{ws: ws, name: "j"}).Cancel(context.Background()); err != nil {
		t.Errorf("Cancel: %v", err)
	}
	got, err := (&ComputeTarget{ws: ws, name: "c1"}).Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events, got); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
}

func TestStatusAvailability(t *testing.T) {
	res := cluster("c1", api.ProvisioningSucceeded, 1, 0)
	a := res.Properties.Properties
	a.QueuedJobCount, a.RunningJobCount = 2, 1
	a.QueuedJobs = []api.QueuedJob{
		{Name: "j2", PendingReason: &api.PendingReason{Code: api.PendingWaitingForNodes, Message: "1 node is booting"}},
		{Name: "j3", PendingReason: &api.PendingReason{Code: api.PendingMaxNodesReached, Message: "max 4 nodes"}},
	}
	s := statusOf(res)
	if s.QueuedJobCount != 2 || s.RunningJobCount != 1 {
		t.Errorf("queued, running = %d, %d; want 2, 1", s.QueuedJobCount, s.RunningJobCount)
	}
	if diff := cmp.Diff(a.QueuedJobs, s.QueuedJobs); diff != "" {
		t.Errorf("QueuedJobs (-want +got):\n%s", diff)
	}
}
