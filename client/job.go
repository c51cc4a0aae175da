package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kumo/api"
)

// ErrJobNotFound matches, with errors.Is, the error of Workspace.Job and
// Job.Refresh when the workspace has no job of that name.
var ErrJobNotFound = errors.New("job not found")

// ErrJobExists matches, with errors.Is, the error of SubmitJob when the
// name is already taken by another job.
var ErrJobExists = errors.New("job name already in use")

// ErrJobFailed and ErrJobCanceled match, with errors.Is, the *JobError
// that Job.Wait returns for a job that ended Failed or Canceled.
var (
	ErrJobFailed   = errors.New("job failed")
	ErrJobCanceled = errors.New("job canceled")
)

// JobError is the error Job.Wait returns when the job ends Failed or
// Canceled. It matches ErrJobFailed or ErrJobCanceled with errors.Is.
type JobError struct {
	// Name is the job's name.
	Name string
	// Status is Failed or Canceled.
	Status api.JobStatus
	// ExitCode is the command's exit code; nil when it never exited on
	// its own (not started, canceled, lost).
	ExitCode *int
	// Detail is the job's error as the server recorded it; nil if none.
	Detail *api.ErrorDetail
}

// Error returns, for example, "job quiet_apple_3kx9q2 Failed: UserError:
// the command exited with code 2". The exit code is added, as "(exit code
// 2)", only when the server gave no detail, which would state it.
func (e *JobError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s %s", e.Name, e.Status)
	if e.Detail != nil && (e.Detail.Code != "" || e.Detail.Message != "") {
		b.WriteString(": ")
		switch {
		case e.Detail.Code == "":
			b.WriteString(e.Detail.Message)
		case e.Detail.Message == "":
			b.WriteString(e.Detail.Code)
		default:
			b.WriteString(e.Detail.Code + ": " + e.Detail.Message)
		}
	}
	if e.ExitCode != nil && e.Detail == nil {
		fmt.Fprintf(&b, " (exit code %d)", *e.ExitCode) // the server's detail states it
	}
	return b.String()
}

// Unwrap returns ErrJobCanceled for a canceled job and ErrJobFailed
// otherwise.
func (e *JobError) Unwrap() error {
	if e.Status == api.JobCanceled {
		return ErrJobCanceled
	}
	return ErrJobFailed
}

// CommandJob describes a command job to submit, like AML v2's command().
// Only Command and Compute are required.
type CommandJob struct {
	// Command is the shell command to run. ${{inputs.NAME}} is replaced
	// by the server with the value of input NAME.
	Command string
	// CodeDir, when set, is a local directory uploaded as a snapshot (see
	// UploadSnapshot); the command runs in a copy of it.
	CodeDir string
	// Compute is the compute target: a cluster's name, "azureml:NAME",
	// or "local" for the control plane's own host.
	Compute string
	// Environment names an AML environment, such as
	// "azureml:AzureML-sklearn-1.0:1". kumo runs commands in the node's
	// own environment and reports an environment it cannot honour in the
	// job's warnings. Empty means none.
	Environment string
	// Env are environment variables set for the command.
	Env map[string]string
	// Inputs are literal inputs, substituted into Command.
	Inputs map[string]string
	// Outputs are the job's outputs by name. kumo supports uri_folder
	// outputs (the zero JobOutput): ${{outputs.NAME}} in Command becomes
	// the folder outputs/NAME, made before the command starts and kept
	// with the job's artifacts. Mode may be spelt as in AML YAML
	// ("rw_mount", "upload").
	Outputs map[string]api.JobOutput
	// InstanceCount is the number of nodes; 0 means 1.
	InstanceCount int
	// Distribution, when not nil, makes a distributed job. Its type may
	// be spelt as in AML YAML ("pytorch", "tensorflow", "mpi").
	Distribution *api.Distribution
	// Timeout bounds the job's run time, rounded up to whole seconds; 0
	// means no limit.
	Timeout time.Duration
	// DisplayName and ExperimentName label the job; empty means none.
	DisplayName, ExperimentName string
	// Description is free text shown with the job.
	Description string
	// Tags are free key/value pairs.
	Tags map[string]string
	// MaxRetries is how often a failure of the job's own is retried (kumo
	// extension); 0 means never.
	MaxRetries int
}

