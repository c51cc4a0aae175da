package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kumo/api"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

func jobID(r *http.Request) string { return workspaceID(r) + "/jobs/" + r.PathValue("job") }

// nextSeq returns the next FIFO sequence number for a job, continuing from
// the largest stored one.
func (s *Server) nextSeq(ctx context.Context) (int64, error) {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	if !s.seqLoaded {
		max, err := s.store.JobMaxSeq(ctx)
		if err != nil {
			return 0, err
		}
		s.seq, s.seqLoaded = max, true
	}
	s.seq++
	return s.seq, nil
}

func (s *Server) snapshotCreate(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.loadWorkspace(r.Context(), r); err != nil {
		return err
	}
	id := secret.RandomID(16)
	n, err := s.files.SaveSnapshot(id, r.Body)
	if errors.Is(err, jobfiles.ErrTooLarge) {
		return errorf(http.StatusRequestEntityTooLarge, "SnapshotTooLarge", "the code snapshot is larger than 100 MiB; leave data out of the code directory")
	}
	if err != nil {
		return badRequest("InvalidSnapshot", "body", "the code snapshot is not a safe tar stream: %v", err)
	}
	writeJSON(w, http.StatusCreated, api.Snapshot{ID: id, SizeBytes: n})
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
	err = s.store.JobCreate(ctx, j)
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
	command, err := model.SubstituteInputs(p.Command, inputs)
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
	if err := model.ValidateInstanceCount(count); err != nil {
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
	}
	var warnings []string
	if p.EnvironmentID != "" {
		warnings = append(warnings, fmt.Sprintf("environment %s is not honoured: kumo runs the command in the node's own environment", model.Quote(p.EnvironmentID)))
	}
	if p.Distribution != nil && p.Distribution.DistributionType != "" {
		warnings = append(warnings, fmt.Sprintf("distribution %s is not set up: kumo starts the command once on one node", model.Quote(p.Distribution.DistributionType)))
	}
	if p.CodeID != "" {
		f, err := s.files.OpenSnapshot(p.CodeID)
		if err != nil {
			return model.Job{}, badRequest(api.CodeInvalidParameter, "properties.codeId", "properties.codeId %s names no uploaded code snapshot", model.Quote(p.CodeID))
		}
		f.Close()
	}
	seq, err := s.nextSeq(ctx)
	if err != nil {
		return model.Job{}, err
	}
	env := p.EnvironmentVariables
	if len(env) == 0 {
		env = nil
	}
	return model.Job{
		ID: ws.ID + "/jobs/" + name, Name: name, RunID: secret.RandomID(12), WorkspaceID: ws.ID, ComputeID: computeID,
		DisplayName: p.DisplayName, ExperimentName: p.ExperimentName, Command: command, Env: env, SnapshotID: p.CodeID,
		Timeout: timeout, InstanceCount: count, Status: model.JobQueued, Seq: seq, CreatedAt: s.now().UTC(),
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

func (s *Server) jobList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.loadWorkspace(ctx, r)
	if err != nil {
		return err
	}
	jobs, err := s.store.JobList(ctx, ws.ID, store.Page{After: r.URL.Query().Get("$skipToken"), Limit: s.page + 1})
	if err != nil {
		return err
	}
	out := api.JobList{Value: []api.JobResource{}}
	jobs, out.NextLink = pageOf(r, jobs, s.page, func(j model.Job) string { return j.Name })
	views := map[string]*computeView{}
	for _, j := range jobs {
		out.Value = append(out.Value, s.jobResource(ctx, j, views, true))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
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
		if j.Status == model.JobQueued || j.Status == model.JobNotStarted {
			j.Status, j.EndedAt = model.JobCanceled, s.now().UTC()
			j.Error = &model.Error{Code: "Canceled", Message: "the job was canceled before it started"}
		}
		j.CancelRequested = true
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
		if v != nil {
			if pos, err := s.store.JobCountAhead(ctx, j.ComputeID, model.JobQueued, j.Seq); err == nil {
				p.PendingReason = v.pendingReason(pos)
			}
		}
	}
	return api.JobResource{ID: j.ID, Name: j.Name, Type: api.TypeJob,
		SystemData: &api.SystemData{CreatedAt: s.timestamp(j.CreatedAt), CreatedBy: j.CreatedBy, CreatedByType: "Application"},
		Properties: p}
}
