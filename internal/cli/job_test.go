package cli

import (
	"archive/tar"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
	"kumo/client"
)

func TestParseJobYAML(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job.yml")
	tests := []struct {
		name         string
		yaml         string
		sets         []string // --set overrides
		want         *jobFile // nil when an error is expected
		wantErr      string
		wantWarnings []string
	}{
		{
			name: "cifar example with literal inputs",
			yaml: `$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
code: src
command: >-
  python train.py --epochs ${{inputs.epochs}} --data-dir ${{inputs.data_dir}} --lr ${{inputs.lr}}
inputs: {epochs: 1, data_dir: ./data, lr: 0.010}
environment: azureml:AzureML-pytorch-1.9-ubuntu18.04-py37-cuda11-gpu:6
compute: azureml:gpu-cluster
distribution: {type: pytorch, process_count_per_instance: 2}
resources: {instance_count: 2}
limits: {timeout: 3600}
environment_variables: {SEED: 1, MODE: fast}
display_name: pytorch-cifar-distributed-example
experiment_name: pytorch-cifar-distributed-example
description: Train on CIFAR-10
tags: {team: vision, version: 2}
name: cifar-1
`,
			want: &jobFile{Name: "cifar-1", Spec: client.CommandJob{
				Command:        "python train.py --epochs ${{inputs.epochs}} --data-dir ${{inputs.data_dir}} --lr ${{inputs.lr}}",
				CodeDir:        filepath.Join(dir, "src"),
				Compute:        "gpu-cluster",
				Environment:    "azureml:AzureML-pytorch-1.9-ubuntu18.04-py37-cuda11-gpu:6",
				Env:            map[string]string{"SEED": "1", "MODE": "fast"},
				Inputs:         map[string]string{"epochs": "1", "data_dir": "./data", "lr": "0.010"},
				InstanceCount:  2,
				Distribution:   &api.Distribution{DistributionType: "pytorch", ProcessCountPerInstance: 2},
				Timeout:        time.Hour,
				DisplayName:    "pytorch-cifar-distributed-example",
				ExperimentName: "pytorch-cifar-distributed-example",
				Description:    "Train on CIFAR-10",
				Tags:           map[string]string{"team": "vision", "version": "2"},
			}},
		},
		{
			name: "compute without prefix, absolute code, block command",
			yaml: "type: command\ncode: /opt/src\ncompute: cpu-cluster\ncommand: |\n  echo one\n  echo two\n",
			want: &jobFile{Spec: client.CommandJob{Command: "echo one\necho two", CodeDir: "/opt/src", Compute: "cpu-cluster"}},
		},
		{
			name: "tensorflow distribution",
			yaml: "compute: c\ncommand: 'true'\nresources: {instance_count: 2}\ndistribution: {type: tensorflow, worker_count: 2, parameter_server_count: 2}\n",
			want: &jobFile{Spec: client.CommandJob{Command: "true", Compute: "c", InstanceCount: 2,
				Distribution: &api.Distribution{DistributionType: "tensorflow", WorkerCount: 2, ParameterServerCount: 2}}},
		},
		{
			name: "local compute",
			yaml: "compute: azureml:local\ncommand: 'true'\n",
			want: &jobFile{Spec: client.CommandJob{Command: "true", Compute: "local"}},
		},
		{
			name:         "unknown keys warn",
			yaml:         "command: 'true'\ncompute: c\nservices: {}\nresources: {instance_count: 1, shm_size: 2g}\n",
			want:         &jobFile{Spec: client.CommandJob{Command: "true", Compute: "c", InstanceCount: 1}},
			wantWarnings: []string{path + ": ignoring keys kumo does not support: resources.shm_size, services"},
		},
		{
			name: "kumo extensions, reported as such",
			yaml: "command: 'true'\ncompute: c\nkumo: {checkpoint_dir: ckpt, max_retries: 2, spot: yes}\n",
			want: &jobFile{Spec: client.CommandJob{Command: "true", Compute: "c", Env: map[string]string{"KUMO_CHECKPOINT_DIR": "ckpt"}, MaxRetries: 2}},
			wantWarnings: []string{
				path + ": ignoring keys kumo does not support: kumo.spot",
				path + ": kumo.checkpoint_dir is a kumo extension (AML ignores it): sets KUMO_CHECKPOINT_DIR=ckpt",
				path + ": kumo.max_retries is a kumo extension (AML ignores it): a failing job is retried up to 2 times",
			},
		},
		{
			name:         "inline environment warns",
			yaml:         "command: 'true'\ncompute: c\nenvironment: {image: python:3.11}\n",
			want:         &jobFile{Spec: client.CommandJob{Command: "true", Compute: "c"}},
			wantWarnings: []string{path + ": environment: kumo cannot build an inline environment (image, conda_file, build); the command runs in the node's own environment"},
		},
		{
			name:    "data asset input",
			yaml:    "command: x\ncompute: c\ninputs: {epochs: 1, cifar: azureml:cifar-10-example:1}\n",
			wantErr: "input cifar: only literal inputs are supported",
		},
		{
			name:    "typed path input",
			yaml:    "command: x\ncompute: c\ninputs:\n  data:\n    type: uri_folder\n    path: ./data\n",
			wantErr: "input data: only literal inputs are supported",
		},
		{
			name: "uri_folder outputs",
			yaml: "command: python train.py --out ${{outputs.model}}\ncompute: c\noutputs:\n  model: {type: uri_folder, mode: rw_mount}\n  logs:\n  up: {mode: upload}\n",
			want: &jobFile{Spec: client.CommandJob{Command: "python train.py --out ${{outputs.model}}", Compute: "c", Outputs: map[string]api.JobOutput{
				"model": {JobOutputType: "uri_folder", Mode: "rw_mount"}, "logs": {JobOutputType: "uri_folder"}, "up": {JobOutputType: "uri_folder", Mode: "upload"}}}},
		},
		{
			name:         "registered output warns",
			yaml:         "command: x\ncompute: c\noutputs: {model: {type: uri_folder, name: my-model, version: 1}}\n",
			want:         &jobFile{Spec: client.CommandJob{Command: "x", Compute: "c", Outputs: map[string]api.JobOutput{"model": {JobOutputType: "uri_folder"}}}},
			wantWarnings: []string{path + ": output model: name and version are ignored: kumo does not register outputs as data assets"},
		},
		{name: "mlflow output", yaml: "command: x\ncompute: c\noutputs: {m: {type: mlflow_model}}\n", wantErr: `output m: type "mlflow_model" is not supported: kumo supports uri_folder outputs`},
		{name: "uri_file output", yaml: "command: x\ncompute: c\noutputs: {m: {type: uri_file}}\n", wantErr: `output m: type "uri_file" is not supported`},
		{name: "download mode", yaml: "command: x\ncompute: c\noutputs: {m: {mode: direct}}\n", wantErr: `output m: mode "direct" is not supported: use rw_mount or upload`},
		{name: "output path", yaml: "command: x\ncompute: c\noutputs: {m: {path: azureml://datastores/x/paths/y}}\n", wantErr: `output m: path "azureml://datastores/x/paths/y" is not supported`},
		{name: "scalar output", yaml: "command: x\ncompute: c\noutputs: {m: uri_folder}\n", wantErr: "output m: want a mapping"},
		{
			name: "--set overrides and adds fields",
			yaml: "command: echo $FOO\ncompute: azureml:cpu-cluster\ndisplay_name: old\nenvironment_variables: {KEEP: 1}\n",
			sets: []string{"compute=azureml:gpu", "display_name=new name", "environment_variables.FOO=bar=baz", "tags.team=vision",
				"limits.timeout=60", "name=run-2", "inputs={lr: 0.1}"},
			want: &jobFile{Name: "run-2", Spec: client.CommandJob{Command: "echo $FOO", Compute: "gpu", DisplayName: "new name",
				Env: map[string]string{"KEEP": "1", "FOO": "bar=baz"}, Tags: map[string]string{"team": "vision"}, Timeout: time.Minute,
				Inputs: map[string]string{"lr": "0.1"}}},
		},
		{
			name: "--set on an empty file",
			yaml: "",
			sets: []string{"command=true", "compute=local"},
			want: &jobFile{Spec: client.CommandJob{Command: "true", Compute: "local"}},
		},
		{name: "--set without =", yaml: "command: x\ncompute: c\n", sets: []string{"compute"}, wantErr: `--set "compute" is not PATH=VALUE`},
		{name: "--set empty key", yaml: "command: x\ncompute: c\n", sets: []string{"tags..a=1"}, wantErr: "the path has an empty key"},
		{name: "--set through a scalar", yaml: "command: x\ncompute: c\n", sets: []string{"compute.name=y"}, wantErr: `--set "compute.name=y": compute is not a mapping`},
		{name: "--set a bad type", yaml: "command: x\ncompute: c\n", sets: []string{"resources.instance_count=two"}, wantErr: "cannot unmarshal"},
		{name: "no command", yaml: "compute: c\n", wantErr: "command is required"},
		{name: "no compute", yaml: "command: x\n", wantErr: "compute is required"},
		{name: "sweep job", yaml: "type: sweep\ncommand: x\ncompute: c\n", wantErr: `type "sweep": kumo runs only command jobs`},
		{name: "registered code", yaml: "command: x\ncompute: c\ncode: azureml:src:1\n", wantErr: "only a local directory is supported"},
		{name: "bad instance count", yaml: "command: x\ncompute: c\nresources: {instance_count: two}\n", wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseJobYAML(path, []byte(tt.yaml), tt.sets...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseJobYAML error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseJobYAML: %v", err)
			}
			tt.want.Warnings = tt.wantWarnings
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(jobFile{})); diff != "" {
				t.Errorf("parseJobYAML (-want +got):\n%s", diff)
			}
		})
	}
}

