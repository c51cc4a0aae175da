package client

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"time"

	"kumo/api"
)

// VMSizes returns the VM sizes offered in the workspace's location, like
// AML v1's AmlCompute.supported_vmsizes.
func (w *Workspace) VMSizes(ctx context.Context) ([]api.VMSize, error) {
	loc, err := w.Location(ctx)
	if err != nil {
		return nil, err
	}
	var out api.VMSizeList
	if _, err := w.do(ctx, http.MethodGet, w.locationPath(loc)+"/vmSizes", nil, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// Usages returns the vCPU usage counters of the workspace's location,
// following nextLink.
func (w *Workspace) Usages(ctx context.Context) ([]api.Usage, error) {
	loc, err := w.Location(ctx)
	if err != nil {
		return nil, err
	}
	var all []api.Usage
	for next := w.locationPath(loc) + "/usages"; next != ""; {
		var page api.UsageList
		if _, err := w.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Value...)
		next = page.NextLink
	}
	return all, nil
}

// Quotas returns the workspace quotas of the workspace's location, like AML
// v1's AmlCompute.list_quotas, following nextLink.
func (w *Workspace) Quotas(ctx context.Context) ([]api.ResourceQuota, error) {
	loc, err := w.Location(ctx)
	if err != nil {
		return nil, err
	}
	var all []api.ResourceQuota
	for next := w.locationPath(loc) + "/quotas"; next != ""; {
		var page api.QuotaList
		if _, err := w.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Value...)
		next = page.NextLink
	}
	return all, nil
}

// UpdateQuotas sets this workspace's vCPU limit per VM family (or for
// api.LowPriorityQuotaName), like AML v1's AmlCompute.update_quotas. limits
// maps a family name such as "standardDv2Family" to its new limit.
func (w *Workspace) UpdateQuotas(ctx context.Context, limits map[string]int64) ([]api.UpdateWorkspaceQuotas, error) {
	loc, err := w.Location(ctx)
	if err != nil {
		return nil, err
	}
	families := make([]string, 0, len(limits))
	for f := range limits {
		families = append(families, f)
	}
	sort.Strings(families)
	body := api.QuotaUpdateParameters{Location: loc}
	for _, f := range families {
		body.Value = append(body.Value, api.QuotaBaseProperties{
			ID:    w.workspacePath(w.cfg.WorkspaceName) + "/quotas/" + f,
			Type:  api.TypeQuota,
			Limit: limits[f],
			Unit:  "Count",
		})
	}
	var out api.UpdateWorkspaceQuotasResult
	if _, err := w.do(ctx, http.MethodPost, w.locationPath(loc)+"/updateQuotas", body, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// Costs returns what the workspace's nodes cost within [from, to), per
// compute and per job (kumo's own route); zero times mean the server's
// defaults (to now, from 30 days before to).
func (w *Workspace) Costs(ctx context.Context, from, to time.Time) (*api.CostReport, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339))
	}
	target := w.workspacePath(w.cfg.WorkspaceName) + "/costs"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	var out api.CostReport
	if _, err := w.do(ctx, http.MethodGet, target, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
