package model

import (
	"fmt"
	"slices"
	"time"
)

// DistributionType says how a multi-process job's processes find each
// other: which environment variables kumo sets for each (see
// [Distribution]). Spelled as ARM's distribution.distributionType.
type DistributionType string

// Distribution types.
const (
	// DistributionPyTorch sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE,
	// NODE_RANK, RANK and LOCAL_RANK, as AML does.
	DistributionPyTorch DistributionType = "PyTorch"
	// DistributionMpi sets Open MPI's OMPI_COMM_WORLD_* variables and
	// AZ_BATCH_MASTER_NODE, as AML does for mpirun's processes.
	DistributionMpi DistributionType = "Mpi"
	// DistributionTensorFlow sets TF_CONFIG: a cluster of workers and
	// parameter servers and this process's task.
	DistributionTensorFlow DistributionType = "TensorFlow"
)

// Distribution is how a job runs more than one process. A nil
// *Distribution means one process per node.
type Distribution struct {
	Type DistributionType
	// ProcessCountPerInstance is how many processes each node starts
	// (PyTorch, Mpi); 0 means 1.
	ProcessCountPerInstance int
	// WorkerCount and ParameterServerCount are a TensorFlow job's tasks;
	// together they are the processes of all nodes, spread evenly. A
	// WorkerCount of 0 means one worker per node.
	WorkerCount          int
	ParameterServerCount int
}

// MaxProcessesPerInstance bounds ProcessCountPerInstance.
const MaxProcessesPerInstance = 64

// ProcessesPerNode is how many processes each node of a job of n nodes
// with distribution d starts: at least 1.
func (d *Distribution) ProcessesPerNode(n int) int {
	if d == nil || n < 1 {
		return 1
	}
	if d.Type == DistributionTensorFlow {
		total := d.WorkerCount + d.ParameterServerCount
		if d.WorkerCount == 0 {
			total += n
		}
		return max(1, (total+n-1)/n)
	}
	return max(1, d.ProcessCountPerInstance)
}

// ValidateInstanceCount checks a job's node count against the most nodes
// its compute can have (max; 1 for the local compute).
func ValidateInstanceCount(n, maxNodes int) error {
	if n < 1 {
		return fieldErr(CodeInvalidParameter, "properties.resources.instanceCount", "properties.resources.instanceCount %d must be at least 1", n)
	}
	if n > maxNodes {
		return fieldErr(CodeInvalidParameter, "properties.resources.instanceCount",
			"properties.resources.instanceCount %d is more than the %d node(s) the compute can have; the job could never start", n, maxNodes)
	}
	return nil
}

// ValidateDistribution checks a job's distribution for n nodes; nil is
// valid. A TensorFlow job's tasks must spread evenly over its nodes.
func ValidateDistribution(d *Distribution, n int) error {
	if d == nil {
		return nil
	}
	const f = "properties.distribution"
	switch d.Type {
	case DistributionPyTorch, DistributionMpi:
		if d.WorkerCount != 0 || d.ParameterServerCount != 0 {
			return fieldErr(CodeInvalidParameter, f, "%s: workerCount and parameterServerCount are for TensorFlow jobs; use processCountPerInstance", f)
		}
		if d.ProcessCountPerInstance < 0 || d.ProcessCountPerInstance > MaxProcessesPerInstance {
			return fieldErr(CodeInvalidParameter, f+".processCountPerInstance", "%s.processCountPerInstance must be 1 to %d; got %d", f, MaxProcessesPerInstance, d.ProcessCountPerInstance)
		}
	case DistributionTensorFlow:
		if d.ProcessCountPerInstance != 0 {
			return fieldErr(CodeInvalidParameter, f, "%s: a TensorFlow job gives workerCount and parameterServerCount, not processCountPerInstance", f)
		}
		if d.WorkerCount < 0 || d.ParameterServerCount < 0 {
			return fieldErr(CodeInvalidParameter, f, "%s: workerCount and parameterServerCount must not be negative", f)
		}
		total := d.WorkerCount + d.ParameterServerCount
		if d.WorkerCount == 0 {
			total += n
		}
		if total%n != 0 || total/n > MaxProcessesPerInstance {
			return fieldErr(CodeInvalidParameter, f, "%s: %d TensorFlow tasks do not spread evenly over %d node(s) (at most %d each)", f, total, n, MaxProcessesPerInstance)
		}
	default:
		return fieldErr(CodeInvalidParameter, f+".distributionType", "%s.distributionType %s is not PyTorch, Mpi or TensorFlow", f, Quote(string(d.Type)))
	}
	return nil
}

