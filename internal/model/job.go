package model

import "time"

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
	Address        string    // where the node is reached; "" until known
	SSHPort        int       // the node's SSH port (reserved); 0 means none
	JobID          string    // the job it runs; "" when none
	Reason         string    // why it is unusable or leaving; "" otherwise
	Note           string    // e.g. that its limits are recorded only; "" means none
	CreatedAt      time.Time // when it was asked of the provider
	StateSince     time.Time // when State last changed (idle since, for scale-down)
	Attempts       int       // provider create attempts for this node slot (backoff)
}

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
	ID              string            // the job's name, unique in the workspace
	WorkspaceID     string            // owning workspace's ARM ID
	ComputeName     string            // target compute's name, or LocalCompute
	DisplayName     string            // "" means ID
	ExperimentName  string            // "" means "Default"
	Command         string            // run with /bin/sh -c, inputs already substituted
	Env             map[string]string // environment variables; nil means none
	SnapshotID      string            // uploaded code snapshot; "" means no code
	Timeout         time.Duration     // 0 means none
	InstanceCount   int               // nodes it needs; 1 until gang scheduling
	Status          JobStatus
	NodeID          string    // node it was assigned to; "" when queued or local
	Attempts        int       // times it was started; a lost node requeues it once
	ExitCode        *int      // nil until it exits
	Error           *Error    // failure reason; nil unless Failed or Canceled
	CancelRequested bool      // a cancel was asked for; the node is told
	Seq             int64     // FIFO order, assigned by the caller, increasing
	CreatedAt       time.Time // UTC
	StartedAt       time.Time // zero until Running
	EndedAt         time.Time // zero until terminal
	CreatedBy       string
	Warnings        []string // e.g. an environment kumo cannot honour; nil means none
}

// Event is one recorded decision or incident on a compute: a scale-up, a
// scale-down, a node that became unusable, and why.
type Event struct {
	ComputeID string
	Time      time.Time // UTC
	Kind      string    // e.g. "ScaleUp", "ScaleDown", "NodeUnusable", "AllocationFailed"
	Message   string
}

// ComputeStatus is a cluster's live allocation status, kept apart from its
// settings so that the autoscaler never races user edits.
type ComputeStatus struct {
	ComputeID       string
	TargetNodes     int       // target of the last resize
	Allocation      string    // "Steady" or "Resizing"
	AllocationSince time.Time // when Allocation last changed
	Errors          []Error   // current allocation errors (quota, capacity, failed nodes); nil when none
	// Blocked says why demand is not met, as a pending reason code
	// ("MaxNodesReached", "QuotaExceeded", "CapacityExhausted") with
	// details; empty when nothing blocks.
	Blocked       string
	BlockedDetail string
}
