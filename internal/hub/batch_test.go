package hub

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kumo/internal/agentproto"
	"kumo/internal/model"
)

// sendAll writes ms in one write, so that the server reads them as one
// batch.
func (a *agent) sendAll(ms ...agentproto.Message) {
	a.t.Helper()
	var b []byte
	for _, m := range ms {
		line, err := json.Marshal(m)
		if err != nil {
			a.t.Fatal(err)
		}
		b = append(append(b, line...), '\n')
	}
	if _, err := a.stream.Write(b); err != nil {
		a.t.Fatalf("send batch: %v", err)
	}
}

// TestBatchedReports sends a job's reports that arrive together (one
// write) and checks the outcome is the one they have one by one, and that
// Done is acknowledged only when its result is stored.
func TestBatchedReports(t *testing.T) {
	zero, one := 0, 1
	started, ended := t0.Add(time.Minute), t0.Add(2*time.Minute)
	tests := []struct {
		name       string
		onNode     string // the node the job is assigned to
		reports    func(runID string) []agentproto.Message
		wantStatus model.JobStatus
		wantExit   *int
		wantIdle   bool // the reporting node ends idle, with no job
	}{
		{
			name:   "started, exited and done",
			onNode: "n1",
			reports: func(run string) []agentproto.Message {
				return []agentproto.Message{
					{Type: agentproto.TypeStarted, RunID: run, Time: started},
					{Type: agentproto.TypeExited, RunID: run, ExitCode: &zero, Reason: "exited", Time: ended},
					{Type: agentproto.TypeDone, RunID: run, ExitCode: &zero, Reason: "exited", Time: ended},
				}
			},
			wantStatus: model.JobCompleted, wantExit: &zero, wantIdle: true,
		},
		{
			name:   "started and exited",
			onNode: "n1",
			reports: func(run string) []agentproto.Message {
				return []agentproto.Message{
					{Type: agentproto.TypeStarted, RunID: run, Time: started},
					{Type: agentproto.TypeExited, RunID: run, ExitCode: &one, Reason: "exited", Time: ended},
				}
			},
			wantStatus: model.JobFinalizing,
		},
		{
			name:   "started and a failure",
			onNode: "n1",
			reports: func(run string) []agentproto.Message {
				return []agentproto.Message{
					{Type: agentproto.TypeStarted, RunID: run, Time: started},
					{Type: agentproto.TypeDone, RunID: run, ExitCode: &one, Reason: "exited", Time: ended},
				}
			},
			wantStatus: model.JobQueued, wantIdle: true, // Done without Exited: the agent lost the exit, the job is retried
		},
		{
			name:   "another node's job",
			onNode: "n2",
			reports: func(run string) []agentproto.Message {
				return []agentproto.Message{
					{Type: agentproto.TypeStarted, RunID: run, Time: started},
					{Type: agentproto.TypeExited, RunID: run, ExitCode: &zero, Reason: "exited", Time: ended},
					{Type: agentproto.TypeDone, RunID: run, ExitCode: &zero, Reason: "exited", Time: ended},
				}
			},
			wantStatus: model.JobPreparing, wantIdle: true, // dropped
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The same reports one at a time, each handled before the
			// next is sent, give the outcome to match.
			oneJob, oneNode := runReports(t, tt.onNode, tt.reports, false)
			job, node := runReports(t, tt.onNode, tt.reports, true)
			if diff := cmp.Diff(oneJob, job); diff != "" {
				t.Errorf("job batched differs from one by one (-one +batched):\n%s", diff)
			}
			if diff := cmp.Diff(oneNode, node, cmpopts.IgnoreFields(model.Node{}, "AgentKey", "StateSince")); diff != "" {
				t.Errorf("node batched differs from one by one (-one +batched):\n%s", diff)
			}
			if job.Status != tt.wantStatus {
				t.Errorf("job is %s, want %s", job.Status, tt.wantStatus)
			}
			if (job.ExitCode == nil) != (tt.wantExit == nil) || job.ExitCode != nil && *job.ExitCode != *tt.wantExit {
				t.Errorf("exit code %v, want %v", job.ExitCode, tt.wantExit)
			}
			if tt.wantStatus != model.JobPreparing && tt.wantStatus != model.JobQueued && !job.StartedAt.Equal(started) {
				t.Errorf("started at %v, want %v", job.StartedAt, started)
			}
			if idle := node.State == model.NodeIdle && node.JobID == ""; idle != tt.wantIdle {
				t.Errorf("node is %s with job %q, want freed %v", node.State, node.JobID, tt.wantIdle)
			}
		})
	}
}

