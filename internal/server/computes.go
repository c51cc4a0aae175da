package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

func computeID(r *http.Request) string {
	return workspaceID(r) + "/computes/" + r.PathValue("compute")
}

func (s *Server) opURL(r *http.Request, op model.Operation) string {
	return fmt.Sprintf("%s/subscriptions/%s/providers/%s/locations/%s/computeOperationsStatus/%s?api-version=%s",
		baseURL(r), r.PathValue("sub"), api.ProviderNamespace, url.PathEscape(op.Location), op.ID, api.DefaultAPIVersion)
}

// setLRO sets the headers a long-running operation's first answer carries.
func (s *Server) setLRO(w http.ResponseWriter, r *http.Request, op model.Operation, withLocation bool) {
	u := s.opURL(r, op)
	w.Header().Set("Azure-AsyncOperation", u)
	if withLocation {
		w.Header().Set("Location", u)
	}
	w.Header().Set("Retry-After-Ms", strconv.FormatInt(s.poll.Milliseconds(), 10))
}

func setETag(w http.ResponseWriter, c model.Compute) {
	w.Header().Set("ETag", `"`+c.ETag+`"`)
}

// ifMatch returns the ETag of an If-Match header without quotes ("*" kept).
func ifMatch(r *http.Request) string {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	v = strings.TrimPrefix(v, "W/")
	return strings.Trim(v, `"`)
}

// loadCompute returns the compute in the path, or a 404 naming what is
// missing: its workspace or the compute.
func (s *Server) loadCompute(ctx context.Context, r *http.Request) (model.Compute, error) {
	if _, err := s.loadWorkspace(ctx, r); err != nil {
		return model.Compute{}, err
	}
	c, err := s.store.ComputeGet(ctx, computeID(r))
	if errors.Is(err, store.ErrNotFound) {
		return c, errorf(http.StatusNotFound, api.CodeResourceNotFound,
			"compute %q was not found in workspace %q", r.PathValue("compute"), r.PathValue("ws"))
	}
	return c, err
}

func (s *Server) computeGet(w http.ResponseWriter, r *http.Request) error {
	c, err := s.loadCompute(r.Context(), r)
	if err != nil {
		return err
	}
	setETag(w, c)
	writeJSON(w, http.StatusOK, s.computeResource(r.Context(), c))
	return nil
}

