package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/runner"
	"kumo/internal/store"
)

// localRunner runs the jobs of the built-in compute "local" as child
// processes of the control plane, each in its own work directory.
type localRunner struct {
	d *Dispatcher

	mu       sync.Mutex
	running  map[string]*localJob // by run ID
	stopping bool                 // the control plane is stopping: leave jobs for recover
	wg       sync.WaitGroup
}

type localJob struct {
	job *runner.Job
}

// recover settles local jobs that a restart interrupted: their processes
// were the old control plane's children, so they are requeued once (then
// failed), like jobs of a lost node.
func (l *localRunner) recover(ctx context.Context) error {
	st := l.d.cfg.Store
	jobs, err := st.JobListByStatus(ctx, model.JobPreparing, model.JobRunning, model.JobFinalizing)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if !IsLocal(j.ComputeID) {
			continue
		}
		from := j.Status
		j.Requeue("the control plane restarted while the job ran")
		if j.Status.Terminal() {
			j.EndedAt = l.d.cfg.Now().UTC()
		}
		if err := st.JobUpdate(ctx, j, from, nil, ""); err != nil && !errors.Is(err, store.ErrPreconditionFailed) {
			return err
		}
	}
	return nil
}

// reconcile starts every queued local job and passes cancels on.
func (l *localRunner) reconcile(ctx context.Context, computeID string) error {
	st := l.d.cfg.Store
	jobs, err := st.JobListByCompute(ctx, computeID, model.JobQueued, model.JobPreparing, model.JobRunning)
	if err != nil {
		return fmt.Errorf("list local jobs: %w", err)
	}
	for _, j := range jobs {
		if j.Status != model.JobQueued {
			if j.CancelRequested {
				l.mu.Lock()
				lj := l.running[j.RunID]
				l.mu.Unlock()
				if lj != nil {
					lj.job.Cancel()
				}
			}
			continue
		}
		from := j.Status
		j.Status, j.Attempts = model.JobPreparing, j.Attempts+1
		err := st.JobUpdate(ctx, j, from, nil, "")
		if errors.Is(err, store.ErrPreconditionFailed) {
			continue
		}
		if err != nil {
			return fmt.Errorf("start local job %s: %w", j.Name, err)
		}
		l.start(ctx, j)
	}
	return nil
}

func (l *localRunner) start(ctx context.Context, j model.Job) {
	cfg := l.d.cfg
	dir := filepath.Join(cfg.LocalDir, j.RunID)
	var code io.ReadCloser
	if j.SnapshotID != "" {
		f, err := cfg.Files.OpenSnapshot(j.SnapshotID)
		if err != nil {
			l.finish(ctx, j, nil, "error", fmt.Sprintf("open code snapshot: %v", err))
			return
		}
		code = f
	}
	env := []string{"KUMO_RUN_ID=" + j.RunID, "AZUREML_RUN_ID=" + j.RunID}
	for k, v := range j.Env {
		env = append(env, k+"="+v)
	}
	spec := runner.Spec{Dir: dir, Command: j.Command, Env: env, Timeout: j.Timeout,
		Output: func(c runner.Chunk) {
			err := cfg.Files.Append(j.RunID, string(c.Stream), c.Offset, c.Data)
			if errors.Is(err, jobfiles.ErrLogCut) {
				err = store.JobWarn(ctx, cfg.Store, j.RunID, jobfiles.CutWarning(cfg.Files.LogLimit()))
			}
			if err != nil {
				cfg.Log.Error("local job output", "job", j.Name, "err", err)
			}
		}}
	if code != nil {
		spec.Code = code
	}
	rj, err := runner.Start(context.WithoutCancel(ctx), spec)
	if code != nil {
		code.Close()
	}
	if err != nil {
		l.finish(ctx, j, nil, "error", err.Error())
		return
	}
	l.mu.Lock()
	l.running[j.RunID] = &localJob{job: rj}
	l.mu.Unlock()
	if err := store.JobChange(ctx, l.d.cfg.Store, j.RunID, func(x *model.Job) bool {
		if x.Status != model.JobPreparing {
			return false
		}
		x.Status, x.StartedAt = model.JobRunning, cfg.Now().UTC()
		return true
	}); err != nil {
		cfg.Log.Error("local job started", "job", j.Name, "err", err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		res := rj.Wait()
		l.mu.Lock()
		delete(l.running, j.RunID)
		stopping := l.stopping
		l.mu.Unlock()
		if stopping {
			// Recorded as interrupted; the next start requeues it.
			return
		}
		// Keep the job's artifacts with its logs.
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarArtifacts(dir, pw)) }()
		if err := cfg.Files.SaveArtifacts(j.RunID, pr); err != nil {
			cfg.Log.Error("local job artifacts", "job", j.Name, "err", err)
		}
		pr.Close()
		reason := map[runner.Reason]string{runner.ReasonCanceled: "canceled", runner.ReasonTimeout: "timeout"}[res.Reason]
		code := res.ExitCode
		l.finish(context.Background(), j, &code, reason, res.Message)
		os.RemoveAll(dir)
	}()
}

func (l *localRunner) finish(ctx context.Context, j model.Job, exitCode *int, reason, msg string) {
	cfg := l.d.cfg
	err := store.JobChange(ctx, l.d.cfg.Store, j.RunID, func(x *model.Job) bool {
		if x.Status.Terminal() {
			return false
		}
		x.Finish(exitCode, reason, msg, cfg.Now().UTC())
		return true
	})
	if err != nil {
		cfg.Log.Error("local job end", "job", j.Name, "err", err)
	}
	cfg.Files.Close(j.RunID)
	cfg.Changed(j.ComputeID)
}

// stopAll ends running local jobs without recording an end: the next
// start requeues them (once), as after a crash.
func (l *localRunner) stopAll() {
	l.mu.Lock()
	l.stopping = true
	for _, lj := range l.running {
		lj.job.Cancel()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
