package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"kumo/api"
)

// Defaults of AmlComputeProvisioningConfiguration, as AML v1's
// AmlCompute.provisioning_configuration has them.
const (
	// DefaultVMSize is the VM size used when VMSize is empty.
	DefaultVMSize = "STANDARD_D2_V2"
	// DefaultIdleSecondsBeforeScaledown is the idle time used when
	// IdleSecondsBeforeScaledown is zero.
	DefaultIdleSecondsBeforeScaledown = 1800
)

// AmlComputeProvisioningConfiguration describes a cluster to create, like
// AML v1's AmlCompute.provisioning_configuration. Zero values take the v1
// defaults noted on each field.
type AmlComputeProvisioningConfiguration struct {
	// VMSize is the size of every node; empty means DefaultVMSize.
	VMSize string
	// VMPriority is "dedicated" (the default when empty) or "lowpriority";
	// "Dedicated", "LowPriority" and "low_priority" are accepted too.
	VMPriority string
	// MinNodes is the number of nodes kept even when idle; 0 lets the
	// cluster scale to zero.
	MinNodes int
	// MaxNodes is the most nodes the cluster may grow to. Required: it must
	// be at least 1 and at least MinNodes.
	MaxNodes int
	// IdleSecondsBeforeScaledown is how long a node sits idle before it is
	// removed; 0 means DefaultIdleSecondsBeforeScaledown.
	IdleSecondsBeforeScaledown int
	// AdminUsername, when set, creates an SSH user on every node; it needs
	// AdminUserPassword or AdminUserSSHKey (a public key).
	AdminUsername     string
	AdminUserPassword string
	AdminUserSSHKey   string
	// RemoteLoginPortPublicAccess is "Enabled", "Disabled" or
	// "NotSpecified"; empty means NotSpecified (open when an admin user is
	// given).
	RemoteLoginPortPublicAccess string
	// Location is where the cluster lives; empty means the workspace's
	// location.
	Location string
	// Description is free text shown with the cluster.
	Description string
	// Tags are free key/value pairs.
	Tags map[string]string
}

// normalizePriority maps the spellings the AML SDKs and CLI use to ARM's.
func normalizePriority(p string) (api.VMPriority, error) {
	switch strings.ToLower(strings.ReplaceAll(p, "_", "")) {
	case "", "dedicated":
		return api.PriorityDedicated, nil
	case "lowpriority":
		return api.PriorityLowPriority, nil
	}
	return "", fmt.Errorf("invalid provisioning configuration: vm priority %q is not dedicated or lowpriority", p)
}

// passwordComplexEnough applies AML v1's rule: at least three of lower
// case, upper case, digit and special character.
func passwordComplexEnough(p string) bool {
	var lower, upper, digit, special int
	for _, r := range p {
		switch {
		case unicode.IsLower(r):
			lower = 1
		case unicode.IsUpper(r):
			upper = 1
		case unicode.IsDigit(r):
			digit = 1
		case strings.ContainsRune("`~!@#$%^&*()=+_[]{}|;:./'\",<>?", r):
			special = 1
		}
	}
	return lower+upper+digit+special >= 3
}

