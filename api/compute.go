package api

// ComputeType discriminates the kind of compute in ComputeProperties.
type ComputeType string

// Compute types kumo serves.
const (
	// ComputeTypeAmlCompute is a managed cluster of nodes of one VM size.
	ComputeTypeAmlCompute ComputeType = "AmlCompute"
)

// ProvisioningState is the lifecycle state of a compute resource.
type ProvisioningState string

// Provisioning states, as ARM names them.
const (
	ProvisioningCreating  ProvisioningState = "Creating"  // accepted, being created
	ProvisioningUpdating  ProvisioningState = "Updating"  // accepted change, being applied
	ProvisioningDeleting  ProvisioningState = "Deleting"  // being deleted
	ProvisioningSucceeded ProvisioningState = "Succeeded" // ready
	ProvisioningFailed    ProvisioningState = "Failed"    // creation failed; see provisioningErrors
	ProvisioningCanceled  ProvisioningState = "Canceled"  // operation was canceled
)

// VMPriority is Dedicated or LowPriority.
type VMPriority string

// VM priorities.
const (
	PriorityDedicated   VMPriority = "Dedicated"   // capacity is guaranteed
	PriorityLowPriority VMPriority = "LowPriority" // cheaper, may be preempted
)

// AllocationState says whether a cluster is resizing.
type AllocationState string

// Allocation states.
const (
	AllocationSteady   AllocationState = "Steady"   // no resize in progress
	AllocationResizing AllocationState = "Resizing" // nodes are being added or removed
)

// RemoteLoginPortPublicAccess says whether nodes' SSH ports are open.
type RemoteLoginPortPublicAccess string

// Remote login settings. NotSpecified is accepted on create and stored as
// Enabled when credentials are given, Disabled otherwise.
const (
	RemoteLoginEnabled      RemoteLoginPortPublicAccess = "Enabled"
	RemoteLoginDisabled     RemoteLoginPortPublicAccess = "Disabled"
	RemoteLoginNotSpecified RemoteLoginPortPublicAccess = "NotSpecified"
)

// ComputeResource is the ARM envelope of a compute target.
type ComputeResource struct {
	ID         string             `json:"id,omitempty"`
	Name       string             `json:"name,omitempty"`
	Type       string             `json:"type,omitempty"`
	Location   *string            `json:"location"`
	Tags       map[string]string  `json:"tags"`
	SystemData *SystemData        `json:"systemData,omitempty"`
	Properties *ComputeProperties `json:"properties"`
}

// ComputeProperties is the "properties" object of a ComputeResource for an
// AmlCompute. Keys the AML v1 SDK indexes unconditionally are pointers
// without omitempty so that they are written as null.
type ComputeProperties struct {
	ComputeType        ComputeType           `json:"computeType"`
	ComputeLocation    *string               `json:"computeLocation"`
	Description        *string               `json:"description"`
	ResourceID         *string               `json:"resourceId"`
	CreatedOn          string                `json:"createdOn,omitempty"`
	ModifiedOn         string                `json:"modifiedOn,omitempty"`
	ProvisioningState  ProvisioningState     `json:"provisioningState,omitempty"`
	ProvisioningErrors []ErrorResponse       `json:"provisioningErrors"`
	IsAttachedCompute  bool                  `json:"isAttachedCompute"`
	DisableLocalAuth   *bool                 `json:"disableLocalAuth,omitempty"`
	Properties         *AmlComputeProperties `json:"properties"`
}

