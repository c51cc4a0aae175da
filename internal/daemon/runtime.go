package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"kumo/internal/controller/autoscale"
	"kumo/internal/controller/dispatch"
	"kumo/internal/controller/nodehealth"
	"kumo/internal/controller/provision"
	"kumo/internal/controller/snapshotgc"
	"kumo/internal/feed"
	"kumo/internal/hub"
	"kumo/internal/jobfiles"
	"kumo/internal/jobuser"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/server"
	"kumo/internal/store"
)

// nodeRuntime is what makes clusters real: the job files, the agent hub,
// the node providers, and the reconcile loops. Every replica serves the
// API and agent connections; the loops run only on the replica that
// holds the controller lease (see package leader), built afresh for each
// term it holds and stopped when the term ends.
type nodeRuntime struct {
	o       Options
	st      store.Store
	files   *jobfiles.Files
	hub     *hub.Hub
	regions map[string]model.Region // keyed by name; what the server and the autoscaler serve
	// providers are the regions' providers, keyed by region name.
	providers map[string]provider.Provider
	// nodeUIDs are the uids nodes get as root; nil otherwise.
	nodeUIDs, localUIDs *jobuser.Range
	agentURL, caFile    string
	// feed carries compute changes between replicas; nil on SQLite,
	// which one process serves.
	feed *feed.Changes

	mu sync.Mutex
	// loops are the current term's reconcile loops; nil while this
	// replica does not lead.
	loops *loops
}

// loops are one leadership term's reconcile loops.
type loops struct {
	dispatch *dispatch.Dispatcher
	scaler   *autoscale.Autoscaler
	health   *nodehealth.Checker
	gc       *snapshotgc.Collector
	prov     *provision.Provisioner
}

// newRuntime builds the runtime of a control plane serving at base and
// known to other replicas as advertise.
func newRuntime(o Options, st store.Store, base, advertise string) (*nodeRuntime, error) {
	files, err := jobfiles.New(o.FilesDir)
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
	rt := &nodeRuntime{o: o, st: st, files: files}
	// Where jobs of compute "local" ran before they moved to the work
	// directory; nothing runs there now.
	if err := os.RemoveAll(filepath.Join(o.DataDir, "local-jobs")); err != nil {
		return nil, err
	}
	// On PostgreSQL, replicas may share the store: nodes' presence and
	// messages, and compute changes, travel through it.
	replica := ""
	if o.Database != "" {
		replica = o.Replica
		rt.feed, err = feed.New(feed.Config{Store: st, Replica: replica, Changed: rt.notifyLoops, Resync: rt.resyncLoops, Log: o.Log})
		if err != nil {
			return nil, err
		}
	}
	// As root, nodes get uids of the first part of the range, one each, and
	// local jobs the rest, one per running job.
	if jobuser.Enabled() {
		n, l := o.JobUIDs.Split()
		rt.nodeUIDs, rt.localUIDs = &n, &l
	}
	regions, provs, err := o.buildRegions(rt.nodeUIDs)
	if err != nil {
		return nil, err
	}
	rt.regions, rt.providers = regions, provs
	rt.agentURL = strings.Join(o.AgentURLs, ",")
	if rt.agentURL == "" {
		rt.agentURL = base
	}
	if strings.HasPrefix(base, "https") {
		rt.caFile, err = filepath.Abs(filepath.Join(o.DataDir, caCertFile))
		if err != nil {
			return nil, err
		}
	}
	// The other replicas relay SSH streams through advertise, verified with the
	// shared CA.
	rt.hub = hub.New(hub.Config{Store: st, Files: files, HeartbeatInterval: o.HeartbeatInterval, Changed: rt.changed, Replica: replica,
		Address: advertise, CAFile: rt.caFile, Log: o.Log})
	return rt, nil
}

