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
	"kumo/internal/jobuser"
	"kumo/internal/logcap"
	"kumo/internal/model"
	"kumo/internal/runner"
	"kumo/internal/store"
)

// localRunner runs the jobs of the built-in compute "local" as child
// processes of the control plane, each in its own work directory and, when
// Config.LocalUIDs is set, as a uid of its own.
type localRunner struct {
	d *Dispatcher

	mu       sync.Mutex
	running  map[string]*localJob // by run ID
	uids     map[int]bool         // uids of LocalUIDs held by running jobs
	stopping bool                 // the control plane is stopping: leave jobs for recover
	wg       sync.WaitGroup
}

type localJob struct {
	job *runner.Job
}

// recover settles local jobs that a restart interrupted: their processes
// were the old control plane's children, so they are requeued once (then
// failed), like jobs of a lost node. Their directories go: a requeued job
// starts afresh.
func (l *localRunner) recover(ctx context.Context) error {
	st := l.d.cfg.Store
	if dir := l.d.cfg.LocalDir; dir != "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				l.d.cfg.Log.Warn("remove an interrupted local job's directory", "err", err)
			}
		}
	}
	jobs, err := st.JobListByStatus(ctx, model.JobPreparing, model.JobRunning, model.JobFinalizing)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if !IsLocal(j.ComputeID) {
			continue
		}
		from := j.Status
		j.Lose(model.ReasonControlPlaneRestarted, "the control plane restarted while the job ran", l.d.cfg.Now().UTC())
		if err := st.JobUpdate(ctx, j, from, nil, ""); err != nil && !errors.Is(err, store.ErrPreconditionFailed) {
			return err
		}
	}
	return nil
}

// localHead is how many queued local jobs a pass reads at a time: a pass
// costs the jobs it starts, not the length of the queue.
const localHead = 64

// reconcile starts every queued local job and passes cancels on.
func (l *localRunner) reconcile(ctx context.Context, computeID string) error {
	st := l.d.cfg.Store
	if l.d.cfg.LocalDisabled {
		return nil
	}
	started, err := st.JobListByCompute(ctx, computeID, model.JobPreparing, model.JobRunning)
	if err != nil {
		return fmt.Errorf("list local jobs: %w", err)
	}
	for _, j := range started {
		if j.CancelRequested {
			l.mu.Lock()
			lj := l.running[j.RunID]
			l.mu.Unlock()
			if lj != nil {
				lj.job.Cancel()
			}
		}
	}
	for {
		queued, err := st.JobHead(ctx, computeID, model.JobQueued, localHead)
		if err != nil {
			return fmt.Errorf("list local jobs: %w", err)
		}
		for _, j := range queued {
			if ok, err := l.startQueued(ctx, j); err != nil || !ok {
				return err
			}
		}
		if len(queued) < localHead {
			return nil
		}
	}
}

// startQueued starts a queued local job; ok is false when every uid runs
// a job (the next one to end notifies).
func (l *localRunner) startQueued(ctx context.Context, j model.Job) (ok bool, err error) {
	st := l.d.cfg.Store
	user, ok, err := l.takeUser()
	if err != nil {
		return false, fmt.Errorf("start local job %s: %w", j.Name, err)
	}
	if !ok {
		return false, nil
	}
	from := j.Status
	if err := j.Assign(nil, l.d.cfg.Now().UTC()); err != nil {
		l.putUser(user)
		return false, fmt.Errorf("start local job %s: %w", j.Name, err)
	}
	err = st.JobUpdate(ctx, j, from, nil, "")
	if err != nil {
		l.putUser(user)
	}
	if errors.Is(err, store.ErrPreconditionFailed) {
		return true, nil // no longer queued
	}
	if err != nil {
		return false, fmt.Errorf("start local job %s: %w", j.Name, err)
	}
	if err := l.d.cfg.Files.StartAttempt(j.RunID, j.Attempts); err != nil {
		l.d.cfg.Log.Error("keep the logs of the job's earlier attempt", "job", j.Name, "err", err)
	}
	l.start(ctx, j, user)
	return true, nil
}

