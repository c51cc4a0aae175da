package api

// TypeJob is the ARM type of a job.
const TypeJob = ProviderNamespace + "/workspaces/jobs"

// JobStatus is a job's status, in AML's words.
type JobStatus string

// Job statuses. Completed, Failed and Canceled are terminal.
const (
	JobNotStarted JobStatus = "NotStarted"
	JobQueued     JobStatus = "Queued"
	JobPreparing  JobStatus = "Preparing"
	JobRunning    JobStatus = "Running"
	JobFinalizing JobStatus = "Finalizing"
	JobCompleted  JobStatus = "Completed"
	JobFailed     JobStatus = "Failed"
	JobCanceled   JobStatus = "Canceled"
)

// JobResource is the ARM envelope of a job.
type JobResource struct {
	ID         string         `json:"id,omitempty"`
	Name       string         `json:"name,omitempty"`
	Type       string         `json:"type,omitempty"`
	SystemData *SystemData    `json:"systemData,omitempty"`
	Properties *JobProperties `json:"properties"`
}

// JobProperties is a command job, shaped after AML's CommandJob. Fields
// marked read-only are ignored in requests.
type JobProperties struct {
	JobType              string                `json:"jobType"` // "Command"
	Command              string                `json:"command"`
	CodeID               string                `json:"codeId,omitempty"` // a snapshot ID from POST .../snapshots
	ComputeID            string                `json:"computeId"`        // compute name, "azureml:NAME", or its ARM ID; "local" runs on the control plane's host
	EnvironmentID        string                `json:"environmentId,omitempty"`
	EnvironmentVariables map[string]string     `json:"environmentVariables,omitempty"`
	Inputs               map[string]*JobInput  `json:"inputs,omitempty"`
	Outputs              map[string]*JobOutput `json:"outputs,omitempty"`
	Resources            *JobResourceConfig    `json:"resources,omitempty"`
	Distribution         *Distribution         `json:"distribution,omitempty"`
	Limits               *CommandJobLimits     `json:"limits,omitempty"`
	DisplayName          string                `json:"displayName,omitempty"`
	ExperimentName       string                `json:"experimentName,omitempty"`
	Description          string                `json:"description,omitempty"`
	Tags                 map[string]string     `json:"tags,omitempty"`
	// Kumo holds kumo's own job settings, which AML does not have; nil
	// means the defaults.
	Kumo *KumoJobSettings `json:"kumo,omitempty"`

	// Read-only.
	Status JobStatus `json:"status,omitempty"`
	RunID  string    `json:"runId,omitempty"`
	NodeID string    `json:"nodeId,omitempty"`
	// NodeIDs are a multi-node job's nodes in rank order while it holds
	// any, also while it waits to retry after losing one ("" for a rank
	// awaiting a replacement); empty for a one-node job.
	NodeIDs       []string       `json:"nodeIds,omitempty"`
	ExitCode      *int           `json:"exitCode,omitempty"`
	Error         *ErrorDetail   `json:"error,omitempty"`
	PendingReason *PendingReason `json:"pendingReason,omitempty"` // set while Queued
	QueuePosition int            `json:"queuePosition,omitempty"` // while Queued: 1 is next on its compute; 0 when not queued
	// EstimatedStartTime is, while Queued, when the job is expected to
	// start, from its place in the queue, idle and booting nodes and the
	// cluster's recent node boot times; "" when it waits for running jobs
	// to end (which kumo cannot foresee) or is not queued.
	EstimatedStartTime string   `json:"estimatedStartTime,omitempty"`
	Warnings           []string `json:"warnings,omitempty"` // e.g. an environment kumo cannot honour
	CreatedOn          string   `json:"createdOn,omitempty"`
	StartTime          string   `json:"startTime,omitempty"`
	EndTime            string   `json:"endTime,omitempty"`
	Attempts           int      `json:"attempts,omitempty"`
	// AttemptHistory lists the job's attempts, oldest first: where each
	// ran, when, and why it ended. A job that was evicted or lost its node
	// has several; empty until the job is first assigned.
	AttemptHistory []JobAttempt `json:"attemptHistory,omitempty"`
	// NodeHours and Cost are what the job's attempts used of their nodes
	// so far (cost in USD at the nodes' catalog prices, to the cent);
	// zero on compute local and before it first runs.
	NodeHours float64 `json:"nodeHours,omitempty"`
	Cost      float64 `json:"cost,omitempty"`
}

// KumoJobSettings are a job's kumo extensions (YAML key kumo:).
type KumoJobSettings struct {
	// MaxRetries is how often a failure of the job's own (a non-zero
	// exit, a timeout) is retried, 0 to 10; 0 means never. Lost nodes
	// and evictions have their own caps.
	MaxRetries int `json:"maxRetries,omitempty"`
}

