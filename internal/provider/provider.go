// Package provider defines how kumo gets nodes: a [Provider] creates,
// deletes and lists instances (machines, processes, pods) on which the node
// agent runs. The control plane owns every loop, timer and retry; a provider
// only answers "list what you hold", "create these" and "delete these", and
// the control plane picks instance IDs, so repeating a call is harmless.
//
// Extra capabilities are optional interfaces a provider may also implement:
// [CapacityReporter], [Offerer], [HostReporter] and [PreemptionNotifier].
// Built-in providers are listed in package builtin; docs/providers.md is the
// guide for writing one.
package provider

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Provider creates, deletes and lists instances.
//
// Contract:
//   - Methods are safe for concurrent use, but the control plane calls them
//     from one reconcile loop per region, so a provider need not make
//     concurrent calls fast.
//   - Calls may block (a cloud API, waiting for a process to stop) and must
//     return when ctx is done.
//   - Create of an ID the provider already holds does nothing for that ID,
//     whatever the instance's state. Delete of an ID it does not hold is not
//     an error. So both can be retried blindly.
//   - Instances outlive the provider value and the control-plane process:
//     after a restart, a new provider value's List reports what the old one
//     created (providers keep their own records, e.g. on disk or as cloud
//     tags), and Delete can remove them.
//   - A provider starts no goroutine that outlives a call, unless it has
//     Start/Stop methods documented as owning it.
type Provider interface {
	// Create starts the given instances. It returns once each is created
	// or has failed to be; it need not wait for them to boot (List reports
	// StateStarting until then). Instances it could not create are not
	// recorded; the error says which, as [*InstanceError] values joined with
	// errors.Join, and wraps [*CapacityError] when capacity was short.
	Create(ctx context.Context, instances []Instance) error

	// Delete stops the given instances and forgets them. IDs it does not
	// hold are ignored. It returns once they are gone, or with an error
	// naming those it could not remove (which stay listed).
	Delete(ctx context.Context, ids []string) error

	// List returns every instance the provider holds, in any state, sorted
	// by ID. An empty result is a nil or empty slice, not an error.
	List(ctx context.Context) ([]InstanceStatus, error)
}

// CapacityReporter is implemented by providers that know how many more
// instances fit, so the control plane can report CapacityExhausted instead
// of failing creates.
type CapacityReporter interface {
	// Capacity returns how many more instances of size could be created
	// now, given what the provider already holds. It may be 0.
	Capacity(ctx context.Context, size Size) (int, error)
}

// Offerer is implemented by providers whose capacity is fixed by their
// configuration (a list of hosts), so the control plane can offer exactly
// the sizes that fit and report the region's total.
type Offerer interface {
	// Offers reports whether one instance of size fits on the empty
	// provider (on at least one of its hosts, and among the sizes a host
	// offers). It must not block.
	Offers(size Size) bool
	// Total returns the provider's whole capacity: vCPUs, MiB and GPUs
	// summed over its hosts (Name is empty).
	Total() Size
}

// HostReporter is implemented by providers whose capacity is a set of
// hosts, to report each host's capacity and use.
type HostReporter interface {
	// Hosts returns every configured host, in configuration order. It
	// reads the provider's records and must not wait on the hosts.
	Hosts(ctx context.Context) ([]HostUsage, error)
}

// HostUsage is one host's capacity and what the provider's instances hold
// of it.
type HostUsage struct {
	Name     string // the host's name in the provider's configuration
	Address  string // HOST:PORT
	VCPUs    int    // vCPUs nodes may take together; 0 means one node at a time
	MemoryMB int64  // MiB nodes may take together
	GPUs     int
	Used     Size   // what instances hold (Name is empty)
	Nodes    int    // instances on the host
	Error    string // why the host last failed to answer; "" when it answered or was not tried
}

// PreemptionNotifier is implemented by providers whose instances can be
// taken away (spot/low-priority VMs): only instances created with
// Instance.Preemptible. The control plane acts on a notice only for nodes
// of LowPriority clusters, so a Dedicated node is never evicted.
type PreemptionNotifier interface {
	// Preempted returns the instances that are being or have been taken
	// away since they were created, with when. The control plane polls it;
	// the provider keeps reporting an instance until it is deleted.
	Preempted(ctx context.Context) ([]Preemption, error)
}

// Preemption is a notice that an instance is taken away.
type Preemption struct {
	ID string    // instance ID
	At time.Time // when it stops (or stopped); zero means unknown
}