// takeUser picks a free uid for a local job, with nothing left running as
// it; nil when local jobs run as the control plane's user, and ok false
// when every uid is in use.
func (l *localRunner) takeUser() (user *jobuser.User, ok bool, err error) {
	r := l.d.cfg.LocalUIDs
	if r == nil {
		return nil, true, nil
	}
	// Claimed host-wide, as another control plane may use the range too;
	// a process of a job from before a restart that still runs as the uid
	// is killed.
	l.mu.Lock()
	defer l.mu.Unlock()
	uid, err := jobuser.Claim(*r, l.d.cfg.LocalDir, func(u int) bool { return l.uids[u] })
	if errors.Is(err, jobuser.ErrNoUID) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	l.uids[uid] = true
	return &jobuser.User{UID: uid, GID: uid}, true, nil
}

func (l *localRunner) putUser(u *jobuser.User) {
	if u == nil {
		return
	}
	l.mu.Lock()
	delete(l.uids, u.UID)
	l.mu.Unlock()
	if err := jobuser.Release(u.UID, l.d.cfg.LocalDir); err != nil {
		l.d.cfg.Log.Error("release local job uid", "uid", u.UID, "err", err)
	}
}

func (l *localRunner) start(ctx context.Context, j model.Job, user *jobuser.User) {
	cfg := l.d.cfg
	dir := filepath.Join(cfg.LocalDir, j.RunID)
	fail := func(msg string) {
		l.putUser(user)
		os.RemoveAll(dir) // before finish: a retry may start at once, in a directory of the same name
		l.finish(ctx, j, nil, "error", msg)
	}
	if err := os.MkdirAll(cfg.LocalDir, 0o711); err != nil {
		fail(fmt.Sprintf("create local job directory: %v", err))
		return
	}
	var code io.ReadCloser
	if j.SnapshotID != "" {
		f, err := cfg.Files.OpenSnapshot(j.SnapshotID)
		if err != nil {
			fail(fmt.Sprintf("open code snapshot: %v", err))
			return
		}
		code = f
	}
	set := map[string]string{"KUMO_RUN_ID": j.RunID, "AZUREML_RUN_ID": j.Name} // AML's run ID of a v2 job is its name
	if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
		set["CUDA_VISIBLE_DEVICES"] = v
	}
	logCap := logcap.New(dir, cfg.Files.LogLimit()) // the host's copy, bounded like a node's
	spec := runner.Spec{Dir: dir, Command: j.Command, Env: runner.JobEnv(dir, j.Env, set), Timeout: j.Timeout, User: user,
		Output: func(c runner.Chunk) {
			pass, err := logCap.Chunk(c)
			if err != nil {
				cfg.Log.Warn("local job log files", "job", j.Name, "err", err)
			}
			if !pass {
				return
			}
			err = cfg.Files.Append(j.RunID, string(c.Stream), c.Offset, c.Data)
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
		fail(err.Error())
		return
	}
	l.mu.Lock()
	l.running[j.RunID] = &localJob{job: rj}
	l.mu.Unlock()
	if err := store.JobChange(ctx, l.d.cfg.Store, j.RunID, func(x *model.Job) bool {
		return x.Attempts == j.Attempts && x.Start("", cfg.Now().UTC())
	}); err != nil {
		cfg.Log.Error("local job started", "job", j.Name, "err", err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		res := rj.Wait() // nothing runs as user any more
		if err := runner.Reclaim(dir, user); err != nil {
			cfg.Log.Error("local job ended", "job", j.Name, "err", err)
		}
		l.putUser(user)
		l.mu.Lock()
		delete(l.running, j.RunID)
		stopping := l.stopping
		l.mu.Unlock()
		if stopping {
			// Recorded as interrupted; the next start requeues it.
			os.RemoveAll(dir)
			return
		}
		// Keep the job's artifacts with its logs.
		l.saveArtifacts(context.Background(), j, dir)
		reason := map[runner.Reason]string{runner.ReasonCanceled: "canceled", runner.ReasonTimeout: "timeout"}[res.Reason]
		code := res.ExitCode
		os.RemoveAll(dir) // before finish: a retry may start at once, in a directory of the same name
		l.finish(context.Background(), j, &code, reason, res.Message)
	}()
}

func (l *localRunner) finish(ctx context.Context, j model.Job, exitCode *int, reason, msg string) {
	cfg := l.d.cfg
	err := store.JobChange(ctx, l.d.cfg.Store, j.RunID, func(x *model.Job) bool {
		if x.Status.Terminal() || x.Attempts != j.Attempts || x.Status == model.JobQueued {
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
