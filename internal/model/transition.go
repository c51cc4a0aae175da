package model

import (
	"errors"
	"fmt"
	"time"
)

// This file holds every change of a job's status and of a node's state
// that ties the two together: assign, start, finalize, finish, lose (evict
// or requeue) and cancel. The API, the dispatcher, the agent hub and the
// reconcilers call these functions instead of writing status strings, so
// that the rules (which move is allowed, how an attempt ends, which retry
// budget it draws on) live in one place. Each function changes only the
// values it is given; the caller stores them, conditional on the status it
// read (see store.Store.JobUpdate), so a lost race changes nothing.

// FailureClass says why an attempt of a job ended without success, and so
// which retry budget a retry draws on.
type FailureClass string

// Failure classes.
const (
	// ClassNone is the class of an attempt that is still running, that
	// succeeded, or that was canceled.
	ClassNone FailureClass = ""
	// ClassUser is the job's own failure: a non-zero exit, a timeout, a
	// command that could not start. Only these retries count against
	// Job.MaxRetries.
	ClassUser FailureClass = "user"
	// ClassInfrastructure is a failure of kumo or of the node: a node that
	// stopped heartbeating or became unusable, an agent that lost the job,
	// a control-plane restart while a local job ran. Retried up to
	// MaxInfrastructureRetries times.
	ClassInfrastructure FailureClass = "infrastructure"
	// ClassPreemption is a low-priority node taken away by its provider.
	// Retried up to MaxPreemptionRetries times.
	ClassPreemption FailureClass = "preemption"
)

// Retry caps for the classes that do not count against Job.MaxRetries.
const (
	// MaxInfrastructureRetries is how many times a job is requeued after
	// infrastructure failures before it fails with NodeFailure. It is low
	// on purpose: a job that keeps killing its nodes should stop, not be
	// relaunched again and again.
	MaxInfrastructureRetries = 1
	// MaxPreemptionRetries is how many times a job is requeued after its
	// low-priority node was preempted before it fails with
	// PreemptionError.
	MaxPreemptionRetries = 5
)

// MaxUserRetries bounds Job.MaxRetries.
const MaxUserRetries = 10

// ValidateMaxRetries checks a job's user retry budget.
func ValidateMaxRetries(n int) error {
	if n < 0 || n > MaxUserRetries {
		return fieldErr(CodeInvalidParameter, "properties.kumo.maxRetries", "properties.kumo.maxRetries must be 0 to %d; got %d", MaxUserRetries, n)
	}
	return nil
}

// Error codes a job fails with when a retry cap is reached.
const (
	ErrorCodeNodeFailure = "NodeFailure"     // infrastructure retries used up
	ErrorCodePreemption  = "PreemptionError" // preemption retries used up
)

// Reason is why a job or node moved, recorded with the attempt it ended.
type Reason string

// Reasons.
const (
	ReasonExited                Reason = "Exited"                // the job's process exited by itself
	ReasonTimeout               Reason = "Timeout"               // the job ran past its timeout and was killed
	ReasonRunError              Reason = "RunError"              // the node could not start the job's process
	ReasonCanceled              Reason = "Canceled"              // a user canceled the job
	ReasonNodeLost              Reason = "NodeLost"              // the node stopped heartbeating, failed or vanished
	ReasonAgentLostJob          Reason = "AgentLostJob"          // the node's agent restarted without the job
	ReasonControlPlaneRestarted Reason = "ControlPlaneRestarted" // a local job was running when the control plane stopped
	ReasonPreempted             Reason = "Preempted"             // the provider took the low-priority node away
	ReasonComputeDeleted        Reason = "ComputeDeleted"        // the job's compute was deleted
)

// Class returns the failure class of an attempt that ended for r, given
// whether its process exited with code 0.
func (r Reason) Class(succeeded bool) FailureClass {
	switch r {
	case ReasonExited:
		if succeeded {
			return ClassNone
		}
		return ClassUser
	case ReasonTimeout, ReasonRunError:
		return ClassUser
	case ReasonNodeLost, ReasonAgentLostJob, ReasonControlPlaneRestarted, ReasonComputeDeleted:
		return ClassInfrastructure
	case ReasonPreempted:
		return ClassPreemption
	}
	return ClassNone
}

// Attempt is one try at running a job: from its assignment to a node (or
// to the local compute) until it ended. Job.History keeps them, oldest
// first.
type Attempt struct {
	Number    int          // 1 for the first attempt; equals Job.Attempts when it began
	NodeID    string       // node it ran on (a gang's rank 0); "" on the local compute
	NodeIDs   []string     // a gang's nodes in rank order; nil for a one-node job
	StartedAt time.Time    // when it was assigned (UTC)
	EndedAt   time.Time    // when it ended (UTC); zero while it runs
	Class     FailureClass // why it failed; ClassNone while it runs, or when it succeeded or was canceled
	Reason    Reason       // why it ended; "" while it runs
	Message   string       // details of Reason; "" means none
	ExitCode  *int         // the process's exit code; nil when it did not exit by itself
}