// Evicter is implemented by providers that can take a preemptible instance
// away on request, as Azure's simulate-eviction does, so that teams can
// rehearse: the instances are then reported by Preempted with At = now +
// the provider's lead time. Instances not created Preemptible are refused
// with an error wrapping ErrNotPreemptible and are not evicted; unknown IDs
// are ignored.
type Evicter interface {
	Evict(ctx context.Context, ids []string) error
}

// ErrNotPreemptible is wrapped by Evict's error for instances that were not
// created Preemptible.
var ErrNotPreemptible = errors.New("instance is not preemptible")

// Size is a VM size: what one instance offers.
type Size struct {
	Name     string `json:"name"`      // e.g. "STANDARD_DS3_V2"
	VCPUs    int    `json:"vcpus"`     // virtual CPUs
	MemoryMB int64  `json:"memory_mb"` // memory in MiB
	GPUs     int    `json:"gpus"`      // GPUs; 0 means none
}

// Instance is what the control plane asks a provider to create. Agent holds
// what the node needs to start its agent; providers pass it through without
// interpreting it.
type Instance struct {
	ID      string      `json:"id"`      // chosen by the control plane; unique per provider; [A-Za-z0-9._-], at most 128 bytes
	Compute string      `json:"compute"` // the compute (cluster) it belongs to
	Size    Size        `json:"size"`
	Agent   AgentConfig `json:"agent"`
	// Preemptible says the instance may be taken away (a LowPriority
	// cluster's node); providers without preemption ignore it.
	Preemptible bool `json:"preemptible,omitempty"`
}

// AgentConfig is how a node's agent reaches the control plane. Providers pass
// it through opaquely.
type AgentConfig struct {
	URL        string            `json:"url"`               // control-plane URL the agent connects to
	CAFile     string            `json:"ca_file,omitempty"` // CA bundle path for URL's certificate; empty means system roots
	Credential string            `json:"credential"`        // per-node secret; useless for anything but this node
	Env        map[string]string `json:"env,omitempty"`     // extra environment for the agent; nil means none
}

// State is an instance's life-cycle state as the provider sees it. Whether
// the agent registered is the control plane's business, not the provider's.
type State string

// States.
const (
	StateStarting State = "Starting" // created; booting
	StateRunning  State = "Running"  // up (VM running, process alive)
	StateStopped  State = "Stopped"  // ended by itself or by its host; Reason says what is known
	StateFailed   State = "Failed"   // could not start; Reason says why
)

// InstanceStatus is one instance as List reports it.
type InstanceStatus struct {
	ID      string    `json:"id"`
	Compute string    `json:"compute"`
	Size    Size      `json:"size"`
	State   State     `json:"state"`
	Reason  string    `json:"reason,omitempty"`  // why Stopped or Failed; empty otherwise
	Address string    `json:"address,omitempty"` // where the node can be reached (host or IP); empty means unknown
	Note    string    `json:"note,omitempty"`    // e.g. that its limits are recorded only; empty means none
	Created time.Time `json:"created"`           // when Create started it
}

// CapacityError is returned (wrapped) when instances do not fit.
type CapacityError struct {
	Size     Size   // the size asked for
	Resource string // what ran short: "instances", "cpu", "memory", "gpu"
	Need     int64  // amount of Resource one instance needs (vCPUs, MiB, GPUs; 1 for instances)
	Free     int64  // amount of Resource free before this instance
	Total    int64  // the provider's total of Resource (after overcommit)
}

// Error says what was asked and what is free.
func (e *CapacityError) Error() string {
	unit := map[string]string{"cpu": " vCPUs", "memory": " MiB", "gpu": " GPUs"}[e.Resource]
	return fmt.Sprintf("insufficient %s for size %s: need %d%s, %d%s free of %d",
		e.Resource, e.Size.Name, e.Need, unit, e.Free, unit, e.Total)
}

// InstanceError is the failure of one instance in a Create or Delete call.
type InstanceError struct {
	ID  string
	Err error
}

// Error prefixes the error with the instance ID.
func (e *InstanceError) Error() string { return "instance " + e.ID + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *InstanceError) Unwrap() error { return e.Err }

// Params is what the control plane passes to a provider constructor.
type Params struct {
	// DataDir is a directory the provider may own for records and instance
	// files; it survives restarts. Empty means the provider's default.
	DataDir string
	// Settings are provider-specific settings from the region's
	// configuration; nil means defaults. Unknown keys are an error.
	Settings map[string]string
}

// Factory constructs a provider.
type Factory func(Params) (Provider, error)

// ValidID reports whether id is usable as an instance ID: 1 to 128 bytes of
// letters, digits, '.', '_' and '-', and not "." or "..". Providers may use
// IDs as file or resource names.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
