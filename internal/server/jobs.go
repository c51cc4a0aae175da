package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"kumo/api"
	"kumo/internal/archive"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

func jobID(r *http.Request) string { return workspaceID(r) + "/jobs/" + r.PathValue("job") }

func (s *Server) snapshotCreate(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.loadWorkspace(r.Context(), r); err != nil {
		return err
	}
	id := secret.RandomID(16)
	info, err := s.files.SaveSnapshot(id, r.Body)
	switch archive.HTTPStatus(err) {
	case http.StatusRequestEntityTooLarge:
		return errorf(http.StatusRequestEntityTooLarge, "SnapshotTooLarge", "the code snapshot is too large: %v; leave data out of the code directory", err)
	case http.StatusBadRequest:
		return badRequest("InvalidSnapshot", "body", "the code snapshot is not a safe tar stream: %v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.Snapshot{ID: id, SizeBytes: info.Size, FileCount: info.Files})
	return nil
}

func (s *Server) jobPut(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.loadWorkspace(ctx, r)
	if err != nil {
		return err
	}
	name := r.PathValue("job")
	if err := model.ValidateJobName(name); err != nil {
		return err
	}
	var body api.JobResource
	if err := decode(r, &body); err != nil {
		return err
	}
	j, err := s.jobFromRequest(ctx, ws, name, body)
	if err != nil {
		return err
	}
	// The store hands out the FIFO sequence number as it inserts the job,
	// so that control planes sharing a database never give two jobs the
	// same one.
	j, err = s.store.JobSubmit(ctx, j)
	if errors.Is(err, store.ErrConflict) {
		return errorf(http.StatusConflict, api.CodeConflict, "job %q already exists in workspace %q; jobs cannot be changed once submitted, pick another name", name, ws.Name)
	}
	if err != nil {
		return err
	}
	s.computeChanged(j.ComputeID)
	// The answer skips the pending reason: the job was queued a moment ago,
	// and submitting must stay cheap; GET gives it.
	writeJSON(w, http.StatusCreated, s.jobResource(ctx, j, nil, false))
	return nil
}

func (s *Server) computeChanged(computeID string) {
	if s.changed != nil {
		s.changed(computeID)
	}
}

// jobFromRequest validates a job PUT and builds the job to store.
func (s *Server) jobFromRequest(ctx context.Context, ws model.Workspace, name string, body api.JobResource) (model.Job, error) {
	p := body.Properties
	if p == nil {
		return model.Job{}, badRequest(api.CodeInvalidRequestContent, "properties", "properties is required")
	}
	if !strings.EqualFold(p.JobType, "Command") {
		return model.Job{}, badRequest(api.CodeInvalidParameter, "properties.jobType", "properties.jobType %s is not supported: kumo runs \"Command\" jobs", model.Quote(p.JobType))
	}
	inputs := map[string]string{}
	for k, in := range p.Inputs {
		if in == nil || !strings.EqualFold(in.JobInputType, "literal") {
			return model.Job{}, badRequest(api.CodeInvalidParameter, "properties.inputs", "properties.inputs.%s: only literal inputs are supported", model.Quote(k))
		}
		inputs[k] = in.Value
	}
	outputs := map[string]bool{}
	for k, o := range p.Outputs {
		if o == nil {
			o = &api.JobOutput{}
		}
		if err := model.ValidateOutput(k, o.JobOutputType, o.Mode); err != nil {
			return model.Job{}, err
		}
		if o.URI != "" {
			return model.Job{}, badRequest(api.CodeInvalidParameter, "properties.outputs."+k+".uri",
				"properties.outputs.%s.uri: kumo keeps outputs with the job (under %s); it cannot write to %q", k, model.OutputPath(k), o.URI)
		}
		outputs[k] = true
	}
	command, err := model.SubstituteBindings(p.Command, inputs, outputs)
	if err != nil {
		return model.Job{}, err
	}
	if err := model.ValidateCommand(command); err != nil {
		return model.Job{}, err
	}
	if err := model.ValidateEnv(p.EnvironmentVariables); err != nil {
		return model.Job{}, err
	}
	if err := model.ValidateJobLabels(p.DisplayName, p.ExperimentName); err != nil {
		return model.Job{}, err
	}
	count := 1
	if p.Resources != nil && p.Resources.InstanceCount != 0 {
		count = p.Resources.InstanceCount
	}
	var dist *model.Distribution
	if d := p.Distribution; d != nil && d.DistributionType != "" {
		dist = &model.Distribution{Type: model.DistributionType(d.DistributionType), ProcessCountPerInstance: d.ProcessCountPerInstance,
			WorkerCount: d.WorkerCount, ParameterServerCount: d.ParameterServerCount}
	}
	maxRetries := 0
	if p.Kumo != nil {
		maxRetries = p.Kumo.MaxRetries
	}
	if err := model.ValidateMaxRetries(maxRetries); err != nil {
		return model.Job{}, err
	}
	var timeout time.Duration
	if p.Limits != nil {
		if timeout, err = model.ParseJobTimeout(p.Limits.Timeout); err != nil {
			return model.Job{}, err
		}
	}
	computeName, err := model.ComputeRef(p.ComputeID)
	if err != nil {
		return model.Job{}, err
	}
	computeID := model.JobCompute(ws.ID, model.LocalCompute)
	maxNodes := 1 // compute local is one host
	if strings.EqualFold(computeName, model.LocalCompute) && s.noLocal {
		return model.Job{}, badRequest("LocalComputeDisabled", "properties.computeId",
			"compute \"local\" is disabled on this control plane (kumo up --local-compute=off); submit the job to a compute cluster")
	}
	if !strings.EqualFold(computeName, model.LocalCompute) {
		c, err := s.store.ComputeGet(ctx, model.JobCompute(ws.ID, computeName))
		if errors.Is(err, store.ErrNotFound) {
			return model.Job{}, badRequest(api.CodeInvalidParameter, "properties.computeId",
				"properties.computeId names compute %s, which does not exist in workspace %q (use \"local\" to run on the control plane's host)", model.Quote(computeName), ws.Name)
		}
		if err != nil {
			return model.Job{}, err
		}
		switch c.State {
		case model.StateFailed:
			return model.Job{}, badRequest("ComputeFailed", "properties.computeId", "compute %q is in a failed state and cannot run jobs; delete and recreate it", c.Name)
		case model.StateDeleting:
			return model.Job{}, badRequest(api.CodeConflict, "properties.computeId", "compute %q is being deleted", c.Name)
		}
		computeID = c.ID
		maxNodes = c.Scale.MaxNodes
	}
	if err := model.ValidateInstanceCount(count, maxNodes); err != nil {
		return model.Job{}, err
	}
	if err := model.ValidateDistribution(dist, count); err != nil {
		return model.Job{}, err
	}
	var warnings []string
	if p.EnvironmentID != "" {
		warnings = append(warnings, fmt.Sprintf("environment %s is not honoured: kumo runs the command in the node's own environment", model.Quote(p.EnvironmentID)))
	}
	if p.CodeID != "" {
		f, err := s.files.OpenSnapshot(p.CodeID)
		if err != nil {
			return model.Job{}, badRequest(api.CodeInvalidParameter, "properties.codeId", "properties.codeId %s names no uploaded code snapshot", model.Quote(p.CodeID))
		}
		f.Close()
	}
	env := p.EnvironmentVariables
	if len(outputs) > 0 {
		// As in AML, AZURE_ML_OUTPUT_NAME gives each output's path; the
		// node makes the folders it names before the command starts.
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		for k := range outputs {
			env[model.OutputEnvPrefix+k] = model.OutputPath(k)
		}
	}
	if len(env) == 0 {
		env = nil
	}
	return model.Job{
		ID: ws.ID + "/jobs/" + name, Name: name, RunID: secret.RandomID(12), WorkspaceID: ws.ID, ComputeID: computeID,
		DisplayName: p.DisplayName, ExperimentName: p.ExperimentName, Command: command, Env: env, SnapshotID: p.CodeID,
		Timeout: timeout, InstanceCount: count, Distribution: dist, MaxRetries: maxRetries, Status: model.JobQueued, CreatedAt: s.now().UTC(),
		CreatedBy: callerName(ctx), CreatedByToken: caller(ctx).ID, Warnings: warnings,
	}, nil
}

func (s *Server) loadJob(ctx context.Context, r *http.Request) (model.Job, error) {
	if _, err := s.loadWorkspace(ctx, r); err != nil {
		return model.Job{}, err
	}
	j, err := s.store.JobGet(ctx, jobID(r))
	if errors.Is(err, store.ErrNotFound) {
		return j, errorf(http.StatusNotFound, api.CodeResourceNotFound, "job %q was not found in workspace %q", r.PathValue("job"), r.PathValue("ws"))
	}
	return j, err
}

func (s *Server) jobGet(w http.ResponseWriter, r *http.Request) error {
	j, err := s.loadJob(r.Context(), r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.jobResource(r.Context(), j, nil, true))
	return nil
}

// jobList lists a workspace's jobs newest first. Query parameters filter
// it: compute=NAME (a compute's name or azureml:NAME), status=S[,S...]
// (case-insensitive) and $top=N (at most N jobs on this page). $skipToken
// is the nextLink's cursor: the creation order of the last job sent, so
// jobs submitted meanwhile do not shift the pages.
func (s *Server) jobList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.loadWorkspace(ctx, r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var f jobFilter
	if c := q.Get("compute"); c != "" {
		name, err := model.ComputeRef(c)
		if err != nil {
			return badRequest(api.CodeInvalidParameter, "compute", "compute %q is not a compute name", c)
		}
		f.computeID = model.JobCompute(ws.ID, name)
	}
	if st := q.Get("status"); st != "" {
		f.statuses = map[model.JobStatus]bool{}
		for _, v := range strings.Split(st, ",") {
			status, ok := model.ParseJobStatus(strings.TrimSpace(v))
			if !ok {
				return badRequest(api.CodeInvalidParameter, "status", "status %q is not a job status: use %s", v, model.JobStatusNames())
			}
			f.statuses[status] = true
		}
	}
	page := s.page
	if top := q.Get("$top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil || n < 1 {
			return badRequest(api.CodeInvalidParameter, "$top", "$top %q is not a positive whole number", top)
		}
		page = min(n, s.page)
	}
	var after jobCursor
	if tok := q.Get("$skipToken"); tok != "" {
		if after, err = parseJobCursor(tok); err != nil {
			return badRequest(api.CodeInvalidParameter, "$skipToken", "$skipToken %q is not a cursor this server gave", tok)
		}
	}
	jobs, err := s.jobsNewestFirst(ctx, ws.ID, f, after, page+1)
	if err != nil {
		return err
	}
	out := api.JobList{Value: []api.JobResource{}}
	if len(jobs) > page {
		jobs = jobs[:page]
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("$skipToken", cursorOf(jobs[len(jobs)-1]).String())
		out.NextLink = baseURL(r) + r.URL.Path + "?" + next.Encode()
	}
	views := map[string]*computeView{}
	for _, j := range jobs {
		out.Value = append(out.Value, s.jobResource(ctx, j, views, true))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// jobFilter selects jobs for a list; zero fields select all.
type jobFilter struct {
	computeID string                   // "" means any compute
	statuses  map[model.JobStatus]bool // nil means any status
}

func (f jobFilter) match(j model.Job) bool {
	if f.computeID != "" && !strings.EqualFold(j.ComputeID, f.computeID) {
		return false
	}
	return f.statuses == nil || f.statuses[j.Status]
}

// jobCursor is a job's place in the newest-first order: by creation time,
// then by submission sequence. The zero cursor is before the newest job.
type jobCursor struct {
	created int64 // UnixNano
	seq     int64
}

func cursorOf(j model.Job) jobCursor { return jobCursor{j.CreatedAt.UnixNano(), j.Seq} }

// before reports whether c comes before d in newest-first order.
func (c jobCursor) before(d jobCursor) bool {
	if c.created != d.created {
		return c.created > d.created
	}
	return c.seq > d.seq
}

func (c jobCursor) String() string { return fmt.Sprintf("%d.%d", c.created, c.seq) }

func parseJobCursor(s string) (jobCursor, error) {
	a, b, ok := strings.Cut(s, ".")
	if !ok {
		return jobCursor{}, errors.New("no '.'")
	}
	created, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return jobCursor{}, err
	}
	seq, err := strconv.ParseInt(b, 10, 64)
	if err != nil {
		return jobCursor{}, err
	}
	return jobCursor{created, seq}, nil
}

// jobsNewestFirst returns up to limit of a workspace's jobs that match f
// and come after the cursor after (all when it is zero), newest first.
// The store lists by name, so it reads the workspace's jobs whole.
func (s *Server) jobsNewestFirst(ctx context.Context, wsID string, f jobFilter, after jobCursor, limit int) ([]model.Job, error) {
	const batch = 1000
	var all []model.Job
	for p := (store.Page{Limit: batch}); ; {
		jobs, err := s.store.JobList(ctx, wsID, p)
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			if f.match(j) && (after == jobCursor{} || after.before(cursorOf(j))) {
				all = append(all, j)
			}
		}
		if len(jobs) < batch {
			break
		}
		p.After = jobs[len(jobs)-1].Name
	}
	sort.Slice(all, func(a, b int) bool { return cursorOf(all[a]).before(cursorOf(all[b])) })
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

func (s *Server) jobCancel(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	for range maxPutAttempts {
		j, err := s.loadJob(ctx, r)
		if err != nil {
			return err
		}
		if j.Status.Terminal() {
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
		from := j.Status
		j.Cancel(s.now().UTC())
		err = s.store.JobUpdate(ctx, j, from, nil, "")
		if errors.Is(err, store.ErrPreconditionFailed) {
			continue
		}
		if err != nil {
			return err
		}
		if j.Status.Terminal() {
			s.files.Close(j.RunID)
		}
		s.computeChanged(j.ComputeID)
		w.Header().Set("Location", baseURL(r)+r.URL.Path[:len(r.URL.Path)-len("/cancel")]+"?api-version="+apiVersion(r))
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	return errorf(http.StatusConflict, api.CodeConflict, "the job is changing too fast; retry")
}

// jobLogs writes the job's interleaved output from ?offset=N; with
// ?follow=true it keeps writing as the job runs and ends once the job is
// finished and all of its output was sent.
func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	j, err := s.loadJob(ctx, r)
	if err != nil {
		return err
	}
	offset, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if offset < 0 {
		offset = 0
	}
	stream := r.URL.Query().Get("stream")
	if stream == "" {
		stream = jobfiles.StdLog
	}
	if stream != jobfiles.StdLog && stream != jobfiles.Stdout && stream != jobfiles.Stderr {
		return badRequest(api.CodeInvalidParameter, "stream", "stream %s is invalid: use std_log, stdout or stderr", model.Quote(stream))
	}
	follow := r.URL.Query().Get("follow") == "true"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Kumo-Job-Status", string(j.Status))
	rc := http.NewResponseController(w)
	for {
		changed := s.files.Changed(j.RunID)
		terminal := j.Status.Terminal()
		next, err := s.files.ReadLog(j.RunID, stream, offset, w)
		if err != nil {
			return nil // the client went away or the file is unreadable; headers are sent
		}
		if next != offset {
			offset = next
			_ = rc.Flush()
		}
		if !follow || terminal {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(time.Second):
		}
		if j, err = s.store.JobGet(ctx, j.ID); err != nil {
			return nil
		}
	}
}

func (s *Server) jobArtifacts(w http.ResponseWriter, r *http.Request) error {
	j, err := s.loadJob(r.Context(), r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", j.Name+".tar"))
	if err := s.files.WriteArtifacts(j.RunID, w); err != nil {
		s.log.Error("write artifacts", "job", j.Name, "err", err)
	}
	return nil
}

func (s *Server) computeEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := s.loadCompute(ctx, r)
	if err != nil {
		return err
	}
	evs, err := s.store.EventList(ctx, c.ID, 200)
	if err != nil {
		return err
	}
	out := api.ComputeEventList{Value: []api.ComputeEvent{}}
	for _, e := range evs {
		out.Value = append(out.Value, api.ComputeEvent{Time: s.timestamp(e.Time), Kind: e.Kind, Message: e.Message})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// jobResource renders a job; with withReason, a queued job gets its pending
// reason, and views caches compute views across a list.
func (s *Server) jobResource(ctx context.Context, j model.Job, views map[string]*computeView, withReason bool) api.JobResource {
	computeName := j.ComputeID[strings.LastIndex(j.ComputeID, "/")+1:]
	env := j.Env
	if c := caller(ctx); c.Role != model.RoleOwner && (c.ID == "" || c.ID != j.CreatedByToken) {
		env = model.MaskSecretEnv(env)
	}
	p := &api.JobProperties{
		JobType: "Command", Command: j.Command, CodeID: j.SnapshotID, ComputeID: computeName, EnvironmentVariables: env,
		Resources: &api.JobResourceConfig{InstanceCount: j.InstanceCount}, DisplayName: j.DisplayName, ExperimentName: j.ExperimentName,
		Status: api.JobStatus(j.Status), RunID: j.RunID, NodeID: j.NodeID, ExitCode: j.ExitCode, Warnings: j.Warnings,
		CreatedOn: s.timestamp(j.CreatedAt), StartTime: s.timestamp(j.StartedAt), EndTime: s.timestamp(j.EndedAt), Attempts: j.Attempts,
	}
	if p.DisplayName == "" {
		p.DisplayName = j.Name
	}
	if d := j.Distribution; d != nil {
		p.Distribution = &api.Distribution{DistributionType: string(d.Type), ProcessCountPerInstance: d.ProcessCountPerInstance,
			WorkerCount: d.WorkerCount, ParameterServerCount: d.ParameterServerCount}
	}
	p.NodeIDs = j.NodeIDs
	if j.MaxRetries > 0 {
		p.Kumo = &api.KumoJobSettings{MaxRetries: j.MaxRetries}
	}
	if err := s.jobCost(ctx, j, p); err != nil {
		s.log.Error("job cost", "job", j.ID, "err", err)
	}
	for _, a := range j.History {
		p.AttemptHistory = append(p.AttemptHistory, api.JobAttempt{Number: a.Number, NodeID: a.NodeID, NodeIDs: a.NodeIDs,
			StartTime: s.timestamp(a.StartedAt), EndTime: s.timestamp(a.EndedAt), FailureClass: string(a.Class),
			Reason: string(a.Reason), Message: a.Message, ExitCode: a.ExitCode})
	}
	for k, v := range j.Env {
		if name, ok := strings.CutPrefix(k, model.OutputEnvPrefix); ok && v == model.OutputPath(name) {
			if p.Outputs == nil {
				p.Outputs = map[string]*api.JobOutput{}
			}
			p.Outputs[name] = &api.JobOutput{JobOutputType: "uri_folder", Mode: "ReadWriteMount", URI: v}
		}
	}
	if j.Timeout > 0 {
		p.Limits = &api.CommandJobLimits{JobLimitsType: "Command", Timeout: model.FormatDuration(j.Timeout)}
	}
	if j.Error != nil {
		p.Error = &api.ErrorDetail{Code: j.Error.Code, Message: j.Error.Message}
	}
	if j.Status == model.JobQueued && withReason {
		if views == nil {
			views = map[string]*computeView{}
		}
		v, ok := views[j.ComputeID]
		if !ok {
			v, _ = s.loadComputeView(ctx, j.ComputeID)
			views[j.ComputeID] = v
		}
		if pos, err := s.store.JobCountAhead(ctx, j.ComputeID, model.JobQueued, j.Seq); err == nil {
			p.QueuePosition = pos + 1
			if v != nil {
				p.PendingReason = v.pendingReason(pos)
				p.PendingReason = v.gangReason(j, p.PendingReason)
				p.PendingReason = evictedReason(j, p.PendingReason, s)
				if at, ok := v.estimateStart(s.now().UTC(), pos); ok {
					p.EstimatedStartTime = s.timestamp(at)
				}
			}
		}
	}
	return api.JobResource{ID: j.ID, Name: j.Name, Type: api.TypeJob,
		SystemData: &api.SystemData{CreatedAt: s.timestamp(j.CreatedAt), CreatedBy: j.CreatedBy, CreatedByType: "Application"},
		Properties: p}
}