// jobServer registers PUT jobs/{name} on e, answering Queued with
// warnings, and returns where the last PUT body goes.
func (e *testEnv) jobServer(t *testing.T, warnings ...string) *api.JobResource {
	var got api.JobResource
	e.mux.HandleFunc("PUT "+testWS+"/jobs/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("decode PUT body: %v", err)
		}
		p := *got.Properties
		p.Status, p.Warnings = api.JobQueued, warnings
		writeJSON(w, http.StatusCreated, api.JobResource{Name: r.PathValue("name"), Properties: &p})
	})
	return &got
}

func TestJobSubmitPrintsName(t *testing.T) {
	e := newTestEnv(t)
	got := e.jobServer(t, "environment azureml:env:1 is not available; using the node's own")
	code := e.run("job", "submit", "--compute", "azureml:cpu-cluster", "--command", "echo ${{inputs.msg}}",
		"--env", "A=1", "--env", "B=x=y,z", "--input", "msg=hi", "--name", "j1")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	if e.out.String() != "j1\n" {
		t.Errorf("stdout = %q, want the name alone", e.out.String())
	}
	if want := "Warning: environment azureml:env:1 is not available; using the node's own\n"; e.errOut.String() != want {
		t.Errorf("stderr = %q, want %q", e.errOut.String(), want)
	}
	p := got.Properties
	if p.ComputeID != "cpu-cluster" || p.Command != "echo ${{inputs.msg}}" || p.JobType != "Command" {
		t.Errorf("PUT body = %+v", p)
	}
	if diff := cmp.Diff(map[string]string{"A": "1", "B": "x=y,z"}, p.EnvironmentVariables); diff != "" {
		t.Errorf("environment variables (-want +got):\n%s", diff)
	}
	if in := p.Inputs["msg"]; in == nil || *in != (api.JobInput{JobInputType: "literal", Value: "hi"}) {
		t.Errorf("inputs = %v, want msg literal hi", p.Inputs)
	}
}