// resource validates j and builds the PUT body for it, with snapshot ID
// codeID ("" for none).
func (j CommandJob) resource(codeID string) (*api.JobResource, error) {
	switch {
	case strings.TrimSpace(j.Command) == "":
		return nil, errors.New("job: command is required")
	case strings.TrimSpace(j.Compute) == "":
		return nil, errors.New("job: compute is required")
	case j.InstanceCount < 0:
		return nil, fmt.Errorf("job: instance count %d is negative", j.InstanceCount)
	case j.Timeout < 0:
		return nil, fmt.Errorf("job: timeout %s is negative", j.Timeout)
	}
	p := &api.JobProperties{
		JobType:              api.JobTypeCommand,
		Command:              j.Command,
		CodeID:               codeID,
		ComputeID:            j.Compute,
		EnvironmentID:        j.Environment,
		EnvironmentVariables: j.Env,
		DisplayName:          j.DisplayName,
		ExperimentName:       j.ExperimentName,
		Description:          j.Description,
		Tags:                 j.Tags,
	}
	if len(j.Inputs) > 0 {
		p.Inputs = make(map[string]*api.JobInput, len(j.Inputs))
		for k, v := range j.Inputs {
			p.Inputs[k] = &api.JobInput{JobInputType: api.JobInputLiteral, Value: v}
		}
	}
	if len(j.Outputs) > 0 {
		p.Outputs = make(map[string]*api.JobOutput, len(j.Outputs))
		for k, o := range j.Outputs {
			if o.JobOutputType == "" {
				o.JobOutputType = "uri_folder"
			}
			switch strings.ToLower(o.Mode) {
			case "rw_mount":
				o.Mode = "ReadWriteMount"
			case "upload":
				o.Mode = "Upload"
			}
			p.Outputs[k] = &o
		}
	}
	if j.InstanceCount > 0 {
		p.Resources = &api.JobResourceConfig{InstanceCount: j.InstanceCount}
	}
	if j.MaxRetries != 0 {
		p.Kumo = &api.KumoJobSettings{MaxRetries: j.MaxRetries}
	}
	if j.Distribution != nil {
		d := *j.Distribution
		t, err := normalizeDistribution(d.DistributionType)
		if err != nil {
			return nil, err
		}
		if d.ProcessCountPerInstance < 0 {
			return nil, fmt.Errorf("job: process count per instance %d is negative", d.ProcessCountPerInstance)
		}
		d.DistributionType = t
		p.Distribution = &d
	}
	if j.Timeout > 0 {
		secs := int((j.Timeout + time.Second - 1) / time.Second)
		p.Limits = &api.CommandJobLimits{JobLimitsType: api.JobTypeCommand, Timeout: formatISODuration(secs)}
	}
	return &api.JobResource{Properties: p}, nil
}

// normalizeDistribution maps the spellings of AML YAML and the Python SDK
// to ARM's distribution types.
func normalizeDistribution(t string) (string, error) {
	for _, ok := range []string{api.DistributionPyTorch, api.DistributionTensorFlow, api.DistributionMpi} {
		if strings.EqualFold(t, ok) {
			return ok, nil
		}
	}
	return "", fmt.Errorf("job: distribution type %q is not pytorch, tensorflow or mpi", t)
}

// jobPath is the ARM path of the job called name.
func (w *Workspace) jobPath(name string) string {
	return w.workspacePath(w.cfg.WorkspaceName) + "/jobs/" + url.PathEscape(name)
}