// MaxHistory bounds the attempts a job keeps: the oldest are dropped
// first. The caps keep real histories far below it.
const MaxHistory = 100

// ErrTransition means a job or node is not in a state the asked change
// starts from.
var ErrTransition = errors.New("invalid transition")

func transitionErr(what string, j *Job) error {
	return fmt.Errorf("%s job %s in status %s: %w", what, j.Name, j.Status, ErrTransition)
}

// current returns the attempt that runs now, or nil.
func (j *Job) current() *Attempt {
	if n := len(j.History); n > 0 && j.History[n-1].EndedAt.IsZero() {
		return &j.History[n-1]
	}
	return nil
}

// Retries counts the ended attempts of class c: the retries that class has
// used (the attempt that ends now included, once it is ended).
func (j *Job) Retries(c FailureClass) int {
	n := 0
	for _, a := range j.History {
		if !a.EndedAt.IsZero() && a.Class == c {
			n++
		}
	}
	return n
}

// Assign moves a queued job to n (nil for the local compute) at now: the
// job is Preparing there with a new attempt, and n runs it. Both must be
// stored together (store.Store.JobUpdate with the node).
func (j *Job) Assign(n *Node, now time.Time) error {
	if j.Status != JobQueued {
		return transitionErr("assign", j)
	}
	nodeID := ""
	if n != nil {
		if n.State != NodeIdle || n.JobID != "" {
			return fmt.Errorf("assign job %s to node %s in state %s: %w", j.Name, n.ID, n.State, ErrTransition)
		}
		nodeID = n.ID
		n.State, n.JobID, n.StateSince = NodeRunning, j.ID, now
	}
	j.Status, j.NodeID, j.Attempts = JobPreparing, nodeID, j.Attempts+1
	j.StartedAt, j.EndedAt, j.ExitCode, j.Error = time.Time{}, time.Time{}, nil, nil
	j.History = append(j.History, Attempt{Number: j.Attempts, NodeID: nodeID, StartedAt: now})
	if len(j.History) > MaxHistory {
		j.History = j.History[len(j.History)-MaxHistory:]
	}
	return nil
}

// Start records that the job's process began at at on nodeID ("" for the
// local compute). It reports false, changing nothing, unless the job is
// Preparing on that node.
func (j *Job) Start(nodeID string, at time.Time) bool {
	if j.NodeID != nodeID || j.Status != JobPreparing {
		return false
	}
	j.Status, j.StartedAt = JobRunning, at
	return true
}

// Finalize records that the job's process exited on nodeID and its outputs
// are being collected. It reports false, changing nothing, unless the job
// is Preparing or Running on that node.
func (j *Job) Finalize(nodeID string) bool {
	if j.NodeID != nodeID || (j.Status != JobRunning && j.Status != JobPreparing) {
		return false
	}
	j.Status = JobFinalizing
	return true
}

// Finish ends the current attempt from how its process ended, reported by
// its node or the local runner: reason is "" or "exited" for a normal
// exit, "canceled", "timeout" or "error" (the process could not run). A
// success completes the job and a cancel cancels it; a failure (class
// user) requeues it while its user retries stay within MaxRetries, and
// fails it after that. The caller frees the node ([Node.Free]).
func (j *Job) Finish(exitCode *int, reason, message string, now time.Time) {
	j.ExitCode, j.EndedAt = exitCode, now
	why := ReasonExited
	switch {
	case reason == "canceled" || (j.CancelRequested && reason != "" && reason != "exited"):
		why = ReasonCanceled
		j.Status = JobCanceled
		j.Error = &Error{Code: "Canceled", Message: "the job was canceled"}
	case reason == "timeout":
		why = ReasonTimeout
		j.Status = JobFailed
		j.Error = &Error{Code: "JobTimeout", Message: fmt.Sprintf("the job ran longer than its timeout of %s", j.Timeout)}
	case reason == "error":
		why = ReasonRunError
		j.Status = JobFailed
		j.Error = &Error{Code: "JobFailed", Message: message}
	case exitCode != nil && *exitCode == 0:
		j.Status = JobCompleted
	default:
		j.Status = JobFailed
		code := -1
		if exitCode != nil {
			code = *exitCode
		}
		msg := fmt.Sprintf("the command exited with code %d", code)
		if message != "" {
			msg += ": " + message
		}
		j.Error = &Error{Code: "UserError", Message: msg}
	}
	class := why.Class(j.Status == JobCompleted)
	detail := message
	if j.Error != nil {
		detail = j.Error.Message
	}
	j.endAttempt(class, why, detail, exitCode, now)
	if class == ClassUser && !j.CancelRequested && j.Retries(ClassUser) <= j.MaxRetries {
		j.requeue()
	}
}