// JobAttempt is one attempt of a job (read-only).
type JobAttempt struct {
	Number    int      `json:"number"`
	NodeID    string   `json:"nodeId,omitempty"`    // "" on the local compute; a multi-node job's rank 0
	NodeIDs   []string `json:"nodeIds,omitempty"`   // a multi-node job's nodes in rank order
	StartTime string   `json:"startTime,omitempty"` // when it was assigned
	EndTime   string   `json:"endTime,omitempty"`   // "" while it runs
	// FailureClass is "user", "infrastructure" or "preemption" for an
	// attempt that failed; "" while it runs, or when it succeeded or was
	// canceled. Only user failures count against a job's retries.
	FailureClass string `json:"failureClass,omitempty"`
	Reason       string `json:"reason,omitempty"` // e.g. Exited, Timeout, NodeLost, Preempted
	Message      string `json:"message,omitempty"`
	ExitCode     *int   `json:"exitCode,omitempty"`
}

// JobInput is one job input. Literal inputs (jobInputType "literal") are
// substituted into the command where it says ${{inputs.NAME}}.
type JobInput struct {
	JobInputType string `json:"jobInputType"` // "literal"; others are refused
	Value        string `json:"value"`
}

// JobOutput is one job output. kumo supports AML's default output type,
// uri_folder: the command writes a folder, named to it where it says
// ${{outputs.NAME}}, and kumo keeps the folder with the job's artifacts
// (kumo job download). A nil output means the defaults.
type JobOutput struct {
	JobOutputType string `json:"jobOutputType,omitempty"` // "uri_folder" (the default); others are refused
	Mode          string `json:"mode,omitempty"`          // "ReadWriteMount" (the default) or "Upload"; both mean the same here
	// URI is read-only: where the folder is, relative to the job's working
	// directory ("outputs/NAME"). A URI in a request (a datastore path) is
	// refused.
	URI string `json:"uri,omitempty"`
}

// JobResourceConfig says how many nodes a job needs.
type JobResourceConfig struct {
	InstanceCount int `json:"instanceCount,omitempty"` // 0 means 1
}

// Distribution configures a distributed job: how many processes each
// node starts and which environment they get to find each other.
type Distribution struct {
	DistributionType string `json:"distributionType"` // PyTorch, TensorFlow, Mpi
	// ProcessCountPerInstance is for PyTorch and Mpi; 0 means 1.
	ProcessCountPerInstance int `json:"processCountPerInstance,omitempty"`
	// WorkerCount and ParameterServerCount are for TensorFlow: the tasks
	// of all nodes, spread evenly over them; a WorkerCount of 0 means one
	// per node.
	WorkerCount          int `json:"workerCount,omitempty"`
	ParameterServerCount int `json:"parameterServerCount,omitempty"`
}

// CommandJobLimits bounds a job. Timeout is an ISO-8601 duration.
type CommandJobLimits struct {
	JobLimitsType string `json:"jobLimitsType,omitempty"` // "Command"
	Timeout       string `json:"timeout,omitempty"`
}

// PendingReason says, machine-readably, why a queued job waits.
type PendingReason struct {
	// Code is WaitingForNodes, MaxNodesReached, QuotaExceeded,
	// CapacityExhausted or ComputeFailed.
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"` // e.g. {"booting": 2} or {"family": ..., "limit": ..., "requested": ...}
}

// Pending reason codes.
const (
	PendingWaitingForNodes   = "WaitingForNodes"
	PendingMaxNodesReached   = "MaxNodesReached"
	PendingQuotaExceeded     = "QuotaExceeded"
	PendingCapacityExhausted = "CapacityExhausted"
	PendingComputeFailed     = "ComputeFailed"
	// PendingWaitingForGang: a multi-node job waits until all the nodes
	// it needs are ready at once; details give ready, needed, held (nodes
	// kept from its last attempt) and waitingFor (another code).
	PendingWaitingForGang = "WaitingForGang"
	// PendingEvictedWaitingToRetry: the job's last attempt was evicted
	// (its LowPriority node was taken); details name the node, the
	// attempt and what the retry waits for (waitingFor: another code).
	PendingEvictedWaitingToRetry = "EvictedWaitingToRetry"
)

// JobList is one page of jobs.
type JobList struct {
	Value    []JobResource `json:"value"`
	NextLink string        `json:"nextLink,omitempty"`
}

// Snapshot is the answer of a code snapshot upload.
type Snapshot struct {
	ID        string `json:"id"`
	SizeBytes int64  `json:"sizeBytes"`           // bytes of the stored tar stream
	FileCount int    `json:"fileCount,omitempty"` // regular files in it; 0 from servers that do not count
}

// ComputeEvent is one recorded scaling decision or incident on a compute.
type ComputeEvent struct {
	Time    string `json:"time"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// ComputeEventList is the answer of GET .../computes/{name}/events.
type ComputeEventList struct {
	Value []ComputeEvent `json:"value"`
}

// QueuedJob is a queued job with its pending reason, in a compute's
// availability view.
type QueuedJob struct {
	Name          string         `json:"name"`
	PendingReason *PendingReason `json:"pendingReason,omitempty"`
}