func TestJobSubmitBadEnv(t *testing.T) {
	e := newTestEnv(t)
	if code := e.run("job", "submit", "--compute", "c", "--command", "x", "--env", "NOVALUE"); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := "Error: --env \"NOVALUE\" is not KEY=VALUE\n"; e.errOut.String() != want {
		t.Errorf("stderr = %q, want %q", e.errOut.String(), want)
	}
}

func TestJobCreateStream(t *testing.T) {
	tests := []struct {
		name     string
		final    api.JobProperties
		wantCode int
		wantErr  string
	}{
		{"completed", api.JobProperties{Status: api.JobCompleted, ExitCode: ptr(0)}, 0, ""},
		{"failed", api.JobProperties{Status: api.JobFailed, ExitCode: ptr(3), Error: &api.ErrorDetail{Code: "UserError", Message: "the command exited with code 3"}},
			1, "Error: job cifar-1 Failed: UserError: the command exited with code 3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "src", "train.py"), []byte("print('hello')\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			yml := "code: src\ncommand: python train.py\ncompute: azureml:cpu-cluster\nname: cifar-1\nservices: {}\n"
			if err := os.WriteFile(filepath.Join(dir, "job.yml"), []byte(yml), 0o644); err != nil {
				t.Fatal(err)
			}
			e := newTestEnv(t)
			var snapshot []string
			e.mux.HandleFunc("POST "+testWS+"/snapshots", func(w http.ResponseWriter, r *http.Request) {
				tr := tar.NewReader(r.Body)
				for {
					hdr, err := tr.Next()
					if err != nil {
						break
					}
					snapshot = append(snapshot, hdr.Name)
				}
				writeJSON(w, http.StatusCreated, api.Snapshot{ID: "snap-1", SizeBytes: 1024, FileCount: 1})
			})
			got := e.jobServer(t)
			e.mux.HandleFunc("GET "+testWS+"/jobs/cifar-1/logs", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("follow") != "true" {
					t.Errorf("logs follow = %q, want true", r.URL.Query().Get("follow"))
				}
				_, _ = io.WriteString(w, "hello\n")
			})
			e.mux.HandleFunc("GET "+testWS+"/jobs/cifar-1", func(w http.ResponseWriter, r *http.Request) {
				p := tt.final
				writeJSON(w, http.StatusOK, api.JobResource{Name: "cifar-1", Properties: &p})
			})
			code := e.run("job", "create", "-f", filepath.Join(dir, "job.yml"), "--stream")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantCode, e.errOut.String())
			}
			if e.out.String() != "hello\n" {
				t.Errorf("stdout = %q, want the job's output alone", e.out.String())
			}
			stderr := e.errOut.String()
			if !strings.Contains(stderr, "RunId: cifar-1\n") || !strings.Contains(stderr, "ignoring keys kumo does not support: services") {
				t.Errorf("stderr = %q, want the name and a warning about services", stderr)
			}
			if !strings.Contains(stderr, "Uploaded code snapshot: 1 files, 1 KiB\n") {
				t.Errorf("stderr = %q, want the snapshot's file count and size", stderr)
			}
			if tt.wantErr != "" && !strings.HasSuffix(stderr, tt.wantErr) {
				t.Errorf("stderr = %q, want it to end with %q", stderr, tt.wantErr)
			}
			if got.Properties.CodeID != "snap-1" || got.Properties.ComputeID != "cpu-cluster" {
				t.Errorf("PUT codeId, computeId = %q, %q; want snap-1, cpu-cluster", got.Properties.CodeID, got.Properties.ComputeID)
			}
			if diff := cmp.Diff([]string{"train.py"}, snapshot); diff != "" {
				t.Errorf("snapshot entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJobList(t *testing.T) {
	jobs := []api.JobResource{
		{Name: "quiet_apple_3kx9q2", Properties: &api.JobProperties{Status: api.JobCompleted, ComputeID: "cpu-cluster", NodeID: "node-1",
			DisplayName: "train-resnet", StartTime: "2025-01-01T10:00:00Z", EndTime: "2025-01-01T10:01:05Z"}},
		{Name: "bold_kiwi_000001", Properties: &api.JobProperties{Status: api.JobQueued, ComputeID: "gpu", DisplayName: "bold_kiwi_000001"}},
	}
	tests := []struct {
		name      string
		args      []string
		wantQuery string
		wantOut   string
		wantErr   string
	}{
		{
			name: "all, in the server's order",
			args: []string{"job", "list"},
			wantOut: "NAME                DISPLAY NAME      STATUS     COMPUTE      NODE    CREATED  DURATION\n" +
				"quiet_apple_3kx9q2  train-resnet      Completed  cpu-cluster  node-1  -        1m5s\n" +
				"bold_kiwi_000001    bold_kiwi_000001  Queued     gpu          -       -        -\n",
		},
		{
			name:      "filters become query parameters",
			args:      []string{"job", "list", "--compute", "azureml:cpu-cluster", "--status", "Queued,Running", "--max-results", "1"},
			wantQuery: "%24top=1&compute=azureml%3Acpu-cluster&status=Queued%2CRunning",
			wantOut: "NAME                DISPLAY NAME  STATUS     COMPUTE      NODE    CREATED  DURATION\n" +
				"quiet_apple_3kx9q2  train-resnet  Completed  cpu-cluster  node-1  -        1m5s\n",
		},
		{
			name:    "negative max",
			args:    []string{"job", "list", "-r", "-1"},
			wantErr: "--max-results -1 is negative",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			var query string
			e.mux.HandleFunc("GET "+testWS+"/jobs", func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				q.Del("api-version")
				query = q.Encode()
				writeJSON(w, http.StatusOK, api.JobList{Value: jobs})
			})
			code := e.run(tt.args...)
			if tt.wantErr != "" {
				if code == 0 || !strings.Contains(e.errOut.String(), tt.wantErr) {
					t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, e.errOut.String(), tt.wantErr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
			}
			if query != tt.wantQuery {
				t.Errorf("query = %q, want %q", query, tt.wantQuery)
			}
			if got := e.out.String(); got != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", got, tt.wantOut)
			}
		})
	}
}