// resource validates c and builds the PUT body for it, with location loc.
func (c AmlComputeProvisioningConfiguration) resource(loc string) (*api.ComputeResource, error) {
	switch {
	case c.MaxNodes == 0:
		return nil, errors.New("invalid provisioning configuration: max nodes count is mandatory")
	case c.MaxNodes < 0:
		return nil, fmt.Errorf("invalid provisioning configuration: max nodes %d is negative", c.MaxNodes)
	case c.MinNodes < 0:
		return nil, fmt.Errorf("invalid provisioning configuration: min nodes %d is negative", c.MinNodes)
	case c.MinNodes > c.MaxNodes:
		return nil, fmt.Errorf("invalid provisioning configuration: min nodes %d is more than max nodes %d", c.MinNodes, c.MaxNodes)
	case c.IdleSecondsBeforeScaledown < 0:
		return nil, fmt.Errorf("invalid provisioning configuration: idle seconds %d is negative", c.IdleSecondsBeforeScaledown)
	case c.AdminUsername == "" && (c.AdminUserPassword != "" || c.AdminUserSSHKey != ""):
		return nil, errors.New("invalid provisioning configuration: an admin password or SSH key needs an admin username")
	case c.AdminUsername != "" && c.AdminUserPassword == "" && c.AdminUserSSHKey == "":
		return nil, errors.New("invalid provisioning configuration: admin username needs a password or an SSH key")
	case c.AdminUserPassword != "" && !passwordComplexEnough(c.AdminUserPassword):
		return nil, errors.New("invalid provisioning configuration: admin password needs three of lower case, upper case, digit and special character")
	}
	prio, err := normalizePriority(c.VMPriority)
	if err != nil {
		return nil, err
	}
	size := c.VMSize
	if size == "" {
		size = DefaultVMSize
	}
	idle := c.IdleSecondsBeforeScaledown
	if idle == 0 {
		idle = DefaultIdleSecondsBeforeScaledown
	}
	props := &api.AmlComputeProperties{
		VMSize:     ptr(size),
		VMPriority: ptr(string(prio)),
		OSType:     ptr("Linux"),
		ScaleSettings: &api.ScaleSettings{
			MinNodeCount:                ptr(int32(c.MinNodes)),
			MaxNodeCount:                ptr(int32(c.MaxNodes)),
			NodeIdleTimeBeforeScaleDown: ptr(formatISODuration(idle)),
		},
	}
	if c.RemoteLoginPortPublicAccess != "" {
		var v api.RemoteLoginPortPublicAccess
		for _, ok := range []api.RemoteLoginPortPublicAccess{api.RemoteLoginEnabled, api.RemoteLoginDisabled, api.RemoteLoginNotSpecified} {
			if strings.EqualFold(c.RemoteLoginPortPublicAccess, string(ok)) {
				v = ok
			}
		}
		if v == "" {
			return nil, fmt.Errorf("invalid provisioning configuration: remote login port public access %q is not Enabled, Disabled or NotSpecified", c.RemoteLoginPortPublicAccess)
		}
		props.RemoteLoginPortPublicAccess = ptr(string(v))
	}
	if c.AdminUsername != "" {
		cred := &api.UserAccountCredentials{AdminUserName: ptr(c.AdminUsername)}
		if c.AdminUserPassword != "" {
			cred.AdminUserPassword = ptr(c.AdminUserPassword)
		}
		if c.AdminUserSSHKey != "" {
			cred.AdminUserSSHPublicKey = ptr(c.AdminUserSSHKey)
		}
		props.UserAccountCredentials = cred
	}
	res := &api.ComputeResource{
		Location: ptr(loc),
		Tags:     c.Tags,
		Properties: &api.ComputeProperties{
			ComputeType: api.ComputeTypeAmlCompute,
			Properties:  props,
		},
	}
	if c.Description != "" {
		res.Properties.Description = ptr(c.Description)
	}
	return res, nil
}

func ptr[T any](v T) *T { return &v }

// computePath is the ARM path of the compute called name.
func (w *Workspace) computePath(name string) string {
	return w.workspacePath(w.cfg.WorkspaceName) + "/computes/" + url.PathEscape(name)
}

// ComputeTarget returns the compute target called name, like AML's
// ComputeTarget(workspace, name). When the workspace has none of that name
// the error matches ErrComputeTargetNotFound.
func (w *Workspace) ComputeTarget(ctx context.Context, name string) (*ComputeTarget, error) {
	ct := &ComputeTarget{ws: w, name: name}
	if err := ct.Refresh(ctx); err != nil {
		return nil, err
	}
	return ct, nil
}

// ComputeTargets returns every compute target of the workspace, following
// nextLink, like AML's ComputeTarget.list(workspace).
func (w *Workspace) ComputeTargets(ctx context.Context) ([]*ComputeTarget, error) {
	var all []*ComputeTarget
	next := w.workspacePath(w.cfg.WorkspaceName) + "/computes"
	for next != "" {
		var page api.ComputeList
		if _, err := w.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		for _, r := range page.Value {
			all = append(all, &ComputeTarget{ws: w, name: r.Name, res: r})
		}
		next = page.NextLink
	}
	return all, nil
}