// Gang reports whether j needs more than one node.
func (j *Job) Gang() bool { return j.InstanceCount > 1 }

// String describes d for people, e.g. "PyTorch, 2 process(es) per instance".
func (d *Distribution) String() string {
	if d == nil {
		return "none"
	}
	if d.Type == DistributionTensorFlow {
		return fmt.Sprintf("TensorFlow, %d worker(s), %d parameter server(s)", d.WorkerCount, d.ParameterServerCount)
	}
	return fmt.Sprintf("%s, %d process(es) per instance", d.Type, max(1, d.ProcessCountPerInstance))
}

// AssignGang moves a queued gang job to nodes at now, nodes[r] running its
// NODE_RANK r: the job is Preparing on all of them with a new attempt
// (its NodeID is rank 0's). Each node is idle, or held by the job for the
// same rank (a survivor of its last attempt, see Job.NodeIDs) and idle
// (its old attempt has ended).
// The job and every node must be stored together, all or none
// (store.Store.JobUpdateNodes), so that two gangs never hold parts of a
// cluster each.
func (j *Job) AssignGang(nodes []*Node, now time.Time) error {
	if j.Status != JobQueued {
		return transitionErr("assign", j)
	}
	if len(nodes) != max(j.InstanceCount, 1) {
		return fmt.Errorf("assign job %s of %d nodes to %d: %w", j.Name, j.InstanceCount, len(nodes), ErrTransition)
	}
	ids := make([]string, len(nodes))
	for r, n := range nodes {
		held := n.JobID == j.ID && n.State == NodeIdle && r < len(j.NodeIDs) && j.NodeIDs[r] == n.ID
		if !held && (n.State != NodeIdle || n.JobID != "") {
			return fmt.Errorf("assign job %s to node %s in state %s: %w", j.Name, n.ID, n.State, ErrTransition)
		}
		ids[r] = n.ID
	}
	for _, n := range nodes {
		if n.JobID != j.ID || n.State != NodeRunning {
			n.State, n.JobID, n.StateSince = NodeRunning, j.ID, now
		}
	}
	j.Status, j.NodeID, j.NodeIDs, j.Attempts = JobPreparing, ids[0], ids, j.Attempts+1
	j.StartedAt, j.EndedAt, j.ExitCode, j.Error = time.Time{}, time.Time{}, nil, nil
	j.History = append(j.History, Attempt{Number: j.Attempts, NodeID: ids[0], NodeIDs: slices.Clone(ids), StartedAt: now})
	if len(j.History) > MaxHistory {
		j.History = j.History[len(j.History)-MaxHistory:]
	}
	return nil
}

// Held returns the nodes a queued gang job keeps from its last attempt
// (ranks whose node survived); nil for other jobs.
func (j *Job) Held() []string {
	var ids []string
	for _, id := range j.NodeIDs {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// RunsOn reports whether the current attempt of j runs on nodeID: j is
// Preparing, Running or Finalizing there (on any rank of a gang). A node
// that holds a job that does not run on it is stale: the job was
// requeued or ended behind its back, and the node is freed once its agent
// has stopped the old attempt.
func (j *Job) RunsOn(nodeID string) bool {
	if nodeID == "" || (j.Status != JobPreparing && j.Status != JobRunning && j.Status != JobFinalizing) {
		return false
	}
	return j.NodeID == nodeID || slices.Contains(j.NodeIDs, nodeID)
}

// Holds reports whether j is a queued gang job that keeps nodeID from its
// last attempt for its retry (see LoseNode). A held node stays assigned
// to the job (Node.JobID): Running while its old attempt's processes
// stop, then Idle until the retry starts.
func (j *Job) Holds(nodeID string) bool {
	return nodeID != "" && j.Status == JobQueued && slices.Contains(j.NodeIDs, nodeID)
}

// LoseNode is Lose for the loss of one node, nodeID: when a gang job is
// requeued, it keeps its other nodes for the retry (Job.NodeIDs with ""
// for the lost rank), so the retry waits for one replacement, not all.
func (j *Job) LoseNode(nodeID string, reason Reason, message string, now time.Time) string {
	prev := j.NodeIDs
	what := j.Lose(reason, message, now)
	if j.Status != JobQueued || len(prev) < 2 {
		return what
	}
	ids := slices.Clone(prev)
	kept := false
	for r, id := range ids {
		if id == nodeID {
			ids[r] = ""
		}
		kept = kept || ids[r] != ""
	}
	if kept {
		j.NodeIDs = ids
	}
	return what
}