// newLoops builds one term's reconcile loops. They tell each other of
// changes only through rt.changed, which reaches the loops of whichever
// replica leads (through the store's feed when replicas share one).
func (rt *nodeRuntime) newLoops() *loops {
	o, st := rt.o, rt.st
	l := &loops{}
	l.gc = snapshotgc.New(snapshotgc.Config{Store: st, Snapshots: rt.files, Grace: o.SnapshotGrace, Log: o.Log})
	l.dispatch = dispatch.New(dispatch.Config{Store: st, Sender: rt.hub, Run: rt.hub.RunMessage, Files: rt.files,
		LocalDir: filepath.Join(o.WorkDir, "local"), LocalUIDs: rt.localUIDs, LocalDisabled: o.LocalComputeOff,
		Changed: rt.changed, Log: o.Log})
	l.scaler = autoscale.New(autoscale.Config{
		Store: st, Providers: rt.providers, Regions: rt.regions,
		AgentURL: rt.agentURL, AgentCAFile: rt.caFile, Sessions: rt.hub, Changed: rt.changed, Log: o.Log,
	})
	l.health = nodehealth.New(nodehealth.Config{
		Store: st, Providers: rt.providers, Regions: rt.regions,
		HeartbeatTimeout: o.HeartbeatTimeout, BootTimeout: o.BootTimeout,
		Liveness: rt.hub, Sender: rt.hub, Changed: rt.changed, Log: o.Log,
	})
	l.prov = provision.New(provision.Config{Store: st, Finalizer: l.scaler, Ready: rt.changed, Log: o.Log})
	return l
}

// current returns the loops of the term under way, or nil.
func (rt *nodeRuntime) current() *loops {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.loops
}

// provisionerKey is what rt.changed is told when a compute was created,
// changed or deleted, for the provisioner; compute IDs are ARM IDs, so no
// compute has it.
const provisionerKey = "provisioner"

// changed tells the loops of whichever replica leads that a compute's jobs
// or nodes changed (or, with provisionerKey, that the provisioner has
// work).
func (rt *nodeRuntime) changed(computeID string) {
	if rt.feed != nil {
		rt.feed.Publish(computeID) // here at once, and on the others
		return
	}
	rt.notifyLoops(computeID)
}

// notifyLoops kicks this replica's loops, if it leads, for one compute.
func (rt *nodeRuntime) notifyLoops(computeID string) {
	l := rt.current()
	switch {
	case l == nil:
	case computeID == provisionerKey:
		l.prov.Notify()
	default:
		l.dispatch.Notify(computeID)
		if !dispatch.IsLocal(computeID) {
			l.scaler.Notify(computeID)
		}
	}
}

// resyncLoops kicks this replica's loops, if it leads, for every compute:
// changes announced by other replicas may have been missed.
func (rt *nodeRuntime) resyncLoops() {
	l := rt.current()
	if l == nil {
		return
	}
	l.prov.Notify()
	l.health.Kick()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := rt.st.ComputeListByState(ctx, model.StateSucceeded, model.StateUpdating, model.StateDeleting)
	if err != nil {
		rt.o.Log.Error("resync after missed changes", "err", err)
		return
	}
	for _, c := range cs {
		rt.notifyLoops(c.ID)
	}
}

// Notify implements server.Notifier: a compute was created, changed or
// deleted, for the provisioner.
func (rt *nodeRuntime) Notify() { rt.changed(provisionerKey) }

// startReplica starts what every replica runs, leader or not: the hub's
// presence and outbox, and the feed of compute changes.
func (rt *nodeRuntime) startReplica(ctx context.Context) error {
	if err := rt.hub.Start(ctx); err != nil {
		return err
	}
	if rt.feed != nil {
		if err := rt.feed.Start(ctx); err != nil {
			rt.hub.Stop()
			return fmt.Errorf("compute change feed: %w", err)
		}
	}
	return nil
}

// lead runs one leadership term: it builds and starts the reconcile
// loops, and stops them when ctx ends (the term is over).
func (rt *nodeRuntime) lead(ctx context.Context) {
	l := rt.newLoops()
	l.prov.Start(ctx)
	l.dispatch.Start(ctx)
	l.scaler.Start(ctx)
	l.health.Start(ctx)
	l.gc.Start(ctx)
	rt.mu.Lock()
	rt.loops = l
	rt.mu.Unlock()
	<-ctx.Done()
	rt.mu.Lock()
	rt.loops = nil
	rt.mu.Unlock()
	l.health.Stop()
	l.gc.Stop()
	l.scaler.Stop()
	l.dispatch.Stop()
	l.prov.Stop()
}

// stop ends agent connections. Nodes keep running: they reconnect when
// the control plane is back, or to another replica.
func (rt *nodeRuntime) stop() {
	if rt.feed != nil {
		rt.feed.Stop()
	}
	rt.hub.Stop()
	rt.hub.Close()
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
	if l := rt.current(); l != nil {
		l.health.Kick()
	}
	return nil
}
