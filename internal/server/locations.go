package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/store"
)

func (s *Server) loadRegion(r *http.Request) (model.Region, error) {
	reg, ok := s.region(r.PathValue("loc"))
	if !ok {
		return reg, errorf(http.StatusNotFound, api.CodeInvalidLocation, "location %q is not a region this server serves; use one of: %s", r.PathValue("loc"), s.regionNames())
	}
	return reg, nil
}

func (s *Server) vmSizes(w http.ResponseWriter, r *http.Request) error {
	reg, err := s.loadRegion(r)
	if err != nil {
		return err
	}
	out := api.VMSizeList{Value: []api.VMSize{}}
	for _, z := range reg.Sizes {
		out.Value = append(out.Value, api.VMSize{
			Name: z.Name, Family: z.Family, VCPUs: int32(z.VCPUs), GPUs: int32(z.GPUs), GPUModel: z.GPUModel,
			MemoryGB: z.MemoryGB, LowPriorityCapable: true, SupportedComputeTypes: []string{"AmlCompute"},
			EstimatedVMPrices: &api.EstimatedVMPrices{BillingCurrency: "USD", UnitOfMeasure: "OneHour", Values: []api.EstimatedVMPrice{
				{RetailPrice: z.PriceDedicated, OSType: "Linux", VMTier: "Standard"},
				{RetailPrice: z.PriceLowPriority, OSType: "Linux", VMTier: "LowPriority"},
			}},
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// regionWorkspaces returns the workspaces of the path's subscription that
// live in the path's region.
func (s *Server) regionWorkspaces(ctx context.Context, r *http.Request, reg model.Region) ([]model.Workspace, error) {
	all, err := s.store.WorkspaceList(ctx, r.PathValue("sub"), "", store.Page{})
	if err != nil {
		return nil, err
	}
	var out []model.Workspace
	for _, ws := range all {
		if model.SameLocation(ws.Location, reg.Name) {
			out = append(out, ws)
		}
	}
	return out, nil
}

func familyLabel(family string) string {
	if family == model.LowPriorityFamily {
		return "Low-priority vCPUs"
	}
	f := strings.TrimSuffix(strings.TrimPrefix(family, "standard"), "Family")
	return "Standard " + f + " Family vCPUs"
}

// usedVCPUs counts the vCPUs a workspace's nodes hold, per quota family.
func (s *Server) usedVCPUs(ctx context.Context, ws model.Workspace, reg model.Region) (map[string]int64, error) {
	cs, err := s.store.ComputeList(ctx, ws.ID, store.Page{})
	if err != nil {
		return nil, err
	}
	nodes, err := s.store.NodeList(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string]int64{} // nodes holding quota, by folded compute ID
	for _, n := range nodes {
		if n.State.HoldsQuota() {
			held[strings.ToLower(n.ComputeID)]++
		}
	}
	used := map[string]int64{}
	for _, c := range cs {
		size, ok := reg.Size(c.VMSize)
		if !ok {
			continue
		}
		family, _ := model.QuotaLimit(nil, size, c.Priority)
		used[family] += held[strings.ToLower(c.ID)] * int64(size.VCPUs)
	}
	return used, nil
}

// workspaceQuotas is a workspace and the quota limits that apply to it.
type workspaceQuotas struct {
	ws     model.Workspace
	quotas []model.Quota
}

// regionQuotas lists, for every workspace of the path's subscription in the
// path's region, the quotas that apply to it.
func (s *Server) regionQuotas(ctx context.Context, r *http.Request) (model.Region, []workspaceQuotas, error) {
	reg, err := s.loadRegion(r)
	if err != nil {
		return reg, nil, err
	}
	wss, err := s.regionWorkspaces(ctx, r, reg)
	if err != nil {
		return reg, nil, err
	}
	var out []workspaceQuotas
	for _, ws := range wss {
		stored, err := s.store.QuotaList(ctx, ws.ID)
		if err != nil {
			return reg, nil, err
		}
		out = append(out, workspaceQuotas{ws: ws, quotas: effectiveQuotas(reg, ws, stored)})
	}
	return reg, out, nil
}

func (s *Server) usages(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	reg, all, err := s.regionQuotas(ctx, r)
	if err != nil {
		return err
	}
	out := api.UsageList{Value: []api.Usage{}}
	for _, wq := range all {
		used, err := s.usedVCPUs(ctx, wq.ws, reg)
		if err != nil {
			return err
		}
		for _, q := range wq.quotas {
			out.Value = append(out.Value, api.Usage{
				ID: wq.ws.ID + "/usages/" + q.Family, AMLWorkspaceLocation: wq.ws.Location, Type: api.ProviderNamespace + "/workspaces/usages",
				Unit: "Count", CurrentValue: used[q.Family], Limit: q.Limit,
				Name: api.UsageName{Value: q.Family, LocalizedValue: familyLabel(q.Family)},
			})
		}
	}
	host, err := s.hostUsages(ctx, r, reg, all)
	if err != nil {
		return err
	}
	out.Value = append(out.Value, host...)
	perHost, err := s.perHostUsages(ctx, r, reg)
	if err != nil {
		return err
	}
	out.Value = append(out.Value, perHost...)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Usage names of the host capacity entries of a region's usages, which
// kumo lists after the workspace quotas: what the node provider can hold
// for all nodes of the region together, whatever the quotas allow.
const (
	UsageHostVCPUs    = "hostVCPUs"
	UsageHostMemoryGB = "hostMemoryGB"
	UsageHostGPUs     = "hostGPUs"
)

// hostUsages reports the region's host capacity (after overcommit) and
// what the nodes of the listed workspaces hold of it; none when the
// region's host is unknown.
func (s *Server) hostUsages(ctx context.Context, r *http.Request, reg model.Region, all []workspaceQuotas) ([]api.Usage, error) {
	h := reg.Host
	if h.VCPUs <= 0 {
		return nil, nil
	}
	nodes, err := s.store.NodeList(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string]int64{} // nodes holding capacity, by folded compute ID
	for _, n := range nodes {
		if n.State.HoldsQuota() {
			held[strings.ToLower(n.ComputeID)]++
		}
	}
	var vcpus, gpus int64
	var memGB float64
	for _, wq := range all {
		cs, err := s.store.ComputeList(ctx, wq.ws.ID, store.Page{})
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			size, ok := reg.Size(c.VMSize)
			if !ok {
				continue
			}
			n := held[strings.ToLower(c.ID)]
			vcpus += n * int64(size.VCPUs)
			memGB += float64(n) * size.MemoryGB
			gpus += n * int64(size.GPUs)
		}
	}
	id := "/subscriptions/" + r.PathValue("sub") + "/providers/" + api.ProviderNamespace + "/locations/" + reg.Name + "/usages/"
	usage := func(name, label, unit string, cur, limit int64) api.Usage {
		return api.Usage{ID: id + name, AMLWorkspaceLocation: reg.Name, Type: api.ProviderNamespace + "/locations/usages",
			Unit: unit, CurrentValue: cur, Limit: limit,
			Name: api.UsageName{Value: name, LocalizedValue: fmt.Sprintf("Host %s (region %s)", label, reg.Name)}}
	}
	out := []api.Usage{
		usage(UsageHostVCPUs, "vCPUs", "Count", vcpus, int64(h.VCPUs)),
		usage(UsageHostMemoryGB, "memory GB", "GB", int64(math.Ceil(memGB)), int64(h.MemoryGB)),
	}
	if h.GPUs > 0 {
		out = append(out, usage(UsageHostGPUs, "GPUs", "Count", gpus, int64(h.GPUs)))
	}
	return out, nil
}

// perHostUsages reports, for a region of hosts, each host's vCPUs, memory
// and GPUs and what the region's nodes hold of them, as usages named
// hostVCPUs/<host> and so on; none for other regions.
func (s *Server) perHostUsages(ctx context.Context, r *http.Request, reg model.Region) ([]api.Usage, error) {
	hr := s.hosts[strings.ToLower(reg.Name)]
	if hr == nil {
		return nil, nil
	}
	hosts, err := hr.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	id := "/subscriptions/" + r.PathValue("sub") + "/providers/" + api.ProviderNamespace + "/locations/" + reg.Name + "/usages/"
	var out []api.Usage
	for _, h := range hosts {
		note := ""
		if h.Error != "" {
			note = ", not answering"
		}
		usage := func(name, what, unit string, cur, limit int64) api.Usage {
			return api.Usage{ID: id + name + "/" + h.Name, AMLWorkspaceLocation: reg.Name, Type: api.ProviderNamespace + "/locations/usages",
				Unit: unit, CurrentValue: cur, Limit: limit,
				Name: api.UsageName{Value: name + "/" + h.Name, LocalizedValue: fmt.Sprintf("Host %s %s (region %s%s)", h.Name, what, reg.Name, note)}}
		}
		if h.VCPUs > 0 {
			out = append(out, usage(UsageHostVCPUs, "vCPUs", "Count", int64(h.Used.VCPUs), int64(h.VCPUs)),
				usage(UsageHostMemoryGB, "memory GB", "GB", int64(math.Ceil(float64(h.Used.MemoryMB)/1024)), h.MemoryMB/1024))
		} else {
			out = append(out, usage("hostNodes", "nodes", "Count", int64(h.Nodes), 1))
		}
		if h.GPUs > 0 {
			out = append(out, usage(UsageHostGPUs, "GPUs", "Count", int64(h.Used.GPUs), int64(h.GPUs)))
		}
	}
	return out, nil
}

// effectiveQuotas lists, for every family the region offers and for
// low-priority nodes, the limit that applies to ws.
func effectiveQuotas(reg model.Region, ws model.Workspace, stored []model.Quota) []model.Quota {
	var out []model.Quota
	for _, fam := range append(reg.Families(), model.LowPriorityFamily) {
		out = append(out, model.Quota{WorkspaceID: ws.ID, Family: fam, Limit: model.FamilyLimit(stored, fam)})
	}
	return out
}

func (s *Server) quotas(w http.ResponseWriter, r *http.Request) error {
	_, all, err := s.regionQuotas(r.Context(), r)
	if err != nil {
		return err
	}
	out := api.QuotaList{Value: []api.ResourceQuota{}}
	for _, wq := range all {
		for _, q := range wq.quotas {
			out.Value = append(out.Value, api.ResourceQuota{
				ID: wq.ws.ID + "/quotas/" + q.Family, AMLWorkspaceLocation: wq.ws.Location, Type: api.TypeQuota,
				Name: api.UsageName{Value: q.Family, LocalizedValue: familyLabel(q.Family)}, Limit: q.Limit, Unit: "Count",
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxQuota bounds a quota limit, in vCPUs.
const maxQuota = 1_000_000

func (s *Server) updateQuotas(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	reg, err := s.loadRegion(r)
	if err != nil {
		return err
	}
	var body api.QuotaUpdateParameters
	if err := decode(r, &body); err != nil {
		return err
	}
	if len(body.Value) == 0 {
		return badRequest(api.CodeInvalidParameter, "value", "value must list at least one quota to update")
	}
	families := map[string]string{strings.ToLower(model.LowPriorityFamily): model.LowPriorityFamily}
	for _, f := range reg.Families() {
		families[strings.ToLower(f)] = f
	}
	// Validate every entry before changing anything.
	var updates []model.Quota
	for i, v := range body.Value {
		target := fmt.Sprintf("value[%d]", i)
		wsID, fam, ok := strings.Cut(v.ID, "/quotas/")
		if !ok || !strings.HasPrefix(strings.ToLower(wsID), strings.ToLower("/subscriptions/"+r.PathValue("sub")+"/")) {
			return badRequest(api.CodeInvalidParameter, target+".id", "%s.id %s must be a workspace quota ID ending in /workspaces/{workspace}/quotas/{vmFamily}", target, model.Quote(v.ID))
		}
		canon, ok := families[strings.ToLower(fam)]
		if !ok {
			return badRequest(api.CodeInvalidParameter, target+".id", "%s.id names VM family %q, which region %q does not offer", target, fam, reg.Name)
		}
		if v.Limit < 0 || v.Limit > maxQuota {
			return badRequest(api.CodeInvalidParameter, target+".limit", "%s.limit %d is out of range: it must be between 0 and %d", target, v.Limit, maxQuota)
		}
		ws, err := s.store.WorkspaceGet(ctx, wsID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !model.SameLocation(ws.Location, reg.Name)) {
			return badRequest(api.CodeInvalidParameter, target+".id", "%s.id names a workspace that does not exist in region %q", target, reg.Name)
		}
		if err != nil {
			return err
		}
		updates = append(updates, model.Quota{WorkspaceID: ws.ID, Family: canon, Limit: v.Limit})
	}
	out := api.UpdateWorkspaceQuotasResult{}
	for _, q := range updates {
		if err := s.store.QuotaSet(ctx, q); err != nil {
			return err
		}
		out.Value = append(out.Value, api.UpdateWorkspaceQuotas{ID: q.WorkspaceID + "/quotas/" + q.Family, Type: api.TypeQuota, Limit: q.Limit, Unit: "Count", Status: "Success"})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
