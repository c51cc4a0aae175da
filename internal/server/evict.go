package server

import (
	"context"
	"errors"
	"net/http"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/provider"
)

// Evicter takes nodes away as their provider would evict spot VMs. The
// daemon implements it over the region's provider. SimulateEviction gives
// the instances notice; an error wrapping provider.ErrNotPreemptible means
// some were refused, and ErrEvictionUnsupported that the region's provider
// cannot evict.
type Evicter interface {
	SimulateEviction(ctx context.Context, location string, nodeIDs []string) error
}

// ErrEvictionUnsupported is returned (wrapped) by an Evicter whose region's
// provider cannot evict instances.
var ErrEvictionUnsupported = errors.New("the region's node provider cannot simulate evictions")

// computeSimulateEviction serves POST .../computes/{name}/simulateEviction
// [?nodeId=ID], named after Azure's az vm simulate-eviction: every live node
// of the cluster, or the one named, is evicted with the region's lead time.
// A Dedicated cluster's nodes are never evicted.
func (s *Server) computeSimulateEviction(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := s.loadCompute(ctx, r)
	if err != nil {
		return err
	}
	if c.Priority != model.PriorityLowPriority {
		return errorf(http.StatusConflict, api.CodeOperationNotAllowed,
			"compute %q is %s: only the nodes of a LowPriority cluster can be evicted", c.Name, c.Priority)
	}
	ns, err := s.store.NodeListByCompute(ctx, c.ID)
	if err != nil {
		return err
	}
	want := r.URL.Query().Get("nodeId")
	var ids []string
	for _, n := range ns {
		live := n.State == model.NodePreparing || n.State == model.NodeIdle || n.State == model.NodeRunning
		if live && (want == "" || n.ID == want) {
			ids = append(ids, n.ID)
		}
	}
	if want != "" && len(ids) == 0 {
		return errorf(http.StatusNotFound, api.CodeResourceNotFound, "compute %q has no live node %q", c.Name, want)
	}
	if len(ids) > 0 {
		if s.evicter == nil {
			return errorf(http.StatusBadRequest, api.CodeOperationNotAllowed, "%s", ErrEvictionUnsupported.Error())
		}
		err := s.evicter.SimulateEviction(ctx, c.Location, ids)
		switch {
		case errors.Is(err, ErrEvictionUnsupported):
			return errorf(http.StatusBadRequest, api.CodeOperationNotAllowed, "%s", err.Error())
		case errors.Is(err, provider.ErrNotPreemptible):
			return errorf(http.StatusConflict, api.CodeOperationNotAllowed,
				"some nodes of compute %q were created before it was LowPriority and cannot be evicted: %s", c.Name, err.Error())
		case err != nil:
			return err
		}
	}
	writeJSON(w, http.StatusAccepted, api.SimulateEvictionResult{NodeIDs: append([]string{}, ids...)})
	return nil
}