func (s *Server) computeList(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.loadWorkspace(r.Context(), r)
	if err != nil {
		return err
	}
	after := r.URL.Query().Get("$skipToken")
	cs, err := s.store.ComputeList(r.Context(), ws.ID, store.Page{After: after, Limit: s.page + 1})
	if err != nil {
		return err
	}
	out := api.ComputeList{Value: []api.ComputeResource{}}
	cs, out.NextLink = pageOf(r, cs, s.page, func(c model.Compute) string { return c.Name })
	for _, c := range cs {
		out.Value = append(out.Value, s.computeResource(r.Context(), c))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func apiVersion(r *http.Request) string {
	if v := r.URL.Query().Get("api-version"); v != "" {
		return v
	}
	return api.DefaultAPIVersion
}

// computeRequest flattens a PUT body into the model's request shape.
func computeRequest(name string, body api.ComputeResource) model.ComputeRequest {
	req := model.ComputeRequest{Name: name, Location: body.Location, Tags: body.Tags}
	p := body.Properties
	if p == nil {
		return req
	}
	req.ComputeType = string(p.ComputeType)
	req.Description = p.Description
	if p.ComputeLocation != nil && *p.ComputeLocation != "" && req.Location == nil {
		req.Location = p.ComputeLocation
	}
	ap := p.Properties
	if ap == nil {
		return req
	}
	req.VMSize, req.VMPriority, req.RemoteLogin = ap.VMSize, ap.VMPriority, ap.RemoteLoginPortPublicAccess
	if ss := ap.ScaleSettings; ss != nil {
		req.MinNodes, req.MaxNodes, req.IdleTime = int64p(ss.MinNodeCount), int64p(ss.MaxNodeCount), ss.NodeIdleTimeBeforeScaleDown
	}
	if uc := ap.UserAccountCredentials; uc != nil {
		req.AdminUser, req.Password, req.SSHKey = uc.AdminUserName, uc.AdminUserPassword, uc.AdminUserSSHPublicKey
	}
	return req
}

func int64p(p *int32) *int64 {
	if p == nil {
		return nil
	}
	v := int64(*p)
	return &v
}

// computeLocationMismatch rejects a computeLocation that differs from the
// top-level location.
func computeLocationMismatch(body api.ComputeResource) error {
	if body.Properties == nil || body.Properties.ComputeLocation == nil || body.Location == nil {
		return nil
	}
	cl, l := *body.Properties.ComputeLocation, *body.Location
	if cl != "" && l != "" && !model.SameLocation(cl, l) {
		return badRequest(api.CodeInvalidLocation, "properties.computeLocation",
			"properties.computeLocation %s differs from location %s: compute is always created in the workspace's region", model.Quote(cl), model.Quote(l))
	}
	return nil
}

// maxPutAttempts bounds how often a PUT retries after losing a race with
// another writer of the same compute.
const maxPutAttempts = 20

func (s *Server) computePut(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.loadWorkspace(ctx, r)
	if err != nil {
		return err
	}
	var body api.ComputeResource
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := computeLocationMismatch(body); err != nil {
		return err
	}
	region, ok := s.region(ws.Location)
	if !ok {
		return errorf(http.StatusConflict, api.CodeInvalidLocation, "workspace %q is in region %q, which this server does not serve", ws.Name, ws.Location)
	}
	req := computeRequest(r.PathValue("compute"), body)
	match := ifMatch(r)
	createOnly := strings.TrimSpace(r.Header.Get("If-None-Match")) == "*"

	for attempt := 0; attempt < maxPutAttempts; attempt++ {
		existing, err := s.store.ComputeGet(ctx, computeID(r))
		found := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		switch {
		case found && createOnly:
			return errorf(http.StatusPreconditionFailed, api.CodePreconditionFailed, "compute %q already exists (If-None-Match: *)", existing.Name)
		case !found && match != "":
			return errorf(http.StatusPreconditionFailed, api.CodePreconditionFailed, "compute %q does not exist (If-Match given)", req.Name)
		case found && match != "" && match != "*" && match != existing.ETag:
			return toAPIError(store.ErrPreconditionFailed)
		case found && existing.State == model.StateDeleting:
			return errorf(http.StatusConflict, api.CodeConflict, "compute %q is being deleted; wait for the delete to finish, then create it again", existing.Name)
		}
		var prev *model.Compute
		if found {
			prev = &existing
		}
		spec, err := model.ValidateCompute(req, ws, region, prev, secret.PasswordMatches)
		if err != nil {
			return err
		}
		quotas, err := s.store.QuotaList(ctx, ws.ID)
		if err != nil {
			return err
		}
		if err := model.CheckQuota(quotas, spec.VMSize, spec.Priority); err != nil {
			return err
		}
		now := s.now().UTC()
		op := model.Operation{ID: secret.RandomID(16), Location: ws.Location, ComputeID: computeID(r), Status: model.OpInProgress, StartedAt: now}
		c := model.Compute{
			ID: computeID(r), WorkspaceID: ws.ID, Name: req.Name, Location: ws.Location,
			Description: spec.Description, Tags: spec.Tags, VMSize: spec.VMSize.Name, Priority: spec.Priority,
			Scale: spec.Scale, RemoteLogin: spec.RemoteLogin, OperationID: op.ID, ETag: secret.RandomID(8),
			CreatedAt: now, ModifiedAt: now, CreatedBy: callerName(ctx), ModifiedBy: callerName(ctx),
		}
		if !found {
			hash := ""
			if spec.Password != "" {
				if hash, err = secret.HashPassword(spec.Password); err != nil {
					return err
				}
			}
			c.Credentials = model.Credentials{AdminUser: spec.AdminUser, PasswordHash: hash, SSHPublicKey: spec.SSHKey}
			c.State, op.Kind = model.StateCreating, model.OpCreate
			err = s.store.ComputeCreate(ctx, c, op)
			if errors.Is(err, store.ErrConflict) {
				continue // lost a race with another creator: overwrite instead
			}
			if err != nil {
				return err
			}
			return s.answerPut(w, r, c, op, http.StatusCreated)
		}
		c.Name, c.Credentials = existing.Name, existing.Credentials
		c.CreatedAt, c.CreatedBy = existing.CreatedAt, existing.CreatedBy
		if sameSettings(c, existing) && existing.State != model.StateFailed {
			// Nothing to change: the PUT is answered with the compute as it
			// is and its latest operation, without a write, so repeated
			// and concurrent identical PUTs agree and never conflict.
			prevOp, err := s.store.OperationGet(ctx, existing.OperationID)
			if err != nil {
				return err
			}
			return s.answerPut(w, r, existing, prevOp, http.StatusOK)
		}
		c.State, op.Kind = model.StateUpdating, model.OpUpdate
		if existing.State == model.StateCreating || existing.State == model.StateFailed {
			c.State, op.Kind = model.StateCreating, model.OpCreate
		}
		err = s.store.ComputeUpdate(ctx, c, existing.ETag, &op)
		if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
			continue // changed or deleted meanwhile: decide again on fresh state
		}
		if err != nil {
			return err
		}
		return s.answerPut(w, r, c, op, http.StatusOK)
	}
	return errorf(http.StatusConflict, api.CodeConflict, "compute %q is being changed by many requests at once; retry", req.Name)
}

// sameSettings reports whether a requested compute c asks for nothing
// different from existing.
func sameSettings(c, existing model.Compute) bool {
	return c.Description == existing.Description && maps.Equal(c.Tags, existing.Tags) &&
		c.VMSize == existing.VMSize && c.Priority == existing.Priority && c.Scale == existing.Scale &&
		c.RemoteLogin == existing.RemoteLogin && c.Credentials == existing.Credentials
}

func (s *Server) answerPut(w http.ResponseWriter, r *http.Request, c model.Compute, op model.Operation, status int) error {
	s.notify()
	s.setLRO(w, r, op, false)
	setETag(w, c)
	writeJSON(w, status, s.computeResource(r.Context(), c))
	return nil
}

func (s *Server) computePatch(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if _, err := s.loadWorkspace(ctx, r); err != nil {
		return err
	}
	var body api.ClusterUpdateParameters
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.Properties == nil || body.Properties.Properties == nil || body.Properties.Properties.ScaleSettings == nil {
		return badRequest(api.CodeInvalidRequestContent, "properties.properties.scaleSettings",
			"properties.properties.scaleSettings is required: PATCH changes only the scale settings")
	}
	ss := body.Properties.Properties.ScaleSettings
	match := ifMatch(r)
	for attempt := 0; attempt < maxPutAttempts; attempt++ {
		c, err := s.loadCompute(ctx, r)
		if err != nil {
			return err
		}
		if match != "" && match != "*" && match != c.ETag {
			return toAPIError(store.ErrPreconditionFailed)
		}
		if c.State == model.StateDeleting {
			return errorf(http.StatusConflict, api.CodeConflict, "compute %q is being deleted", c.Name)
		}
		max := int64p(ss.MaxNodeCount)
		if max == nil {
			m := int64(c.Scale.MaxNodes)
			max = &m
		}
		scale, err := model.ValidateScale(int64p(ss.MinNodeCount), max, ss.NodeIdleTimeBeforeScaleDown, c.Scale)
		if err != nil {
			return err
		}
		prevETag := c.ETag
		c.Scale, c.ETag = scale, secret.RandomID(8)
		c.ModifiedAt, c.ModifiedBy = s.now().UTC(), callerName(ctx)
		err = s.store.ComputeUpdate(ctx, c, prevETag, nil)
		if errors.Is(err, store.ErrPreconditionFailed) {
			continue
		}
		if err != nil {
			return err
		}
		s.notify()
		s.computeChanged(c.ID) // new scale settings take effect at once
		setETag(w, c)
		writeJSON(w, http.StatusOK, s.computeResource(r.Context(), c))
		return nil
	}
	return errorf(http.StatusConflict, api.CodeConflict, "compute is being changed by many requests at once; retry")
}

func (s *Server) computeDelete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if _, err := s.loadWorkspace(ctx, r); err != nil {
		return err
	}
	if a := r.URL.Query().Get("underlyingResourceAction"); a != "" && !strings.EqualFold(a, "Delete") {
		return badRequest(api.CodeInvalidParameter, "underlyingResourceAction",
			"underlyingResourceAction %s is not supported for AmlCompute: detach is not supported, use Delete", model.Quote(a))
	}
	match := ifMatch(r)
	for attempt := 0; attempt < maxPutAttempts; attempt++ {
		c, err := s.store.ComputeGet(ctx, computeID(r))
		if errors.Is(err, store.ErrNotFound) {
			if match != "" {
				return errorf(http.StatusPreconditionFailed, api.CodePreconditionFailed, "compute %q does not exist (If-Match given)", r.PathValue("compute"))
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if err != nil {
			return err
		}
		if match != "" && match != "*" && match != c.ETag {
			return toAPIError(store.ErrPreconditionFailed)
		}
		if c.State == model.StateDeleting {
			op, err := s.store.OperationGet(ctx, c.OperationID)
			if err != nil {
				return err
			}
			s.setLRO(w, r, op, true)
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
		now := s.now().UTC()
		op := model.Operation{ID: secret.RandomID(16), Location: c.Location, Kind: model.OpDelete, ComputeID: c.ID, Status: model.OpInProgress, StartedAt: now}
		prevETag := c.ETag
		c.State, c.OperationID, c.ETag, c.ModifiedAt, c.ModifiedBy = model.StateDeleting, op.ID, secret.RandomID(8), now, callerName(ctx)
		err = s.store.ComputeUpdate(ctx, c, prevETag, &op)
		if errors.Is(err, store.ErrPreconditionFailed) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		s.notify()
		s.setLRO(w, r, op, true)
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	return errorf(http.StatusConflict, api.CodeConflict, "compute is being changed by many requests at once; retry")
}

func (s *Server) computeListNodes(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := s.loadCompute(ctx, r)
	if err != nil {
		return err
	}
	ns, err := s.store.NodeListByCompute(ctx, c.ID)
	if err != nil {
		return err
	}
	nodes := []api.NodeInformation{}
	for _, n := range ns {
		info := api.NodeInformation{NodeID: n.ID, PrivateIPAddress: n.Address, PublicIPAddress: n.Address, Port: int32(n.SSHPort), NodeState: api.NodeState(n.State), Note: n.Note, Reason: n.Reason}
		if c.Credentials.AdminUser != "" { // a node of a cluster without an admin account serves no SSH
			info.SSHHostKey, info.SSHHostKeyFingerprint = n.HostKey, fingerprint(n.HostKey)
		}
		if n.JobID != "" {
			if j, err := s.store.JobGet(ctx, n.JobID); err == nil {
				info.RunID = strp(j.Name) // a v2 job's run ID, as AML shows it, is its name
			}
		}
		nodes = append(nodes, info)
	}
	writeJSON(w, http.StatusOK, api.NodeList{ComputeType: api.ComputeTypeAmlCompute, Nodes: nodes})
	return nil
}

func (s *Server) computeListKeys(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.loadCompute(r.Context(), r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ComputeSecrets{ComputeType: api.ComputeTypeAmlCompute})
	return nil
}

func (s *Server) operationGet(w http.ResponseWriter, r *http.Request) error {
	op, err := s.store.OperationGet(r.Context(), r.PathValue("op"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !strings.HasPrefix(op.ComputeID, "/subscriptions/"+r.PathValue("sub")+"/")) {
		return errorf(http.StatusNotFound, api.CodeResourceNotFound, "operation %q was not found", r.PathValue("op"))
	}
	if err != nil {
		return err
	}
	out := api.OperationStatus{
		ID:        fmt.Sprintf("/subscriptions/%s/providers/%s/locations/%s/computeOperationsStatus/%s", r.PathValue("sub"), api.ProviderNamespace, op.Location, op.ID),
		Name:      op.ID,
		Status:    string(op.Status),
		StartTime: s.timestamp(op.StartedAt),
		EndTime:   s.timestamp(op.EndedAt),
	}
	if op.Error != nil {
		out.Error = &api.OperationStatusError{Code: op.Error.Code, Message: op.Error.Message,
			Error: &api.ErrorDetail{Code: op.Error.Code, Message: op.Error.Message}}
	}
	if op.Status == model.OpInProgress {
		w.Header().Set("Retry-After-Ms", strconv.FormatInt(s.poll.Milliseconds(), 10))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func strp(s string) *string { return &s }

func int32p(v int) *int32 {
	x := int32(v)
	return &x
}

// computeResource renders a stored compute in the ARM shape with its live
// status. Secrets are never included.
func (s *Server) computeResource(ctx context.Context, c model.Compute) api.ComputeResource {
	res := s.computeSettings(c)
	v, err := s.viewOf(ctx, c)
	if err == nil {
		err = v.loadJobs(ctx, s)
	}
	if err == nil {
		v.apply(s, res.Properties.Properties)
		res.Properties.Properties.Cost, err = s.computeCost(ctx, c)
	}
	if err != nil {
		s.log.Error("compute status", "compute", c.ID, "err", err)
	}
	return res
}

// computeSettings renders a stored compute's settings in the ARM shape.
func (s *Server) computeSettings(c model.Compute) api.ComputeResource {
	var perrs []api.ErrorResponse
	for _, e := range c.Errors {
		perrs = append(perrs, api.ErrorResponse{Error: &api.ErrorDetail{Code: e.Code, Message: e.Message}})
	}
	var creds *api.UserAccountCredentials
	if c.Credentials.AdminUser != "" {
		creds = &api.UserAccountCredentials{AdminUserName: strp(c.Credentials.AdminUser)}
	}
	tags := c.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	var desc *string
	if c.Description != "" {
		desc = strp(c.Description)
	}
	modified := s.timestamp(c.ModifiedAt)
	alloc, allocSince := s.allocation(c, model.ComputeStatus{}) // until computeView.apply reads the status
	return api.ComputeResource{
		ID: c.ID, Name: c.Name, Type: api.TypeCompute, Location: strp(c.Location), Tags: tags,
		SystemData: &api.SystemData{CreatedAt: s.timestamp(c.CreatedAt), CreatedBy: c.CreatedBy, CreatedByType: "Application",
			LastModifiedAt: modified, LastModifiedBy: c.ModifiedBy, LastModifiedByType: "Application"},
		Properties: &api.ComputeProperties{
			ComputeType: api.ComputeTypeAmlCompute, ComputeLocation: strp(c.Location), Description: desc,
			CreatedOn: s.timestamp(c.CreatedAt), ModifiedOn: modified,
			ProvisioningState: api.ProvisioningState(c.State), ProvisioningErrors: perrs,
			Properties: &api.AmlComputeProperties{
				VMSize: strp(c.VMSize), VMPriority: strp(string(c.Priority)), OSType: strp("Linux"),
				RemoteLoginPortPublicAccess: strp(c.RemoteLogin),
				ScaleSettings: &api.ScaleSettings{MaxNodeCount: int32p(c.Scale.MaxNodes), MinNodeCount: int32p(c.Scale.MinNodes),
					NodeIdleTimeBeforeScaleDown: strp(model.FormatDuration(c.Scale.IdleTime))},
				UserAccountCredentials:        creds,
				AllocationState:               alloc,
				AllocationStateTransitionTime: allocSince,
				NodeStateCounts:               &api.NodeStateCounts{},
			},
		},
	}
}
