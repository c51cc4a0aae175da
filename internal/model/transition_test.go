package model

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func queued() Job { return Job{ID: "ws/jobs/j", Name: "j", Status: JobQueued, Timeout: time.Hour} }

// running returns a job assigned to node n and started, at t0.
func running(t *testing.T, j Job, node string) Job {
	t.Helper()
	n := Node{ID: node, State: NodeIdle}
	if err := j.Assign(&n, t0); err != nil {
		t.Fatal(err)
	}
	if !j.Start(node, t0.Add(time.Second)) {
		t.Fatal("Start refused")
	}
	return j
}

func TestAssign(t *testing.T) {
	tests := []struct {
		name    string
		status  JobStatus
		node    *Node
		wantErr bool
	}{
		{"idle node", JobQueued, &Node{ID: "n1", State: NodeIdle}, false},
		{"local", JobQueued, nil, false},
		{"job running", JobRunning, &Node{ID: "n1", State: NodeIdle}, true},
		{"job canceled", JobCanceled, nil, true},
		{"node busy", JobQueued, &Node{ID: "n1", State: NodeRunning, JobID: "other"}, true},
		{"node preparing", JobQueued, &Node{ID: "n1", State: NodePreparing}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := queued()
			j.Status = tt.status
			before := j
			err := j.Assign(tt.node, t0)
			if tt.wantErr {
				if !errors.Is(err, ErrTransition) || j.Status != before.Status || len(j.History) != 0 {
					t.Fatalf("Assign = %v, job %s with %d attempts; want ErrTransition and no change", err, j.Status, len(j.History))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantNode := ""
			if tt.node != nil {
				wantNode = tt.node.ID
				if tt.node.State != NodeRunning || tt.node.JobID != j.ID || !tt.node.StateSince.Equal(t0) {
					t.Errorf("node = %s with %q since %v, want running %s since t0", tt.node.State, tt.node.JobID, tt.node.StateSince, j.ID)
				}
			}
			want := Attempt{Number: 1, NodeID: wantNode, StartedAt: t0}
			if j.Status != JobPreparing || j.NodeID != wantNode || j.Attempts != 1 || len(j.History) != 1 || !reflect.DeepEqual(j.History[0], want) {
				t.Errorf("job = %s on %q, attempts %d, history %+v; want Preparing on %q with %+v", j.Status, j.NodeID, j.Attempts, j.History, wantNode, want)
			}
		})
	}
}

func TestStartFinalizeOnlyFromTheirNode(t *testing.T) {
	j := queued()
	if err := j.Assign(&Node{ID: "n1", State: NodeIdle}, t0); err != nil {
		t.Fatal(err)
	}
	if j.Start("n2", t0) || j.Finalize("n2") {
		t.Error("another node started or finalized the job")
	}
	if !j.Start("n1", t0) || j.Status != JobRunning || j.Start("n1", t0) {
		t.Errorf("Start from n1: status %s; want Running once", j.Status)
	}
	if !j.Finalize("n1") || j.Status != JobFinalizing {
		t.Errorf("Finalize: status %s, want Finalizing", j.Status)
	}
}

func TestFinish(t *testing.T) {
	zero, three := 0, 3
	tests := []struct {
		name       string
		maxRetries int
		cancel     bool
		exit       *int
		reason     string
		wantStatus JobStatus
		wantCode   string
		wantClass  FailureClass
		wantReason Reason
	}{
		{"success", 0, false, &zero, "exited", JobCompleted, "", ClassNone, ReasonExited},
		{"exit code", 0, false, &three, "", JobFailed, "UserError", ClassUser, ReasonExited},
		{"exit code retried", 1, false, &three, "", JobQueued, "", ClassUser, ReasonExited},
		{"timeout", 0, false, nil, "timeout", JobFailed, "JobTimeout", ClassUser, ReasonTimeout},
		{"timeout retried", 2, false, nil, "timeout", JobQueued, "", ClassUser, ReasonTimeout},
		{"run error", 0, false, nil, "error", JobFailed, "JobFailed", ClassUser, ReasonRunError},
		{"canceled", 3, false, nil, "canceled", JobCanceled, "Canceled", ClassNone, ReasonCanceled},
		{"failure after a cancel is not retried", 3, true, &three, "", JobFailed, "UserError", ClassUser, ReasonExited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := queued()
			j.MaxRetries, j.CancelRequested = tt.maxRetries, tt.cancel
			j = running(t, j, "n1")
			j.Finish(tt.exit, tt.reason, "", t0.Add(time.Minute))
			code := ""
			if j.Error != nil {
				code = j.Error.Code
			}
			if j.Status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("job = %s %q, want %s %q", j.Status, code, tt.wantStatus, tt.wantCode)
			}
			a := j.History[0]
			if a.Class != tt.wantClass || a.Reason != tt.wantReason || !a.EndedAt.Equal(t0.Add(time.Minute)) {
				t.Errorf("attempt = %+v, want class %q reason %s ended at t0+1m", a, tt.wantClass, tt.wantReason)
			}
			if tt.wantStatus == JobQueued && (j.NodeID != "" || !j.StartedAt.IsZero() || j.ExitCode != nil || j.Error != nil) {
				t.Errorf("requeued job keeps node %q, start %v, exit %v, error %v", j.NodeID, j.StartedAt, j.ExitCode, j.Error)
			}
		})
	}
}