// Lose ends the current attempt because the job's node (or, on the local
// compute, the control plane) lost it, for reason with details in message.
// The job is requeued while the retries of the reason's class stay within
// its cap, failed with NodeFailure or PreemptionError after that, and
// canceled if a cancel was asked for. It reports what became of the job,
// in words ("requeued", "failed", "canceled"). The caller frees or removes
// the node. A terminal job is left as it is.
func (j *Job) Lose(reason Reason, message string, now time.Time) string {
	if j.Status.Terminal() {
		return string(j.Status)
	}
	class := reason.Class(false)
	j.endAttempt(class, reason, message, nil, now)
	used := j.Retries(class)
	switch {
	case j.CancelRequested:
		j.Status, j.EndedAt = JobCanceled, now
		j.Error = &Error{Code: "Canceled", Message: "canceled; " + message}
		return "canceled"
	case class == ClassPreemption && used <= MaxPreemptionRetries,
		class == ClassInfrastructure && used <= MaxInfrastructureRetries:
		j.requeue()
		return "requeued"
	}
	code, cap := ErrorCodeNodeFailure, MaxInfrastructureRetries
	if class == ClassPreemption {
		code, cap = ErrorCodePreemption, MaxPreemptionRetries
	}
	j.Status, j.EndedAt = JobFailed, now
	j.Error = &Error{Code: code, Message: fmt.Sprintf("%s (the job was requeued %s already)", message, times(cap))}
	return "failed"
}

// Cancel asks for j to be canceled at now: a job that has not started is
// canceled at once (reported true); one that runs is marked
// CancelRequested, and its node is told. A terminal job is left as it is.
func (j *Job) Cancel(now time.Time) bool {
	if j.Status.Terminal() {
		return false
	}
	j.CancelRequested = true
	if j.Status == JobQueued || j.Status == JobNotStarted {
		j.Status, j.EndedAt = JobCanceled, now
		j.Error = &Error{Code: "Canceled", Message: "the job was canceled before it started"}
		return true
	}
	return false
}

// End fails or cancels an unfinished job at now without a retry, for
// reason (e.g. its compute was deleted): a job that has not started is
// canceled, one that runs is failed.
func (j *Job) End(reason Reason, message string, now time.Time) {
	if j.Status.Terminal() {
		return
	}
	j.endAttempt(reason.Class(false), reason, message, nil, now)
	if j.Status == JobNotStarted || j.Status == JobQueued {
		j.Status = JobCanceled
	} else {
		j.Status = JobFailed
	}
	j.EndedAt = now
	j.Error = &Error{Code: string(reason), Message: message}
}

// requeue puts j back in the queue for a new attempt.
func (j *Job) requeue() {
	j.Status, j.NodeID, j.NodeIDs = JobQueued, "", nil
	j.StartedAt, j.EndedAt, j.ExitCode, j.Error = time.Time{}, time.Time{}, nil, nil
}

// endAttempt closes the current attempt. A started job stored before kumo
// kept histories has none: it is recorded then.
func (j *Job) endAttempt(class FailureClass, reason Reason, message string, exitCode *int, now time.Time) {
	a := j.current()
	if a == nil {
		if j.Status != JobPreparing && j.Status != JobRunning && j.Status != JobFinalizing {
			return
		}
		j.History = append(j.History, Attempt{Number: j.Attempts, NodeID: j.NodeID, StartedAt: j.StartedAt})
		a = &j.History[len(j.History)-1]
	}
	a.EndedAt, a.Class, a.Reason, a.Message = now, class, reason, message
	if exitCode != nil {
		c := *exitCode
		a.ExitCode = &c
	}
}

func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

// Free makes a node that ran jobID idle again at now. It reports false,
// changing nothing, unless the node is running that job.
func (n *Node) Free(jobID string, now time.Time) bool {
	if n.JobID != jobID || n.State != NodeRunning {
		return false
	}
	n.JobID, n.State, n.StateSince = "", NodeIdle, now
	return true
}

// Remove takes a node out of service at now: to NodeUnusable, NodePreempted
// or NodeLeaving, with reason. Its job, if any, is no longer its own; the
// caller ends or requeues the job ([Job.Lose]) in the same store call.
func (n *Node) Remove(to NodeState, reason string, now time.Time) error {
	switch to {
	case NodeUnusable, NodePreempted, NodeLeaving:
	default:
		return fmt.Errorf("remove node %s to state %s: %w", n.ID, to, ErrTransition)
	}
	n.State, n.Reason, n.StateSince, n.JobID = to, reason, now, ""
	return nil
}