// CreateComputeTarget creates the cluster called name from cfg, like AML's
// ComputeTarget.create. A cluster of that name is overwritten (ARM PUT
// semantics); look it up first with ComputeTarget to avoid that. It
// returns as soon as the server accepts the request: call
// WaitForCompletion to wait for the cluster.
func (w *Workspace) CreateComputeTarget(ctx context.Context, name string, cfg AmlComputeProvisioningConfiguration) (*ComputeTarget, error) {
	loc := cfg.Location
	if loc == "" {
		var err error
		if loc, err = w.Location(ctx); err != nil {
			return nil, err
		}
	}
	body, err := cfg.resource(loc)
	if err != nil {
		return nil, err
	}
	ct := &ComputeTarget{ws: w, name: name}
	r, err := w.do(ctx, http.MethodPut, w.computePath(name), body, &ct.res)
	if err != nil {
		return nil, err
	}
	ct.setOperation(r)
	return ct, nil
}

// ComputeTarget is one compute target (an AmlCompute cluster) of a
// workspace. It caches the resource as last fetched and the long-running
// operation last started through it. It is not safe for concurrent use.
type ComputeTarget struct {
	ws         *Workspace
	name       string
	res        api.ComputeResource
	opURL      string        // Azure-AsyncOperation of the last PUT, PATCH or DELETE; "" if none
	retryAfter time.Duration // Retry-After-Ms that came with opURL
}

// setOperation records the operation URL and poll hint of an answer.
func (ct *ComputeTarget) setOperation(r *response) {
	ct.opURL = r.header.Get("Azure-AsyncOperation")
	ct.retryAfter = r.retryAfter
}

// Name returns the compute target's name.
func (ct *ComputeTarget) Name() string { return ct.name }

// Resource returns the compute resource as last fetched.
func (ct *ComputeTarget) Resource() api.ComputeResource { return ct.res }

// OperationURL returns the status URL of the last create, update or delete
// started through ct, or "" if none.
func (ct *ComputeTarget) OperationURL() string { return ct.opURL }

// ProvisioningState returns the provisioning state as last fetched.
func (ct *ComputeTarget) ProvisioningState() api.ProvisioningState {
	if ct.res.Properties == nil {
		return ""
	}
	return ct.res.Properties.ProvisioningState
}

// Refresh fetches the compute target again. When it no longer exists the
// error matches ErrComputeTargetNotFound.
func (ct *ComputeTarget) Refresh(ctx context.Context) error {
	var res api.ComputeResource
	if _, err := ct.ws.do(ctx, http.MethodGet, ct.ws.computePath(ct.name), nil, &res); err != nil {
		var e *Error
		if errors.As(err, &e) && e.StatusCode == http.StatusNotFound && e.Code != api.CodeParentNotFound {
			e.sentinel = ErrComputeTargetNotFound
		}
		return err
	}
	ct.res = res
	return nil
}

// ScaleSettings bounds a cluster's size, in AML v1's terms.
type ScaleSettings struct {
	// MinNodes is the number of nodes kept even when idle.
	MinNodes int
	// MaxNodes is the most nodes the cluster may grow to.
	MaxNodes int
	// IdleSecondsBeforeScaledown is how long a node sits idle before it is
	// removed.
	IdleSecondsBeforeScaledown int
}

// AmlComputeStatus is a cluster's detailed status, like AML v1's
// AmlComputeStatus. Times are zero when the server did not send them.
type AmlComputeStatus struct {
	AllocationState               api.AllocationState
	AllocationStateTransitionTime time.Time
	CreationTime                  time.Time
	ModifiedTime                  time.Time
	CurrentNodeCount              int
	TargetNodeCount               int
	NodeStateCounts               api.NodeStateCounts
	ProvisioningState             api.ProvisioningState
	// Errors are the cluster's errors followed by its provisioning errors.
	Errors        []api.ErrorResponse
	ScaleSettings ScaleSettings
	VMSize        string
	VMPriority    api.VMPriority
	// QueuedJobCount and RunningJobCount count the jobs waiting for and
	// running on the cluster.
	QueuedJobCount  int
	RunningJobCount int
	// QueuedJobs are the queued jobs in queue order, each with the reason
	// it waits (api.PendingWaitingForNodes, ...).
	QueuedJobs []api.QueuedJob
}