// SubmitJob uploads spec.CodeDir, if set, and submits spec as a command
// job called name, like AML v2's ml_client.jobs.create_or_update. An empty
// name gets a generated one in AML's style ("quiet_apple_3kx9q2"). When
// the name is taken the error matches ErrJobExists. The job comes back
// Queued; call Wait or StreamLogs to follow it.
func (w *Workspace) SubmitJob(ctx context.Context, name string, spec CommandJob) (*Job, error) {
	if name == "" {
		name = NewJobName()
	}
	if _, err := spec.resource(""); err != nil {
		return nil, err // refuse a bad spec before uploading anything
	}
	codeID := ""
	var snap *api.Snapshot
	if spec.CodeDir != "" {
		var err error
		if snap, err = w.UploadSnapshot(ctx, spec.CodeDir); err != nil {
			return nil, err
		}
		codeID = snap.ID
	}
	body, err := spec.resource(codeID)
	if err != nil {
		return nil, err
	}
	j := &Job{ws: w, name: name, snap: snap}
	if _, err := w.do(ctx, http.MethodPut, w.jobPath(name), body, &j.res); err != nil {
		var e *Error
		if errors.As(err, &e) && e.StatusCode == http.StatusConflict {
			e.sentinel = ErrJobExists
		}
		return nil, err
	}
	return j, nil
}

// Job returns the job called name. When the workspace has none of that
// name the error matches ErrJobNotFound.
func (w *Workspace) Job(ctx context.Context, name string) (*Job, error) {
	j := &Job{ws: w, name: name}
	if err := j.Refresh(ctx); err != nil {
		return nil, err
	}
	return j, nil
}

// Jobs returns every job of the workspace, newest first, following
// nextLink. It is ListJobs with no filter.
func (w *Workspace) Jobs(ctx context.Context) ([]*Job, error) {
	return w.ListJobs(ctx, JobListOptions{})
}

// JobListOptions filter ListJobs. Zero fields filter nothing.
type JobListOptions struct {
	// Compute keeps the jobs of one compute target: a cluster's name,
	// "azureml:NAME", or "local".
	Compute string
	// Statuses keeps the jobs in one of these statuses.
	Statuses []api.JobStatus
	// Max stops the list after this many jobs; 0 means all.
	Max int
}

// ListJobs returns the workspace's jobs that match opts, newest first,
// following nextLink until it has opts.Max of them or there are no more.
func (w *Workspace) ListJobs(ctx context.Context, opts JobListOptions) ([]*Job, error) {
	if opts.Max < 0 {
		return nil, fmt.Errorf("list jobs: max %d is negative", opts.Max)
	}
	q := url.Values{}
	if opts.Compute != "" {
		q.Set("compute", opts.Compute)
	}
	if len(opts.Statuses) > 0 {
		ss := make([]string, len(opts.Statuses))
		for i, st := range opts.Statuses {
			ss[i] = string(st)
		}
		q.Set("status", strings.Join(ss, ","))
	}
	if opts.Max > 0 {
		q.Set("$top", strconv.Itoa(opts.Max))
	}
	next := w.workspacePath(w.cfg.WorkspaceName) + "/jobs"
	if len(q) > 0 {
		next += "?" + q.Encode()
	}
	var all []*Job
	for next != "" {
		var page api.JobList
		if _, err := w.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		for _, r := range page.Value {
			if opts.Max > 0 && len(all) == opts.Max {
				return all, nil
			}
			all = append(all, &Job{ws: w, name: r.Name, res: r})
		}
		next = page.NextLink
		if opts.Max > 0 && len(all) == opts.Max {
			break
		}
	}
	return all, nil
}

// Job is one job of a workspace. It caches the resource as last fetched.
// It is not safe for concurrent use.
type Job struct {
	ws   *Workspace
	name string
	res  api.JobResource
	snap *api.Snapshot // the code uploaded by SubmitJob; nil for none
}