func TestJobShowPendingReason(t *testing.T) {
	e := newTestEnv(t)
	e.mux.HandleFunc("GET "+testWS+"/jobs/j1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.JobResource{Name: "j1", Properties: &api.JobProperties{
			Status: api.JobQueued, ComputeID: "cpu-cluster", Command: "python train.py",
			PendingReason: &api.PendingReason{Code: api.PendingQuotaExceeded, Message: "standardDv2Family: 4 of 4 vCPUs in use, 2 more needed"},
		}})
	})
	if code := e.run("job", "show", "j1"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	want := "Name:    j1\n" +
		"Status:  Queued\n" +
		"Pending: QuotaExceeded: standardDv2Family: 4 of 4 vCPUs in use, 2 more needed\n" +
		"Compute: cpu-cluster\n" +
		"Command: python train.py\n"
	if got := e.out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

func TestJobShowAttemptHistory(t *testing.T) {
	e := newTestEnv(t)
	t1, t2, t3 := "2026-03-01T12:00:00Z", "2026-03-01T12:05:00Z", "2026-03-01T12:06:00Z"
	e.mux.HandleFunc("GET "+testWS+"/jobs/j1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.JobResource{Name: "j1", Properties: &api.JobProperties{
			Status: api.JobRunning, ComputeID: "lowpri", NodeID: "n2", Attempts: 2,
			AttemptHistory: []api.JobAttempt{
				{Number: 1, NodeID: "n1", StartTime: t1, EndTime: t2, FailureClass: "preemption", Reason: "Preempted", Message: "node n1: preempted by the provider"},
				{Number: 2, NodeID: "n2", StartTime: t3},
			},
		}})
	})
	if code := e.run("job", "show", "j1"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	want := []string{
		"Attempts:  2\n",
		"Attempt 1: node n1, " + formatTime(t1) + " – " + formatTime(t2) + ", preemption: Preempted: node n1: preempted by the provider\n",
		"Attempt 2: node n2, " + formatTime(t3) + " – running\n",
	}
	for _, w := range want {
		if !strings.Contains(e.out.String(), w) {
			t.Errorf("stdout:\n%s\nwant a line %q", e.out.String(), w)
		}
	}
}