// runReports connects node n1 with a job assigned to onNode, sends the
// job's reports, batched (one write) or one at a time, and returns the
// stored job and node n1 once the server has handled them. A Done's Ack
// is checked to come only once its result can be read.
func runReports(t *testing.T, onNode string, reports func(string) []agentproto.Message, batched bool) (model.Job, model.Node) {
	t.Helper()
	e := newEnv(t)
	j := e.job(t, "train", onNode, model.JobPreparing, nil)
	hello := agentproto.Message{}
	if onNode == "n1" {
		e.node(t, "n1", model.NodeRunning, j.ID)
		hello.Jobs = []agentproto.JobReport{{RunID: j.RunID, State: agentproto.JobStarting}}
	} else {
		e.node(t, "n1", model.NodeIdle, "")
	}
	a, _ := e.connect(t, "n1", hello)
	ms := reports(j.RunID)
	if !batched {
		for _, m := range ms {
			a.send(m)
			a.barrier()
		}
		return e.getJob(t, j.RunID), e.getNode(t, "n1")
	}
	a.sendAll(ms...)
	if ms[len(ms)-1].Type == agentproto.TypeDone {
		// Read the moment the Ack arrives: it must find the result.
		if got := a.recv(); got.Type != agentproto.TypeAck || got.RunID != j.RunID {
			t.Fatalf("answer = %+v, want Ack of %s", got, j.RunID)
		}
		if got := e.getJob(t, j.RunID); onNode == "n1" && (got.Status == model.JobPreparing || got.Status == model.JobRunning) {
			t.Errorf("at the Ack the job is %s, want its end stored", got.Status)
		}
	}
	if got := a.barrier(); len(got) != 0 {
		t.Errorf("the server sent %+v, want nothing more", got)
	}
	return e.getJob(t, j.RunID), e.getNode(t, "n1")
}

// TestNextWaitsForAJobsReports checks which batches a connection's
// messages make: a Started or Exited waits (up to the window) for the
// job's next report, a Done or anything else does not.
func TestNextWaitsForAJobsReports(t *testing.T) {
	msg := func(typ agentproto.Type) agentproto.Message { return agentproto.Message{Type: typ, RunID: "r"} }
	tests := []struct {
		name   string
		first  []agentproto.Message // there when next is called
		later  []agentproto.Message // sent after next began
		window time.Duration
		want   []agentproto.Type
	}{
		{"started waits for done", []agentproto.Message{msg(agentproto.TypeStarted)},
			[]agentproto.Message{msg(agentproto.TypeExited), msg(agentproto.TypeDone)}, time.Minute,
			[]agentproto.Type{agentproto.TypeStarted, agentproto.TypeExited, agentproto.TypeDone}},
		{"started alone, no window", []agentproto.Message{msg(agentproto.TypeStarted)}, nil, -1,
			[]agentproto.Type{agentproto.TypeStarted}},
		{"started alone, window over", []agentproto.Message{msg(agentproto.TypeStarted)}, nil, time.Millisecond,
			[]agentproto.Type{agentproto.TypeStarted}},
		{"done does not wait", []agentproto.Message{msg(agentproto.TypeDone)}, nil, time.Minute,
			[]agentproto.Type{agentproto.TypeDone}},
		{"log does not wait", []agentproto.Message{msg(agentproto.TypeStarted), msg(agentproto.TypeLog)}, nil, time.Minute,
			[]agentproto.Type{agentproto.TypeStarted, agentproto.TypeLog}},
		{"log ends the batch", []agentproto.Message{msg(agentproto.TypeLog), msg(agentproto.TypeExited)}, nil, time.Minute,
			[]agentproto.Type{agentproto.TypeLog}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make(chan agentproto.Message, maxBatch)
			for _, m := range tt.first {
				in <- m
			}
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				for _, m := range tt.later {
					in <- m
				}
			}()
			batch, ok := next(in, tt.window)
			<-sent
			var got []agentproto.Type
			for _, m := range batch {
				got = append(got, m.Type)
			}
			if !ok || !slices.Equal(got, tt.want) {
				t.Errorf("next = %v, %v; want %v, true", got, ok, tt.want)
			}
		})
	}
}
