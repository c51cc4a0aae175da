package model

import (
	"slices"
	"time"
)

// NodeState is a node's state, in ARM's lower-case words.
type NodeState string

// Node states.
const (
	NodePreparing NodeState = "preparing" // created; its agent has not registered yet
	NodeIdle      NodeState = "idle"      // registered, no job
	NodeRunning   NodeState = "running"   // running a job
	NodeUnusable  NodeState = "unusable"  // failed to start or stopped heartbeating; will be replaced
	NodeLeaving   NodeState = "leaving"   // being removed
	NodePreempted NodeState = "preempted" // low-priority node taken away
)

// Node is one node of a cluster: an instance a provider created, running a
// kumo agent.
type Node struct {
	ID             string    // instance ID, chosen by the control plane
	ComputeID      string    // the cluster's ARM ID
	State          NodeState // see NodeState
	CredentialHash string    // hex SHA-256 of the node's agent credential
	// AgentKey is the public key (agentproto.Key.Public) of the agent
	// process whose first connect was accepted; every later request for the
	// node must be signed by it. "" until then. Set only by
	// store.Store.NodeBindAgentKey: NodeUpdate leaves it as stored.
	AgentKey string
	Address  string // where the node is reached; "" until known
	SSHPort  int    // the node's SSH port (reserved); 0 means none
	// HostKey is the node's SSH host public key in authorized_keys form,
	// as its agent reported it; "" until known or when it serves no SSH.
	HostKey    string
	JobID      string    // the job it runs; "" when none
	Reason     string    // why it is unusable or leaving; "" otherwise
	Note       string    // e.g. that its limits are recorded only; "" means none
	CreatedAt  time.Time // when it was asked of the provider
	StateSince time.Time // when State last changed (idle since, for scale-down)
	Attempts   int       // provider create attempts for this node slot (backoff)
	ReadyAt    time.Time // when its agent first registered (its boot ended); zero while preparing
}

// HoldsQuota reports whether a node in state s counts against its
// workspace's vCPU quota: every node does until it is leaving.
func (s NodeState) HoldsQuota() bool { return s != NodeLeaving }

// JobStatus is a job's status, in AML's words.
type JobStatus string

// Job statuses. Completed, Failed and Canceled are terminal.
const (
	JobNotStarted JobStatus = "NotStarted" // accepted, not yet queued
	JobQueued     JobStatus = "Queued"     // waiting for a node
	JobPreparing  JobStatus = "Preparing"  // assigned to a node, starting
	JobRunning    JobStatus = "Running"    // its process runs
	JobFinalizing JobStatus = "Finalizing" // exited; outputs being collected
	JobCompleted  JobStatus = "Completed"  // exited 0
	JobFailed     JobStatus = "Failed"     // exited non-zero, timed out, or could not run; see Error
	JobCanceled   JobStatus = "Canceled"   // canceled by a user
)

// Terminal reports whether s is a final status.
func (s JobStatus) Terminal() bool {
	return s == JobCompleted || s == JobFailed || s == JobCanceled
}

// LocalCompute is the name of the built-in compute target that runs jobs on
// the control plane's own host, without nodes.
const LocalCompute = "local"