// TestJobShowGang lists a multi-node job's nodes by rank, one that waits
// for a replacement included, and each attempt's nodes.
func TestJobShowGang(t *testing.T) {
	e := newTestEnv(t)
	t1, t2 := "2026-03-01T12:00:00Z", "2026-03-01T12:05:00Z"
	e.mux.HandleFunc("GET "+testWS+"/jobs/j1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.JobResource{Name: "j1", Properties: &api.JobProperties{
			Status: api.JobQueued, ComputeID: "lowpri", Attempts: 1, NodeIDs: []string{"n1", ""},
			Resources:    &api.JobResourceConfig{InstanceCount: 2},
			Distribution: &api.Distribution{DistributionType: "PyTorch", ProcessCountPerInstance: 2},
			AttemptHistory: []api.JobAttempt{{Number: 1, NodeID: "n1", NodeIDs: []string{"n1", "n2"}, StartTime: t1, EndTime: t2,
				FailureClass: "preemption", Reason: "Preempted"}},
		}})
	})
	if code := e.run("job", "show", "j1"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	for _, w := range []string{
		"Nodes:        0=n1, 1=(awaiting a replacement)\n",
		"Instances:    2\n",
		"Distribution: PyTorch, 2 process(es) per instance\n",
		"Attempt 1:    nodes n1, n2, ",
	} {
		if !strings.Contains(e.out.String(), w) {
			t.Errorf("stdout:\n%s\nwant a line %q", e.out.String(), w)
		}
	}
}

