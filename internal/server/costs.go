package server

import (
	"context"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/store"
)

// hoursRound rounds node-hours for display (to the second's worth).
func hoursRound(h float64) float64 { return math.Round(h*10000) / 10000 }

// computeCost is a compute's cost now and since it was created: its
// usage records summed by the store, records still open priced up to now.
func (s *Server) computeCost(ctx context.Context, c model.Compute) (*api.ComputeCost, error) {
	sum, err := s.store.UsageSumByCompute(ctx, c.ID, c.CreatedAt, s.now().UTC())
	if err != nil || sum.Records == 0 {
		return nil, err
	}
	return &api.ComputeCost{Currency: "USD", SoFar: model.Cents(sum.Cost),
		PerHour: math.Round(sum.OpenPricePerHour*10000) / 10000}, nil
}

// jobCost sets a job's node-hours and cost so far.
func (s *Server) jobCost(ctx context.Context, j model.Job, p *api.JobProperties) error {
	if len(j.History) == 0 || j.History[0].NodeID == "" {
		return nil
	}
	now := s.now().UTC()
	us, err := s.store.UsageList(ctx, j.WorkspaceID, j.ComputeID, j.History[0].StartedAt, now)
	if err != nil {
		return err
	}
	prices := map[string]float64{}
	for _, u := range us {
		prices[u.NodeID] = u.PricePerHour
	}
	h, cost := model.JobUsage(j, prices, time.Time{}, now)
	p.NodeHours, p.Cost = hoursRound(h), model.Cents(cost)
	return nil
}

// costReport serves GET .../workspaces/{ws}/costs?from=&to=: what the
// workspace's nodes cost within [from, to) (RFC 3339 times; to defaults to
// now, from to 30 days before to), per compute and per job.
func (s *Server) costReport(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.loadWorkspace(ctx, r)
	if err != nil {
		return err
	}
	to, from := s.now().UTC(), time.Time{}
	if v := r.URL.Query().Get("to"); v != "" {
		if to, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest(api.CodeInvalidParameter, "to", "to must be an RFC 3339 time such as 2026-03-01T00:00:00Z; got %q", v)
		}
	}
	from = to.Add(-30 * 24 * time.Hour)
	if v := r.URL.Query().Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest(api.CodeInvalidParameter, "from", "from must be an RFC 3339 time such as 2026-03-01T00:00:00Z; got %q", v)
		}
	}
	if !from.Before(to) {
		return badRequest(api.CodeInvalidParameter, "from", "from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	us, err := s.store.UsageList(ctx, ws.ID, "", from, to)
	if err != nil {
		return err
	}
	rep := api.CostReport{Currency: "USD", From: s.timestamp(from), To: s.timestamp(to), Computes: []api.ComputeCostLine{}, Jobs: []api.JobCostLine{}}
	byCompute := map[string]*api.ComputeCostLine{}
	prices := map[string]float64{}
	total := 0.0
	for _, u := range us {
		name := u.ComputeID[strings.LastIndex(u.ComputeID, "/")+1:]
		line, ok := byCompute[strings.ToLower(name)]
		if !ok {
			line = &api.ComputeCostLine{Name: name}
			byCompute[strings.ToLower(name)] = line
		}
		c := u.Cost(from, to)
		line.NodeHours += u.Span(from, to).Hours()
		line.Cost += c
		total += c
		prices[u.NodeID] = u.PricePerHour
	}
	for _, k := range slices.Sorted(maps.Keys(byCompute)) {
		l := byCompute[k]
		l.NodeHours, l.Cost = hoursRound(l.NodeHours), model.Cents(l.Cost)
		rep.Computes = append(rep.Computes, *l)
	}
	jobs, err := s.store.JobList(ctx, ws.ID, store.Page{})
	if err != nil {
		return err
	}
	for _, j := range jobs {
		h, c := model.JobUsage(j, prices, from, to)
		if h == 0 {
			continue
		}
		rep.Jobs = append(rep.Jobs, api.JobCostLine{Name: j.Name, Compute: j.ComputeID[strings.LastIndex(j.ComputeID, "/")+1:],
			NodeHours: hoursRound(h), Cost: model.Cents(c)})
	}
	rep.Total = model.Cents(total)
	writeJSON(w, http.StatusOK, rep)
	return nil
}