// AmlComputeProperties holds a cluster's settings (writable) and its
// current status (read-only).
type AmlComputeProperties struct {
	VMSize                      *string                 `json:"vmSize"`
	VMPriority                  *string                 `json:"vmPriority"`
	OSType                      *string                 `json:"osType,omitempty"`
	VirtualMachineImage         *VirtualMachineImage    `json:"virtualMachineImage"`
	IsolatedNetwork             *bool                   `json:"isolatedNetwork,omitempty"`
	EnableNodePublicIP          *bool                   `json:"enableNodePublicIp,omitempty"`
	Subnet                      *ResourceID             `json:"subnet"`
	RemoteLoginPortPublicAccess *string                 `json:"remoteLoginPortPublicAccess,omitempty"`
	ScaleSettings               *ScaleSettings          `json:"scaleSettings"`
	UserAccountCredentials      *UserAccountCredentials `json:"userAccountCredentials,omitempty"`
	PropertyBag                 any                     `json:"propertyBag"`

	// Read-only status.
	AllocationState               AllocationState  `json:"allocationState,omitempty"`
	AllocationStateTransitionTime string           `json:"allocationStateTransitionTime,omitempty"`
	Errors                        []ErrorResponse  `json:"errors"`
	CurrentNodeCount              int32            `json:"currentNodeCount"`
	TargetNodeCount               int32            `json:"targetNodeCount"`
	NodeStateCounts               *NodeStateCounts `json:"nodeStateCounts,omitempty"`

	// kumo's availability view (read-only; ignored by Azure SDKs).
	QueuedJobCount  int32       `json:"queuedJobCount"`
	RunningJobCount int32       `json:"runningJobCount"`
	QueuedJobs      []QueuedJob `json:"queuedJobs,omitempty"` // in queue order, each with its pending reason
	// Cost is what the cluster's nodes cost, from the catalog prices of
	// its size and priority (nil on a compute without nodes ever).
	Cost *ComputeCost `json:"cost,omitempty"`
}

// ComputeCost is a cluster's cost (read-only, kumo's own): each node
// accrues its size's hourly price for the cluster's priority from when it
// is created until it leaves.
type ComputeCost struct {
	Currency string  `json:"currency"` // "USD"
	PerHour  float64 `json:"perHour"`  // what the nodes in service cost per hour now
	SoFar    float64 `json:"soFar"`    // accrued since the cluster was created, to the cent
}

// CostReport is the answer of GET .../workspaces/{ws}/costs?from=&to=: what
// the workspace's nodes cost within [from, to), per compute and per job.
type CostReport struct {
	Currency string            `json:"currency"` // "USD"
	From     string            `json:"from"`
	To       string            `json:"to"`
	Total    float64           `json:"total"`
	Computes []ComputeCostLine `json:"computes"`
	Jobs     []JobCostLine     `json:"jobs"`
}

// ComputeCostLine is one compute's cost in a CostReport.
type ComputeCostLine struct {
	Name      string  `json:"name"`
	NodeHours float64 `json:"nodeHours"`
	Cost      float64 `json:"cost"`
}

// JobCostLine is one job's cost in a CostReport: its attempts' time on
// their nodes, at those nodes' prices.
type JobCostLine struct {
	Name      string  `json:"name"`
	Compute   string  `json:"compute"`
	NodeHours float64 `json:"nodeHours"`
	Cost      float64 `json:"cost"`
}

// VirtualMachineImage names a custom node image (accepted, not used).
type VirtualMachineImage struct {
	ID string `json:"id"`
}

// ResourceID wraps an ARM resource ID (used for subnets).
type ResourceID struct {
	ID string `json:"id"`
}

// ScaleSettings bounds a cluster's size. NodeIdleTimeBeforeScaleDown is an
// ISO-8601 duration such as "PT2M".
type ScaleSettings struct {
	MaxNodeCount                *int32  `json:"maxNodeCount"`
	MinNodeCount                *int32  `json:"minNodeCount"`
	NodeIdleTimeBeforeScaleDown *string `json:"nodeIdleTimeBeforeScaleDown"`
}

// UserAccountCredentials is the admin account created on every node. The
// password is write-only: responses never carry it (nor the key's owner data
// beyond the public key itself, which responses also omit).
type UserAccountCredentials struct {
	AdminUserName         *string `json:"adminUserName"`
	AdminUserSSHPublicKey *string `json:"adminUserSshPublicKey"`
	AdminUserPassword     *string `json:"adminUserPassword"`
}

// NodeStateCounts counts a cluster's nodes by state.
type NodeStateCounts struct {
	IdleNodeCount      int32 `json:"idleNodeCount"`
	RunningNodeCount   int32 `json:"runningNodeCount"`
	PreparingNodeCount int32 `json:"preparingNodeCount"`
	UnusableNodeCount  int32 `json:"unusableNodeCount"`
	LeavingNodeCount   int32 `json:"leavingNodeCount"`
	PreemptedNodeCount int32 `json:"preemptedNodeCount"`
}

// ComputeList is one page of computes. NextLink is an absolute URL, omitted
// on the last page.
type ComputeList struct {
	Value    []ComputeResource `json:"value"`
	NextLink string            `json:"nextLink,omitempty"`
}