func TestJobDownloadDefaultPath(t *testing.T) {
	t.Chdir(t.TempDir())
	e := newTestEnv(t)
	e.mux.HandleFunc("GET "+testWS+"/jobs/j1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.JobResource{Name: "j1", Properties: &api.JobProperties{Status: api.JobCompleted}})
	})
	e.mux.HandleFunc("GET "+testWS+"/jobs/j1/artifacts", func(w http.ResponseWriter, r *http.Request) {
		tw := tar.NewWriter(w)
		_ = tw.WriteHeader(&tar.Header{Name: "outputs/model.txt", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		_, _ = io.WriteString(tw, "ok")
		_ = tw.Close()
	})
	if code := e.run("job", "download", "j1"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	if b, err := os.ReadFile(filepath.Join("j1", "outputs", "model.txt")); err != nil || string(b) != "ok" {
		t.Errorf("j1/outputs/model.txt = %q, %v; want ok", b, err)
	}
}

func TestNodeBar(t *testing.T) {
	tests := []struct {
		name   string
		counts api.NodeStateCounts
		max    int
		want   string
	}{
		{"empty cluster", api.NodeStateCounts{}, 4, "[....]"},
		{"every state", api.NodeStateCounts{RunningNodeCount: 2, IdleNodeCount: 1, PreparingNodeCount: 1, UnusableNodeCount: 1, PreemptedNodeCount: 1, LeavingNodeCount: 1}, 8, "[##o+!x-.]"},
		{"full", api.NodeStateCounts{RunningNodeCount: 3}, 3, "[###]"},
		{"over max after a PATCH", api.NodeStateCounts{RunningNodeCount: 2, LeavingNodeCount: 1}, 2, "[##-]"},
		{"20 wide", api.NodeStateCounts{IdleNodeCount: 20}, 20, "[oooooooooooooooooooo]"},
		{"scaled to 20", api.NodeStateCounts{RunningNodeCount: 50}, 100, "[##########..........]"},
		{"scaled keeps a lone state", api.NodeStateCounts{RunningNodeCount: 98, UnusableNodeCount: 1}, 100, "[##################!.]"},
		{"no max", api.NodeStateCounts{PreparingNodeCount: 2}, 0, "[++]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nodeBar(tt.counts, tt.max)
			if got != tt.want {
				t.Errorf("nodeBar = %q, want %q", got, tt.want)
			}
			if n := len(got) - 2; n > maxBarWidth {
				t.Errorf("bar is %d wide, want at most %d", n, maxBarWidth)
			}
		})
	}
}

func TestComputeShowAvailability(t *testing.T) {
	e := newTestEnv(t)
	c := cluster("cpu-cluster", api.ProvisioningSucceeded, 3, 0, 4)
	a := c.Properties.Properties
	a.AllocationState, a.TargetNodeCount = api.AllocationResizing, 4
	a.NodeStateCounts = &api.NodeStateCounts{RunningNodeCount: 2, PreparingNodeCount: 1}
	a.QueuedJobCount, a.RunningJobCount = 2, 2
	a.QueuedJobs = []api.QueuedJob{
		{Name: "j3", PendingReason: &api.PendingReason{Code: api.PendingWaitingForNodes, Message: "1 node is booting"}},
		{Name: "j4", PendingReason: &api.PendingReason{Code: api.PendingMaxNodesReached, Message: "the cluster has its maximum of 4 nodes"}},
	}
	e.mux.HandleFunc("GET "+testWS+"/computes/cpu-cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c)
	})
	if code := e.run("compute", "show", "-n", "cpu-cluster"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	want := "Name:        cpu-cluster\n" +
		"State:       Succeeded\n" +
		"Size:        STANDARD_D2_V2 (Dedicated)\n" +
		"Scale:       min 0, max 4, idle time before scale down 120s\n" +
		"Allocation:  Resizing\n" +
		"Nodes:       [##+.] 3 current, 4 target\n" +
		"Node states: 2 running, 0 idle, 1 preparing, 0 unusable, 0 preempted, 0 leaving\n" +
		"Jobs:        2 queued, 2 running\n" +
		"Queued jobs:\n" +
		"  JOB  REASON           MESSAGE\n" +
		"  j3   WaitingForNodes  1 node is booting\n" +
		"  j4   MaxNodesReached  the cluster has its maximum of 4 nodes\n"
	if got := e.out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

func TestComputeEvents(t *testing.T) {
	e := newTestEnv(t)
	e.mux.HandleFunc("GET "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, cluster("c1", api.ProvisioningSucceeded, 0, 0, 4))
	})
	e.mux.HandleFunc("GET "+testWS+"/computes/c1/events", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.ComputeEventList{Value: []api.ComputeEvent{
			{Time: "not a time", Kind: "ScaleUp", Message: "0 -> 2 nodes for 2 queued jobs"},
		}})
	})
	if code := e.run("compute", "events", "--name", "c1"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	want := "TIME        KIND     MESSAGE\nnot a time  ScaleUp  0 -> 2 nodes for 2 queued jobs\n"
	if got := e.out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

func TestJobStreamShowsQueue(t *testing.T) {
	defer func(d time.Duration) { queuePoll = d }(queuePoll)
	queuePoll = time.Millisecond
	e := newTestEnv(t)
	maxNodes := &api.PendingReason{Code: api.PendingMaxNodesReached, Message: "all 1 nodes are busy"}
	states := []api.JobProperties{
		{Status: api.JobQueued, ComputeID: "one", QueuePosition: 2, PendingReason: maxNodes},
		{Status: api.JobQueued, ComputeID: "one", QueuePosition: 2, PendingReason: maxNodes},
		{Status: api.JobQueued, ComputeID: "one", QueuePosition: 1, PendingReason: maxNodes},
		{Status: api.JobRunning, ComputeID: "one"},
		{Status: api.JobFailed, ComputeID: "one", ExitCode: ptr(3), Error: &api.ErrorDetail{Code: "UserError", Message: "the command exited with code 3"}},
	}
	var gets int
	e.mux.HandleFunc("GET "+testWS+"/jobs/j1", func(w http.ResponseWriter, r *http.Request) {
		p := states[min(gets, len(states)-1)]
		gets++
		writeJSON(w, http.StatusOK, api.JobResource{Name: "j1", Properties: &p})
	})
	e.mux.HandleFunc("GET "+testWS+"/jobs/j1/logs", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("offset") == "0" {
			io.WriteString(w, "A\nB\n")
		}
	})
	if code := e.run("job", "stream", "j1"); code != 1 {
		t.Errorf("exit %d, want 1 for a failed job", code)
	}
	if got := e.out.String(); got != "A\nB\n" {
		t.Errorf("stdout = %q, want the job's output alone", got)
	}
	want := "RunId: j1\n" +
		"Queued: position 2 on one: MaxNodesReached: all 1 nodes are busy\n" +
		"Queued: position 1 on one: MaxNodesReached: all 1 nodes are busy\n" +
		"Streaming user_logs/std_log.txt\n===============================\n\n" +
		"\nExecution Summary\n=================\nRunId: j1\nStatus: Failed\n" +
		"Error: job j1 Failed: UserError: the command exited with code 3\n"
	if diff := cmp.Diff(want, e.errOut.String()); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}
