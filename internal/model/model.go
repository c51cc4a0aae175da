// Package model holds kumo's domain types (workspaces, compute targets,
// operations, tokens, quotas), the VM size catalog, and every validation rule
// a compute target must satisfy. It uses only the standard library; the HTTP
// API calls it and so do, through the API's answers, the CLI, SDK and studio.
package model

import "time"

// Workspace is a team's shared space for compute targets. Its ID is the full
// ARM resource ID; Location is the region all its computes live in.
type Workspace struct {
	ID            string            // ARM resource ID (case preserved as created)
	Subscription  string            // subscription ID segment
	ResourceGroup string            // resource group segment
	Name          string            // workspace name
	Location      string            // region, e.g. "local"
	Description   string            // free text; empty means none
	Tags          map[string]string // nil means no tags
	CreatedAt     time.Time         // UTC
	ModifiedAt    time.Time         // UTC
	CreatedBy     string            // token name that created it
}

// Priority is a cluster's VM priority.
type Priority string

// Priorities.
const (
	PriorityDedicated   Priority = "Dedicated"   // guaranteed capacity
	PriorityLowPriority Priority = "LowPriority" // cheaper, preemptible
)

// ProvisioningState is a compute's lifecycle state.
type ProvisioningState string

// Provisioning states.
const (
	StateCreating  ProvisioningState = "Creating"  // accepted; the provisioner will finish it
	StateUpdating  ProvisioningState = "Updating"  // overwrite accepted; the provisioner will finish it
	StateDeleting  ProvisioningState = "Deleting"  // delete accepted; the provisioner will remove it
	StateSucceeded ProvisioningState = "Succeeded" // ready
	StateFailed    ProvisioningState = "Failed"    // could not be provisioned; see Errors
)

// ScaleSettings bounds a cluster's node count.
type ScaleSettings struct {
	MinNodes int           // ≥ 0
	MaxNodes int           // ≥ MinNodes, ≤ MaxNodesPerCluster
	IdleTime time.Duration // idle time before a node above MinNodes is removed; 0 means at once
}

// Credentials is a cluster's admin account. The password is only ever held
// as a slow hash; the SSH public key is stored as given (it is public).
type Credentials struct {
	AdminUser    string // empty means no admin account (SSH disabled)
	PasswordHash string // PHC-style hash from package secret; empty means no password
	SSHPublicKey string // authorized_keys line; empty means none
}

// Compute is a compute target (an AmlCompute cluster) as stored.
type Compute struct {
	ID          string // ARM resource ID
	WorkspaceID string // owning workspace's ID
	Name        string // as the creator spelled it; unique case-insensitively per workspace
	Location    string // always the workspace's location
	Description string
	Tags        map[string]string
	VMSize      string   // canonical catalog name
	Priority    Priority // Dedicated or LowPriority
	Scale       ScaleSettings
	Credentials Credentials
	RemoteLogin string // "Enabled" or "Disabled"
	State       ProvisioningState
	Errors      []Error   // provisioning errors when State is Failed
	OperationID string    // the latest long-running operation on this compute
	ETag        string    // changes on every write
	CreatedAt   time.Time // UTC
	ModifiedAt  time.Time // UTC
	CreatedBy   string
	ModifiedBy  string
}

// Error is a provisioning or allocation error recorded on a compute.
type Error struct {
	Code    string
	Message string
}

// OperationKind says what a long-running operation does.
type OperationKind string

// Operation kinds.
const (
	OpCreate OperationKind = "Create" // create a compute
	OpUpdate OperationKind = "Update" // overwrite or patch a compute
	OpDelete OperationKind = "Delete" // delete a compute
)

// OperationStatus is a long-running operation's state.
type OperationStatus string

// Operation statuses (ARM's words).
const (
	OpInProgress OperationStatus = "InProgress"
	OpSucceeded  OperationStatus = "Succeeded"
	OpFailed     OperationStatus = "Failed"
)

// Operation is a long-running operation on a compute. Its status URL stays
// valid after it ends, so pollers resumed later still get an answer.
type Operation struct {
	ID        string // random, URL-safe
	Location  string // region in the status URL
	Kind      OperationKind
	ComputeID string // the compute's ARM ID
	Status    OperationStatus
	Error     *Error    // set when Status is Failed
	StartedAt time.Time // UTC
	EndedAt   time.Time // zero while in progress
}

// Role is what an API token may do.
type Role string

// Roles, from least to most.
const (
	RoleReader      Role = "reader"      // read anything
	RoleContributor Role = "contributor" // read, create, change and delete resources
	RoleOwner       Role = "owner"       // also manage tokens and quotas
)

// Allows reports whether r may do what needs at least min. An unknown role
// allows nothing, and nothing is allowed to an unknown min.
func (r Role) Allows(min Role) bool {
	need := roleRank(min)
	return need > 0 && roleRank(r) >= need
}

func roleRank(r Role) int {
	switch r {
	case RoleReader:
		return 1
	case RoleContributor:
		return 2
	case RoleOwner:
		return 3
	}
	return 0
}

// Token is an API token's record. Only the SHA-256 hash of the secret is
// kept; the secret itself is shown once, when created.
type Token struct {
	ID        string // short public identifier, the prefix of the secret
	Name      string // human label
	Role      Role
	Hash      string // hex SHA-256 of the whole secret
	CreatedAt time.Time
	RevokedAt time.Time // zero while valid
}

// Quota is one per-workspace vCPU limit: for a VM family (Dedicated), or the
// single low-priority limit when Family is LowPriorityFamily.
type Quota struct {
	WorkspaceID string
	Family      string // VM family, e.g. "standardDSv2Family", or LowPriorityFamily
	Limit       int64  // vCPUs
}

// LowPriorityFamily is the Quota.Family of the low-priority vCPU limit.
const LowPriorityFamily = "lowPriorityCores"