// Status fetches the compute target and returns its detailed status, like
// AML v1's AmlCompute.get_status.
func (ct *ComputeTarget) Status(ctx context.Context) (*AmlComputeStatus, error) {
	if err := ct.Refresh(ctx); err != nil {
		return nil, err
	}
	return statusOf(ct.res), nil
}

func statusOf(res api.ComputeResource) *AmlComputeStatus {
	s := &AmlComputeStatus{}
	p := res.Properties
	if p == nil {
		return s
	}
	s.ProvisioningState = p.ProvisioningState
	s.CreationTime = parseTime(p.CreatedOn)
	s.ModifiedTime = parseTime(p.ModifiedOn)
	a := p.Properties
	if a != nil {
		s.AllocationState = a.AllocationState
		s.AllocationStateTransitionTime = parseTime(a.AllocationStateTransitionTime)
		s.CurrentNodeCount = int(a.CurrentNodeCount)
		s.TargetNodeCount = int(a.TargetNodeCount)
		if a.NodeStateCounts != nil {
			s.NodeStateCounts = *a.NodeStateCounts
		}
		s.Errors = append(s.Errors, a.Errors...)
		s.ScaleSettings = scaleSettingsOf(a.ScaleSettings)
		if a.VMSize != nil {
			s.VMSize = *a.VMSize
		}
		if a.VMPriority != nil {
			s.VMPriority = api.VMPriority(*a.VMPriority)
		}
		s.QueuedJobCount = int(a.QueuedJobCount)
		s.RunningJobCount = int(a.RunningJobCount)
		s.QueuedJobs = a.QueuedJobs
	}
	s.Errors = append(s.Errors, p.ProvisioningErrors...)
	return s
}

func scaleSettingsOf(ss *api.ScaleSettings) ScaleSettings {
	var out ScaleSettings
	if ss == nil {
		return out
	}
	if ss.MinNodeCount != nil {
		out.MinNodes = int(*ss.MinNodeCount)
	}
	if ss.MaxNodeCount != nil {
		out.MaxNodes = int(*ss.MaxNodeCount)
	}
	if ss.NodeIdleTimeBeforeScaleDown != nil {
		out.IdleSecondsBeforeScaledown, _ = parseISODuration(*ss.NodeIdleTimeBeforeScaleDown)
	}
	return out
}

// parseTime reads an ARM timestamp; it returns the zero time for "" or a
// malformed value.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Update changes the cluster's scale settings and waits for the change to
// finish, like AML v1's AmlCompute.update. A nil argument keeps the current
// value; all nil does nothing.
func (ct *ComputeTarget) Update(ctx context.Context, minNodes, maxNodes, idleSeconds *int) error {
	if minNodes == nil && maxNodes == nil && idleSeconds == nil {
		return nil
	}
	if err := ct.Refresh(ctx); err != nil {
		return err
	}
	cur := ScaleSettings{}
	if ct.res.Properties != nil && ct.res.Properties.Properties != nil {
		cur = scaleSettingsOf(ct.res.Properties.Properties.ScaleSettings)
	}
	if minNodes != nil {
		cur.MinNodes = *minNodes
	}
	if maxNodes != nil {
		cur.MaxNodes = *maxNodes
	}
	if idleSeconds != nil {
		cur.IdleSecondsBeforeScaledown = *idleSeconds
	}
	switch {
	case cur.MinNodes < 0 || cur.MaxNodes < 0 || cur.IdleSecondsBeforeScaledown < 0:
		return errors.New("update: node counts and idle seconds must not be negative")
	case cur.MinNodes > cur.MaxNodes:
		return fmt.Errorf("update: min nodes %d is more than max nodes %d", cur.MinNodes, cur.MaxNodes)
	}
	body := api.ClusterUpdateParameters{Properties: &api.ClusterUpdateProperties{
		Properties: &api.ScaleSettingsInformation{ScaleSettings: &api.ScaleSettings{
			MinNodeCount:                ptr(int32(cur.MinNodes)),
			MaxNodeCount:                ptr(int32(cur.MaxNodes)),
			NodeIdleTimeBeforeScaleDown: ptr(formatISODuration(cur.IdleSecondsBeforeScaledown)),
		}},
	}}
	var res api.ComputeResource
	r, err := ct.ws.do(ctx, http.MethodPatch, ct.ws.computePath(ct.name), body, &res)
	if err != nil {
		return err
	}
	if res.Properties != nil {
		ct.res = res
	}
	ct.setOperation(r)
	if ct.opURL != "" {
		if err := ct.waitOperation(ctx, nil); err != nil {
			return err
		}
	}
	return ct.Refresh(ctx)
}

