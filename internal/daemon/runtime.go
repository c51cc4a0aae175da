package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"kumo/internal/controller/autoscale"
	"kumo/internal/controller/dispatch"
	"kumo/internal/controller/nodehealth"
	"kumo/internal/controller/snapshotgc"
	"kumo/internal/hub"
	"kumo/internal/jobfiles"
	"kumo/internal/jobuser"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/server"
	"kumo/internal/store"
)

// nodeRuntime is what makes clusters real: the job files, the agent hub, the
// dispatcher, the autoscaler and the node providers.
type nodeRuntime struct {
	files    *jobfiles.Files
	hub      *hub.Hub
	dispatch *dispatch.Dispatcher
	scaler   *autoscale.Autoscaler
	health   *nodehealth.Checker
	gc       *snapshotgc.Collector
	regions  map[string]model.Region // keyed by name; what the server and the autoscaler serve
	// providers are the regions' providers, keyed by region name.
	providers map[string]provider.Provider
}

func newRuntime(o Options, st store.Store, base string) (*nodeRuntime, error) {
	files, err := jobfiles.New(filepath.Join(o.DataDir, "files"))
	if err != nil {
		return nil, err
	}
	files.SetLimits(o.SnapshotLimits, o.ArtifactLimits)
	switch {
	case o.MaxJobLogBytes > 0:
		files.SetLogLimit(o.MaxJobLogBytes)
	case o.MaxJobLogBytes < 0:
		files.SetLogLimit(0)
	}
	rt := &nodeRuntime{files: files}
	rt.gc = snapshotgc.New(snapshotgc.Config{Store: st, Snapshots: files, Grace: o.SnapshotGrace, Log: o.Log})
	// Where jobs of compute "local" ran before they moved to the work
	// directory; nothing runs there now.
	if err := os.RemoveAll(filepath.Join(o.DataDir, "local-jobs")); err != nil {
		return nil, err
	}
	rt.hub = hub.New(hub.Config{Store: st, Files: files, HeartbeatInterval: o.HeartbeatInterval, Changed: rt.changed, Log: o.Log})
	// As root, nodes get uids of the first part of the range, one each, and
	// local jobs the rest, one per running job.
	var nodeUIDs, localUIDs *jobuser.Range
	if jobuser.Enabled() {
		n, l := o.JobUIDs.Split()
		nodeUIDs, localUIDs = &n, &l
	}
	rt.dispatch = dispatch.New(dispatch.Config{Store: st, Sender: rt.hub, Run: rt.hub.RunMessage, Files: files,
		LocalDir: filepath.Join(o.WorkDir, "local"), LocalUIDs: localUIDs, LocalDisabled: o.LocalComputeOff,
		Changed: rt.changed, Log: o.Log})
	regions, provs, err := o.buildRegions(nodeUIDs)
	if err != nil {
		return nil, err
	}
	rt.regions, rt.providers = regions, provs
	caFile := ""
	if base[:5] == "https" {
		caFile, err = filepath.Abs(filepath.Join(o.DataDir, caCertFile))
		if err != nil {
			return nil, err
		}
	}
	rt.scaler = autoscale.New(autoscale.Config{
		Store: st, Providers: provs, Regions: regions,
		AgentURL: base, AgentCAFile: caFile, Sessions: rt.hub, Changed: rt.dispatch.Notify, Log: o.Log,
	})
	rt.health = nodehealth.New(nodehealth.Config{
		Store: st, Providers: provs, Regions: regions,
		HeartbeatTimeout: o.HeartbeatTimeout, BootTimeout: o.BootTimeout,
		Liveness: rt.hub, Sender: rt.hub, Changed: rt.changed, Log: o.Log,
	})
	return rt, nil
}

// changed tells the dispatcher and the autoscaler that a compute's jobs or
// nodes changed.
func (rt *nodeRuntime) changed(computeID string) {
	rt.dispatch.Notify(computeID)
	if !dispatch.IsLocal(computeID) {
		rt.scaler.Notify(computeID)
	}
}

func (rt *nodeRuntime) start(ctx context.Context) {
	rt.dispatch.Start(ctx)
	rt.scaler.Start(ctx)
	rt.health.Start(ctx)
	rt.gc.Start(ctx)
}

// stop ends agent connections and the loops. Nodes keep running: they
// reconnect when the control plane is back.
func (rt *nodeRuntime) stop() {
	rt.hub.Close()
	rt.health.Stop()
	rt.gc.Stop()
	rt.scaler.Stop()
	rt.dispatch.Stop()
	// Providers that hold connections (sshhosts) let them go.
	for _, p := range rt.providers {
		if c, ok := p.(io.Closer); ok {
			c.Close()
		}
	}
}

// hostReporters returns the regions' providers that report per-host
// capacity, by region name.
func (rt *nodeRuntime) hostReporters() map[string]provider.HostReporter {
	out := map[string]provider.HostReporter{}
	for name, p := range rt.providers {
		if hr, ok := p.(provider.HostReporter); ok {
			out[name] = hr
		}
	}
	return out
}

// SimulateEviction implements server.Evicter over the provider of the
// compute's region.
func (rt *nodeRuntime) SimulateEviction(ctx context.Context, location string, nodeIDs []string) error {
	key := strings.ToLower(strings.ReplaceAll(location, " ", ""))
	prov, ok := rt.providers[key]
	if !ok {
		prov, ok = rt.providers[rt.regions[key].Provider]
	}
	ev, can := prov.(provider.Evicter)
	if !ok || !can {
		return fmt.Errorf("region %s: %w", location, server.ErrEvictionUnsupported)
	}
	if err := ev.Evict(ctx, nodeIDs); err != nil {
		return err
	}
	rt.health.Kick()
	return nil
}