// ClusterUpdateParameters is the PATCH body: only scale settings change.
type ClusterUpdateParameters struct {
	Properties *ClusterUpdateProperties `json:"properties"`
}

// ClusterUpdateProperties wraps the scale settings of a PATCH.
type ClusterUpdateProperties struct {
	Properties *ScaleSettingsInformation `json:"properties"`
}

// ScaleSettingsInformation holds the new scale settings of a PATCH.
type ScaleSettingsInformation struct {
	ScaleSettings *ScaleSettings `json:"scaleSettings"`
}

// NodeState is the state of one node.
type NodeState string

// Node states, lower-case as ARM spells them.
const (
	NodeIdle      NodeState = "idle"      // up, no job
	NodeRunning   NodeState = "running"   // running a job
	NodePreparing NodeState = "preparing" // booting or being set up
	NodeUnusable  NodeState = "unusable"  // failed; cannot run jobs
	NodeLeaving   NodeState = "leaving"   // being removed
	NodePreempted NodeState = "preempted" // low-priority node reclaimed
)

// NodeInformation describes one node of a cluster.
type NodeInformation struct {
	NodeID           string    `json:"nodeId"`
	PrivateIPAddress string    `json:"privateIpAddress,omitempty"`
	PublicIPAddress  string    `json:"publicIpAddress,omitempty"`
	Port             int32     `json:"port,omitempty"`
	NodeState        NodeState `json:"nodeState"`
	RunID            *string   `json:"runId"`

	// kumo's additions (ignored by Azure SDKs).
	Note   string `json:"note,omitempty"`   // e.g. that the size's limits are recorded only
	Reason string `json:"reason,omitempty"` // why the node is unusable or leaving
	// SSHHostKey is the node's SSH host public key in authorized_keys
	// form ("ssh-ed25519 AAAA..."), and SSHHostKeyFingerprint its SHA256
	// fingerprint as ssh-keygen -l shows it; empty until the node's agent
	// reported it, or when the cluster has no admin account.
	SSHHostKey            string `json:"sshHostKey,omitempty"`
	SSHHostKeyFingerprint string `json:"sshHostKeyFingerprint,omitempty"`
}

// SSHUpgrade is the Upgrade header value of a request for an SSH tunnel
// (GET .../computes/{name}/nodes/{nodeId}/ssh): once the server answers
// 101 Switching Protocols, the connection carries the bytes of an SSH
// connection to the node's SSH server.
const SSHUpgrade = "kumo-ssh/1"

// NodeList is one page of listNodes. NextLink is omitted on the last page.
type NodeList struct {
	ComputeType ComputeType       `json:"computeType,omitempty"`
	Nodes       []NodeInformation `json:"nodes"`
	NextLink    string            `json:"nextLink,omitempty"`
}

// ComputeSecrets is the listKeys answer. For AmlCompute it carries only the
// compute type: kumo never returns stored secrets.
type ComputeSecrets struct {
	ComputeType ComputeType `json:"computeType"`
}

// OperationStatus is the body of a long-running operation's status URL.
// Error wraps a nested Error as the AML v1 SDK expects.
type OperationStatus struct {
	ID        string                `json:"id"`
	Name      string                `json:"name"`
	Status    string                `json:"status"`
	StartTime string                `json:"startTime,omitempty"`
	EndTime   string                `json:"endTime,omitempty"`
	Error     *OperationStatusError `json:"error,omitempty"`
}

// OperationStatusError is an operation's failure: code and message, repeated
// under "error" for the AML v1 SDK.
type OperationStatusError struct {
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Error   *ErrorDetail `json:"error,omitempty"`
}

// Operation statuses.
const (
	OperationInProgress = "InProgress"
	OperationSucceeded  = "Succeeded"
	OperationFailed     = "Failed"
	OperationCanceled   = "Canceled"
)

// SimulateEvictionResult is the answer of POST
// .../computes/{name}/simulateEviction[?nodeId=ID]: the nodes that were
// given notice. Each is taken away after its region's eviction lead time:
// the job on it gets SIGTERM with a notice file now, SIGKILL then, and is
// requeued.
type SimulateEvictionResult struct {
	NodeIDs []string `json:"nodeIds"`
}