// Delete deletes the cluster and its nodes and waits until it is gone,
// like AML v1's AmlCompute.delete followed by wait_for_completion. Deleting
// a cluster that does not exist succeeds.
func (ct *ComputeTarget) Delete(ctx context.Context) error {
	r, err := ct.ws.do(ctx, http.MethodDelete, ct.ws.computePath(ct.name)+"?underlyingResourceAction=Delete", nil, nil)
	if err != nil {
		return err
	}
	if ct.res.Properties != nil {
		ct.res.Properties.ProvisioningState = api.ProvisioningDeleting
	}
	if r.status == http.StatusNoContent {
		ct.opURL = ""
		return nil
	}
	ct.setOperation(r)
	if ct.opURL == "" {
		return nil
	}
	return ct.waitOperation(ctx, nil)
}

// ListNodes returns the cluster's nodes, following nextLink.
func (ct *ComputeTarget) ListNodes(ctx context.Context) ([]api.NodeInformation, error) {
	var all []api.NodeInformation
	method, next := http.MethodPost, ct.ws.computePath(ct.name)+"/listNodes"
	for next != "" {
		var page api.NodeList
		if _, err := ct.ws.do(ctx, method, next, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Nodes...)
		method, next = http.MethodGet, page.NextLink
	}
	return all, nil
}

// ListKeys returns the cluster's secrets. kumo returns none for an
// AmlCompute: the answer carries only the compute type.
func (ct *ComputeTarget) ListKeys(ctx context.Context) (*api.ComputeSecrets, error) {
	var out api.ComputeSecrets
	if _, err := ct.ws.do(ctx, http.MethodPost, ct.ws.computePath(ct.name)+"/listKeys", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SimulateEviction evicts the cluster's nodes, or only nodeID when it is
// not "", as a provider takes spot VMs away (Azure's az vm
// simulate-eviction): each job on them gets SIGTERM with a notice file,
// then SIGKILL after the region's lead time, and is requeued. Only a
// LowPriority cluster's nodes can be evicted; a Dedicated cluster answers
// 409 OperationNotAllowed. It returns the nodes given notice.
func (ct *ComputeTarget) SimulateEviction(ctx context.Context, nodeID string) ([]string, error) {
	path := ct.ws.computePath(ct.name) + "/simulateEviction"
	if nodeID != "" {
		path += "?nodeId=" + url.QueryEscape(nodeID)
	}
	var out api.SimulateEvictionResult
	if _, err := ct.ws.do(ctx, http.MethodPost, path, nil, &out); err != nil {
		return nil, err
	}
	return out.NodeIDs, nil
}

// Events returns the cluster's recorded scaling decisions and incidents,
// oldest first.
func (ct *ComputeTarget) Events(ctx context.Context) ([]api.ComputeEvent, error) {
	var out api.ComputeEventList
	if _, err := ct.ws.do(ctx, http.MethodGet, ct.ws.computePath(ct.name)+"/events", nil, &out); err != nil {
		return nil, markNotFound(err, ErrComputeTargetNotFound)
	}
	return out.Value, nil
}