// Each class draws on its own budget: user failures on MaxRetries, node
// losses and preemptions on their caps, and one never uses up another.
func TestRetryBudgets(t *testing.T) {
	tests := []struct {
		name     string
		reason   Reason
		cap      int
		wantCode string
	}{
		{"infrastructure", ReasonNodeLost, MaxInfrastructureRetries, ErrorCodeNodeFailure},
		{"agent lost the job", ReasonAgentLostJob, MaxInfrastructureRetries, ErrorCodeNodeFailure},
		{"control plane restarted", ReasonControlPlaneRestarted, MaxInfrastructureRetries, ErrorCodeNodeFailure},
		{"preemption", ReasonPreempted, MaxPreemptionRetries, ErrorCodePreemption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := queued()
			j.MaxRetries = 1
			// A user failure first: retried, and it does not count here.
			j = running(t, j, "n0")
			one := 1
			j.Finish(&one, "", "", t0)
			if j.Status != JobQueued {
				t.Fatalf("after a user failure job = %s, want Queued", j.Status)
			}
			for i := 1; i <= tt.cap+1; i++ {
				j = running(t, j, "n")
				what := j.Lose(tt.reason, "lost", t0.Add(time.Minute))
				if i <= tt.cap {
					if what != "requeued" || j.Status != JobQueued {
						t.Fatalf("loss %d: %s, job %s; want requeued", i, what, j.Status)
					}
					continue
				}
				if what != "failed" || j.Status != JobFailed || j.Error == nil || j.Error.Code != tt.wantCode ||
					!strings.HasPrefix(j.Error.Message, "lost (the job was requeued ") || j.EndedAt.IsZero() {
					t.Fatalf("loss %d: %s, job %s %+v; want failed with %s", i, what, j.Status, j.Error, tt.wantCode)
				}
			}
			if got, want := len(j.History), tt.cap+2; got != want || j.Attempts != want {
				t.Errorf("history has %d attempts, Attempts %d; want %d", got, j.Attempts, want)
			}
			if got := j.Retries(tt.reason.Class(false)); got != tt.cap+1 {
				t.Errorf("Retries = %d, want %d", got, tt.cap+1)
			}
		})
	}
}

func TestLoseCanceledAndTerminal(t *testing.T) {
	j := running(t, queued(), "n1")
	j.CancelRequested = true
	if what := j.Lose(ReasonNodeLost, "node n1: gone", t0); what != "canceled" || j.Status != JobCanceled {
		t.Errorf("Lose after a cancel: %s, job %s; want canceled", what, j.Status)
	}
	before := len(j.History)
	if j.Lose(ReasonPreempted, "again", t0); j.Status != JobCanceled || len(j.History) != before {
		t.Errorf("Lose of a terminal job changed it: %s, %d attempts", j.Status, len(j.History))
	}
}

// A job started before kumo kept histories gets its attempt recorded when
// it ends, so it counts against the cap.
func TestLoseWithoutHistory(t *testing.T) {
	j := Job{Name: "old", Status: JobRunning, NodeID: "n1", Attempts: 1, StartedAt: t0}
	j.Lose(ReasonNodeLost, "lost", t0.Add(time.Minute))
	if len(j.History) != 1 || j.History[0].NodeID != "n1" || j.History[0].Class != ClassInfrastructure || j.Status != JobQueued {
		t.Fatalf("history %+v, job %s; want one infrastructure attempt on n1 and Queued", j.History, j.Status)
	}
}

func TestCancelAndEnd(t *testing.T) {
	j := queued()
	if !j.Cancel(t0) || j.Status != JobCanceled || !j.CancelRequested {
		t.Errorf("Cancel of a queued job: %s, want Canceled at once", j.Status)
	}
	r := running(t, queued(), "n1")
	if r.Cancel(t0) || r.Status != JobRunning || !r.CancelRequested {
		t.Errorf("Cancel of a running job: %s requested %v; want Running with the cancel requested", r.Status, r.CancelRequested)
	}
	r.End(ReasonComputeDeleted, "compute deleted", t0)
	if r.Status != JobFailed || r.Error.Code != "ComputeDeleted" || r.History[0].Class != ClassInfrastructure {
		t.Errorf("End: %s %+v, attempt %+v", r.Status, r.Error, r.History[0])
	}
	q := queued()
	q.End(ReasonComputeDeleted, "compute deleted", t0)
	if q.Status != JobCanceled || len(q.History) != 0 {
		t.Errorf("End of a queued job: %s with %d attempts, want Canceled, none", q.Status, len(q.History))
	}
}

func TestNodeFreeAndRemove(t *testing.T) {
	n := Node{ID: "n1", State: NodeRunning, JobID: "j"}
	if n.Free("other", t0) || n.State != NodeRunning {
		t.Error("freed for another job")
	}
	if !n.Free("j", t0) || n.State != NodeIdle || n.JobID != "" {
		t.Errorf("Free: %s %q, want idle without a job", n.State, n.JobID)
	}
	for _, to := range []NodeState{NodeUnusable, NodePreempted, NodeLeaving} {
		m := Node{ID: "n", State: NodeRunning, JobID: "j"}
		if err := m.Remove(to, "why", t0); err != nil || m.State != to || m.JobID != "" || m.Reason != "why" {
			t.Errorf("Remove(%s) = %v: %+v", to, err, m)
		}
	}
	m := Node{ID: "n", State: NodeRunning}
	if err := m.Remove(NodeIdle, "why", t0); !errors.Is(err, ErrTransition) {
		t.Errorf("Remove(idle) = %v, want ErrTransition", err)
	}
}

func TestMaxHistory(t *testing.T) {
	j := queued()
	j.MaxRetries = MaxHistory + 10
	for range MaxHistory + 5 {
		j = running(t, j, "n")
		one := 1
		j.Finish(&one, "", "", t0)
	}
	if len(j.History) != MaxHistory || j.History[len(j.History)-1].Number != MaxHistory+5 {
		t.Errorf("history has %d attempts, last %d; want %d, the newest kept", len(j.History), j.History[len(j.History)-1].Number, MaxHistory)
	}
}
