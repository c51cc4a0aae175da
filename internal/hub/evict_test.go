package hub

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"testing"

	"kumo/internal/agentproto"
	"kumo/internal/model"
)

// A job its agent reports preempted is requeued with the attempt's class,
// and its node leaves as preempted; the checkpoint uploaded with its
// artifacts is served to the next attempt's node only.
func TestPreemptedDoneAndCheckpoint(t *testing.T) {
	e := newEnv(t)
	j := e.job(t, "train", "n1", model.JobRunning, func(j *model.Job) {
		j.Env = map[string]string{model.CheckpointEnv: "ckpt"}
		j.History = []model.Attempt{{Number: 1, NodeID: "n1", StartedAt: t0}}
	})
	e.node(t, "n1", model.NodeRunning, j.ID)
	e.node(t, "n2", model.NodeIdle, "")
	a, _ := e.connect(t, "n1", agentproto.Message{Jobs: []agentproto.JobReport{{RunID: j.RunID, State: agentproto.JobRunning}}})

	art := makeTar(t, map[string]string{"outputs/o.txt": "o", "ckpt/step": "7", "other/x": "dropped"})
	up := agentproto.ArtifactsPath + j.RunID + "/artifacts?" + agentproto.AttemptQuery + "=1"
	if got, body := e.do(t, http.MethodPut, up, "n1", cred("n1"), art); got != http.StatusNoContent {
		t.Fatalf("upload = %d %s", got, body)
	}
	code := 143
	a.send(agentproto.Message{Type: agentproto.TypeDone, RunID: j.RunID, ExitCode: &code, Reason: agentproto.ReasonPreempted, Message: "evicted"})
	a.barrier()
	got := e.getJob(t, j.RunID)
	if got.Status != model.JobQueued || got.NodeID != "" || len(got.History) != 1 || got.History[0].Class != model.ClassPreemption {
		t.Fatalf("job = %s on %q, history %+v; want Queued after a preemption", got.Status, got.NodeID, got.History)
	}
	if n, _ := e.st.NodeGet(t.Context(), "n1"); n.State != model.NodePreempted || n.JobID != "" {
		t.Errorf("node = %s with job %q, want preempted without a job", n.State, n.JobID)
	}

	// Attempt 2 on n2 gets the checkpoint; n1 and attempt 1 do not.
	n2 := model.Node{ID: "n2", State: model.NodeIdle}
	if err := got.Assign(&n2, t0); err != nil {
		t.Fatal(err)
	}
	if err := e.st.JobUpdate(t.Context(), got, model.JobQueued, nil, ""); err != nil {
		t.Fatal(err)
	}
	ck := func(node, attempt string) (int, string) {
		return e.do(t, http.MethodGet, agentproto.ArtifactsPath+j.RunID+"/checkpoint?"+agentproto.AttemptQuery+"="+attempt, node, cred(node), nil)
	}
	status, body := ck("n2", "2")
	if status != http.StatusOK {
		t.Fatalf("checkpoint for attempt 2 = %d %s", status, body)
	}
	files := map[string]string{}
	tr := tar.NewReader(bytes.NewReader([]byte(body)))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		if h.Typeflag == tar.TypeReg {
			files[h.Name] = string(b)
		}
	}
	if len(files) != 1 || files["ckpt/step"] != "7" {
		t.Errorf("checkpoint tar = %v, want ckpt/step = 7 only", files)
	}
	for _, c := range []struct{ node, attempt string }{{"n2", "1"}, {"n1", "2"}} {
		if status, _ := ck(c.node, c.attempt); status != http.StatusForbidden && status != http.StatusUnauthorized {
			t.Errorf("checkpoint for %s attempt %s = %d, want refused", c.node, c.attempt, status)
		}
	}
}