// Name returns the job's name.
func (j *Job) Name() string { return j.name }

// Snapshot returns the code snapshot SubmitJob uploaded for the job (its
// size and file count), or nil when it uploaded none.
func (j *Job) Snapshot() *api.Snapshot { return j.snap }

// Resource returns the job resource as last fetched.
func (j *Job) Resource() api.JobResource { return j.res }

// Status returns the job's status as last fetched.
func (j *Job) Status() api.JobStatus {
	if j.res.Properties == nil {
		return ""
	}
	return j.res.Properties.Status
}

// Refresh fetches the job again. When it no longer exists the error
// matches ErrJobNotFound.
func (j *Job) Refresh(ctx context.Context) error {
	var res api.JobResource
	if _, err := j.ws.do(ctx, http.MethodGet, j.ws.jobPath(j.name), nil, &res); err != nil {
		return markNotFound(err, ErrJobNotFound)
	}
	j.res = res
	return nil
}

// Cancel asks the server to cancel the job and returns without waiting:
// the server stops the command (SIGTERM, then SIGKILL after a grace
// period) and the job ends Canceled. Call Wait to see it end. Canceling a
// job that has ended changes nothing.
func (j *Job) Cancel(ctx context.Context) error {
	_, err := j.ws.do(ctx, http.MethodPost, j.ws.jobPath(j.name)+"/cancel", nil, nil)
	return err
}

// Wait polls the job until it reaches a terminal status. It returns nil
// when the job Completed, a *JobError (matching ErrJobFailed or
// ErrJobCanceled) when it Failed or was Canceled, and the context's error
// when ctx is done first.
func (j *Job) Wait(ctx context.Context) error {
	for {
		if err := j.Refresh(ctx); err != nil {
			return err
		}
		if j.Status().Terminal() {
			return j.outcome()
		}
		if err := sleep(ctx, j.ws.poll); err != nil {
			return fmt.Errorf("wait for job %s: %w", j.name, err)
		}
	}
}

// outcome is Wait's answer for a job in a terminal status.
func (j *Job) outcome() error {
	p := j.res.Properties
	if p == nil || p.Status == api.JobCompleted {
		return nil
	}
	return &JobError{Name: j.name, Status: p.Status, ExitCode: p.ExitCode, Detail: p.Error}
}

// Words of generated job names, in the style of AML's.
var (
	nameAdjectives = []string{"amber", "bold", "brave", "bright", "calm", "clever", "cool", "crisp", "eager", "gentle",
		"happy", "honest", "jolly", "keen", "kind", "lively", "lucid", "loyal", "mellow", "neat",
		"nice", "plucky", "polite", "quiet", "quick", "shy", "silly", "sincere", "sleepy", "witty"}
	nameNouns = []string{"apple", "bird", "boat", "cabbage", "carrot", "cloud", "coconut", "date", "feather", "fig",
		"garden", "guava", "kettle", "kiwi", "lamp", "leaf", "lemon", "lime", "mango", "melon",
		"night", "olive", "onion", "pear", "pepper", "plum", "river", "snail", "tangerine", "yam"}
)

// NewJobName returns a fresh job name in the style AML generates, such as
// "quiet_apple_3kx9q2": two words and six random base-36 characters.
func NewJobName() string {
	pick := func(n int) int {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
		if err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		return int(v.Int64())
	}
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	suffix := make([]byte, 6)
	for i := range suffix {
		suffix[i] = alphabet[pick(len(alphabet))]
	}
	return nameAdjectives[pick(len(nameAdjectives))] + "_" + nameNouns[pick(len(nameNouns))] + "_" + string(suffix)
}

// markNotFound makes err, when it is a 404 answer about the resource
// itself rather than its workspace, match sentinel too. It returns err.
func markNotFound(err, sentinel error) error {
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound && e.Code != api.CodeParentNotFound {
		e.sentinel = sentinel
	}
	return err
}