// Job is a command job on a compute target.
type Job struct {
	ID             string            // ARM ID: WorkspaceID + "/jobs/" + Name
	WorkspaceID    string            // owning workspace's ARM ID
	Name           string            // the job's name, unique in the workspace (case-insensitive)
	RunID          string            // names this job's run to agents and in logs; unique across workspaces
	ComputeID      string            // target compute's ARM ID; for LocalCompute, WorkspaceID + "/computes/local"
	DisplayName    string            // "" means Name
	ExperimentName string            // "" means "Default"
	Command        string            // run with /bin/sh -c, inputs already substituted
	Env            map[string]string // environment variables; nil means none
	SnapshotID     string            // uploaded code snapshot; "" means no code
	Timeout        time.Duration     // 0 means none
	InstanceCount  int               // nodes it needs; more than 1 makes a gang job (see Job.AssignGang)
	// Distribution is how its processes find each other; nil means one
	// process per node.
	Distribution *Distribution
	Status       JobStatus
	NodeID       string // node it was assigned to (a gang's rank-0 node); "" when queued or local
	// NodeIDs are a gang job's nodes in rank order while it holds any
	// (NodeIDs[r] runs NODE_RANK r; "" for a rank whose node was lost and
	// awaits a replacement); nil for a one-node job.
	NodeIDs  []string
	Attempts int // times it was assigned; see History
	// MaxRetries is how many times a failure of the job's own (class
	// user: a non-zero exit, a timeout) is retried; 0 means never.
	// Infrastructure and preemption retries have their own caps.
	MaxRetries int
	// History holds the job's attempts, oldest first, at most MaxHistory;
	// nil until it is first assigned. See [Job.Assign].
	History         []Attempt
	ExitCode        *int      // nil until it exits
	Error           *Error    // failure reason; nil unless Failed or Canceled
	CancelRequested bool      // a cancel was asked for; the node is told
	Seq             int64     // FIFO order, assigned by the caller, increasing
	CreatedAt       time.Time // UTC
	StartedAt       time.Time // zero until Running
	EndedAt         time.Time // zero until terminal
	CreatedBy       string    // the submitting token's name (its ID when unnamed), for display
	// CreatedByToken is the ID of the API token that submitted the job: it
	// sees the job's secret environment values (see SecretEnvName); ""
	// for jobs stored before kumo recorded it.
	CreatedByToken string
	Warnings       []string // e.g. an environment kumo cannot honour; nil means none
}

// Event is one recorded decision or incident on a compute: a scale-up, a
// scale-down, a node that became unusable, and why.
type Event struct {
	ComputeID string
	Time      time.Time // UTC
	Kind      string    // e.g. "ScaleUp", "ScaleDown", "NodeUnusable", "AllocationFailed"
	Message   string
}

// Allocation states of a cluster (ComputeStatus.Allocation), as AML names
// them.
const (
	AllocationSteady   = "Steady"   // the node count is the target and no node is coming or going
	AllocationResizing = "Resizing" // nodes are being added or removed, or the target is not met
)

// AllocationOf returns a cluster's allocation state and since when it has
// held: as st records them, or, before the autoscaler's first pass has
// recorded one, Steady since the compute c was last written.
func AllocationOf(c Compute, st ComputeStatus) (state string, since time.Time) {
	if st.AllocationSince.IsZero() {
		return AllocationSteady, c.ModifiedAt
	}
	return st.Allocation, st.AllocationSince
}

// ComputeStatus is a cluster's live allocation status, kept apart from its
// settings so that the autoscaler never races user edits.
type ComputeStatus struct {
	ComputeID       string
	TargetNodes     int       // target of the last resize
	Allocation      string    // AllocationSteady or AllocationResizing
	AllocationSince time.Time // when Allocation last changed
	Errors          []Error   // current allocation errors (quota, capacity, failed nodes); nil when none
	// Blocked says why demand is not met, as a pending reason code
	// ("MaxNodesReached", "QuotaExceeded", "CapacityExhausted") with
	// details; empty when nothing blocks.
	Blocked       string
	BlockedDetail string
	// Failures counts the cluster's consecutive node failures (nodes that
	// became unusable and were removed); 0 once a node made after the
	// last failure came up. The autoscaler keeps its backoff here, in the
	// store, so that another control plane continues it.
	Failures int
	// LastFailure is when the last failed node was removed; zero when
	// none was.
	LastFailure time.Time
	// RetryAt is when the autoscaler may make nodes again while Failures
	// is above 0; zero when it need not wait.
	RetryAt time.Time
}

// MaxWarnings bounds the warnings a job keeps.
const MaxWarnings = 50

// AddWarnings adds the warnings j does not hold yet, keeping at most
// MaxWarnings, and reports whether j changed.
func (j *Job) AddWarnings(warnings ...string) bool {
	changed := false
	for _, w := range warnings {
		if len(j.Warnings) >= MaxWarnings {
			break
		}
		if !slices.Contains(j.Warnings, w) {
			j.Warnings = append(j.Warnings, w)
			changed = true
		}
	}
	return changed
}
