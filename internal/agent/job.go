package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kumo/internal/agentproto"
	"kumo/internal/logcap"
	"kumo/internal/model"
	"kumo/internal/runner"
)

// Reasons a job ended, as Exited and Done carry them.
const (
	reasonExited   = "exited"                   // the process ended by itself (any exit code or signal)
	reasonCanceled = "canceled"                 // canceled by the server or because the agent stopped
	reasonTimeout  = "timeout"                  // ran longer than its spec's Timeout
	reasonError    = "error"                    // it could not run, or the agent lost track of it
	reasonEvicted  = agentproto.ReasonPreempted // its node is taken away: it got notice, SIGTERM, then SIGKILL at the deadline
)

// NoticeFile is the name, in a job's directory, of the eviction notice
// file; KUMO_EVICTION_NOTICE_FILE names its path. It appears (JSON, see
// evictionNotice) just before the job's processes get SIGTERM.
const NoticeFile = ".kumo-eviction-notice.json"

// evictionNotice is the content of NoticeFile, shaped after Azure's
// Scheduled Events Preempt event.
type evictionNotice struct {
	EventType       string    `json:"eventType"`       // "Preempt"
	NotBefore       time.Time `json:"notBefore"`       // when the node is taken and the job's processes get SIGKILL
	LeadTimeSeconds int       `json:"leadTimeSeconds"` // seconds from the notice to NotBefore
}

// result is how a job ended.
type result struct {
	ExitCode *int      `json:"exitCode,omitempty"` // nil when no process ran
	Reason   string    `json:"reason"`
	Message  string    `json:"message,omitempty"`
	Time     time.Time `json:"time"` // when it ended
}

// job is one job the agent holds, from Run until the server acknowledges
// Done. Its goroutine (run) owns the process; other goroutines read and
// update its state under mu.
type job struct {
	a      *agent
	id     string
	dir    string
	spec   agentproto.JobSpec
	ctx    context.Context // canceled by Cancel or when the agent stops
	cancel context.CancelFunc

	// startedCh is closed once Started was sent (or could not be), so that
	// Log messages never precede it.
	startedCh chan struct{}

	// logCap bounds the job's log files to the spec's LogLimit; output
	// uses it under mu.
	logCap *logcap.Cap

	mu        sync.Mutex
	sess      *session // where output goes; nil while detached
	sent      [2]int64 // bytes of stdout and stderr sess has
	state     agentproto.JobState
	pid       int
	pidStart  uint64      // the process's start time in clock ticks after boot
	res       *result     // set once the job ended
	artifacts bool        // outputs/ or logs/ held files when it ended
	final     bool        // artifacts are handled: Done may be sent
	forgotten bool        // acknowledged; nothing more is written or sent
	proc      *runner.Job // the running process; nil before it starts
	evictAt   time.Time   // when an eviction takes the node; zero when none was announced
}

func newJob(a *agent, spec agentproto.JobSpec) *job {
	ctx, cancel := context.WithCancel(a.jobsCtx)
	return &job{
		a:         a,
		id:        spec.RunID,
		dir:       filepath.Join(a.jobsDir, spec.RunID),
		spec:      spec,
		ctx:       ctx,
		cancel:    cancel,
		startedCh: make(chan struct{}),
		logCap:    logcap.New(filepath.Join(a.jobsDir, spec.RunID), spec.LogLimit),
		state:     agentproto.JobStarting,
	}
}

// run runs the job from start to Done.
func (j *job) run() {
	defer j.a.wg.Done()
	defer j.cancel()
	res := j.execute()
	if j.ended(res) {
		j.finish()
	}
}

// execute downloads the code, runs the process and waits for it.
func (j *job) execute() result {
	defer j.markStarted() // on failure before start, too
	// runner.Start makes j.dir (restoreCheckpoint first, for a job with a
	// checkpoint directory).
	var code io.Reader
	if j.spec.SnapshotID != "" {
		body, err := j.a.fetchSnapshot(j.ctx, j.spec.SnapshotID)
		if err != nil {
			return j.failed(err)
		}
		defer body.Close()
		code = body
	}
	if err := j.a.restoreCheckpoint(j.ctx, j); err != nil {
		return j.failed(err)
	}
	set := map[string]string{"KUMO_RUN_ID": j.id, "KUMO_NODE_ID": j.a.cfg.NodeID, "AZUREML_RUN_ID": j.amlRunID(),
		"KUMO_EVICTION_NOTICE_FILE": filepath.Join(j.dir, NoticeFile)}
	if c := j.checkpoint(); c != "" {
		set[model.CheckpointEnv] = filepath.Join(j.dir, c)
	}
	command := j.spec.Command
	if g := j.spec.Gang; g != nil {
		env, launch, err := gangEnv(g, j.a.cfg.NodeID, command)
		if err != nil {
			return j.failed(err)
		}
		maps.Copy(set, env)
		command = launch
	}
	maps.Copy(set, j.a.cfg.JobEnv)
	p, err := runner.Start(j.ctx, runner.Spec{
		Dir:     j.dir,
		Command: command,
		Env:     runner.JobEnv(j.dir, j.spec.Env, set),
		User:    j.a.cfg.JobUser,
		Spare:   j.a.ssh.Holds, // logged-in admins outlive the job
		Sweeper: j.a.sweeper,
		Spares:  j.a.spares,
		Code:    code,
		Timeout: j.spec.Timeout,
		Grace:   orDefault(j.spec.Grace, j.a.cfg.Grace),
		Output:  j.output,
	})
	if err != nil {
		return j.failed(err)
	}
	j.mu.Lock()
	j.proc = p
	evictAt := j.evictAt
	j.mu.Unlock()
	if !evictAt.IsZero() {
		p.Evict(time.Until(evictAt))
	}
	j.started(p.PID())
	r := p.Wait()
	code0 := r.ExitCode
	res := result{ExitCode: &code0, Reason: reasonExited, Message: r.Message, Time: r.Ended}
	switch r.Reason {
	case runner.ReasonCanceled:
		res.Reason = reasonCanceled
	case runner.ReasonTimeout:
		res.Reason = reasonTimeout
	}
	j.mu.Lock()
	if !j.evictAt.IsZero() {
		// Whatever ended it after the notice, the eviction did.
		res.Reason = reasonEvicted
		if res.Message == "" {
			res.Message = "evicted: its node is taken away"
		}
	}
	j.mu.Unlock()
	return res
}

// failed is the result of a job that could not run.
func (j *job) failed(err error) result {
	os.MkdirAll(j.dir, 0o700) // a job that never ran still gets its directory
	if j.ctx.Err() != nil {
		return result{Reason: reasonCanceled, Message: "canceled before the process started", Time: time.Now()}
	}
	return result{Reason: reasonError, Message: err.Error(), Time: time.Now()}
}

func (j *job) markStarted() {
	select {
	case <-j.startedCh:
	default:
		close(j.startedCh)
	}
}

// started records the running process and sends Started.
func (j *job) started(pid int) {
	now := time.Now()
	j.mu.Lock()
	j.state, j.pid = agentproto.JobRunning, pid
	if s := j.sess; s != nil {
		if s.send(agentproto.Message{Type: agentproto.TypeStarted, RunID: j.id, PID: pid, Time: now}) != nil {
			j.sess = nil
		}
	}
	j.markStarted()
	j.pidStart = procStart(pid)
	j.writeJournal()
	j.mu.Unlock()
}

// output is the runner's Output: it sends each chunk the session does not
// have yet. While detached it drops chunks; attach resends them from the
// log files. Past the spec's LogLimit the log files are cut (see logcap)
// and nothing more is sent.
func (j *job) output(c runner.Chunk) {
	<-j.startedCh
	i := 0
	if c.Stream == runner.Stderr {
		i = 1
	}
	end := c.Offset + int64(len(c.Data))
	j.mu.Lock()
	defer j.mu.Unlock()
	pass, err := j.logCap.Chunk(c)
	if err != nil {
		j.a.log.Warn("agent: bounding job log files", "runId", j.id, "err", err)
	}
	if !pass {
		return
	}
	s := j.sess
	if s == nil || end <= j.sent[i] {
		return
	}
	data, off := c.Data, c.Offset
	if off < j.sent[i] {
		data, off = data[j.sent[i]-off:], j.sent[i]
	}
	if s.send(agentproto.Message{Type: agentproto.TypeLog, RunID: j.id, Stream: string(c.Stream), Offset: off, Data: data}) != nil {
		j.sess = nil
		return
	}
	j.sent[i] = end
}

// ended records the result, writes the journal and sends Exited, or Done
// when there are no artifacts. It reports whether artifacts must be uploaded.
func (j *job) ended(res result) bool {
	j.seal()
	artifacts := false
	for _, d := range j.uploadDirs() {
		artifacts = artifacts || hasFiles(filepath.Join(j.dir, d))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state, j.res, j.artifacts, j.final = agentproto.JobExited, &res, artifacts, !artifacts
	j.sendEnd()
	j.writeJournal()
	return artifacts
}

// seal takes the ended job's directory back before its artifacts are read;
// see [runner.Reclaim].
func (j *job) seal() {
	if err := runner.Reclaim(j.dir, j.a.cfg.JobUser); err != nil {
		j.a.log.Warn("agent: ended job", "runId", j.id, "err", err)
	}
}

// finish uploads the artifacts, retrying until they are taken, refused,
// or the agent stops, and then sends Done. An upload cut short by the agent
// stopping is retried at its next start.
func (j *job) finish() {
	err := j.a.uploadArtifacts(j)
	if err != nil && !errors.As(err, new(*permanentError)) {
		j.a.log.Warn("agent: artifacts not uploaded; will retry at the next start", "runId", j.id, "err", err)
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		j.a.log.Error("agent: artifacts refused", "runId", j.id, "err", err)
		msg := "artifacts not uploaded: " + err.Error()
		if j.res.Message != "" {
			msg = j.res.Message + "; " + msg
		}
		j.res.Message = msg
	}
	j.final = true
	j.sendEnd()
	j.writeJournal()
}

// sendEnd sends Done if the job is final, else Exited; j.mu must be held.
func (j *job) sendEnd() {
	s := j.sess
	if s == nil || j.res == nil || j.forgotten {
		return
	}
	t := agentproto.TypeExited
	if j.final {
		t = agentproto.TypeDone
	}
	m := agentproto.Message{Type: t, RunID: j.id, ExitCode: j.res.ExitCode, Reason: j.res.Reason, Message: j.res.Message, Time: j.res.Time}
	if s.send(m) != nil {
		j.sess = nil
	}
}

// resendEnd answers a repeated Run: an ended job's Exited or Done again.
func (j *job) resendEnd() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state == agentproto.JobExited {
		j.sendEnd()
	}
}

// report is the job's entry in Hello.
func (j *job) report() agentproto.JobReport {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := agentproto.JobReport{RunID: j.id, State: j.state}
	if j.res != nil {
		r.ExitCode, r.Reason, r.Message = j.res.ExitCode, j.res.Reason, j.res.Message
	}
	r.Logs.Stdout = fileSize(filepath.Join(j.dir, runner.Stdout.File()))
	r.Logs.Stderr = fileSize(filepath.Join(j.dir, runner.Stderr.File()))
	return r
}

// attach makes s the job's session after Welcome: it sends Started if
// Hello missed it, the output s lacks from the offsets s holds, and how the
// job ended if it has.
func (j *job) attach(s *session, from agentproto.Offsets, reported agentproto.JobState) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.forgotten {
		return
	}
	j.sess = s
	if reported == agentproto.JobStarting && j.state != agentproto.JobStarting && j.pid != 0 {
		if s.send(agentproto.Message{Type: agentproto.TypeStarted, RunID: j.id, PID: j.pid, Time: time.Now()}) != nil {
			j.sess = nil
			return
		}
	}
	for i, st := range []runner.Stream{runner.Stdout, runner.Stderr} {
		off := from.Stdout
		if st == runner.Stderr {
			off = from.Stderr
		}
		n, err := j.resend(s, st, off)
		if err != nil {
			j.a.log.Warn("agent: resending output", "runId", j.id, "stream", st, "err", err)
		}
		if j.sess == nil {
			return
		}
		j.sent[i] = off + n
	}
	if j.state == agentproto.JobExited {
		j.sendEnd()
	}
}

// resend sends stream st from off to the end of its log file and returns
// the bytes sent; j.mu must be held.
func (j *job) resend(s *session, st runner.Stream, off int64) (int64, error) {
	f, err := openNoFollow(filepath.Join(j.dir, st.File()))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := f.ReadAt(buf, off+n)
		if k > 0 {
			if s.send(agentproto.Message{Type: agentproto.TypeLog, RunID: j.id, Stream: string(st), Offset: off + n, Data: buf[:k]}) != nil {
				j.sess = nil
				return n, nil
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", st.File(), err)
		}
	}
}

// detach stops sending to s.
func (j *job) detach(s *session) {
	j.mu.Lock()
	if j.sess == s {
		j.sess = nil
	}
	j.mu.Unlock()
}

// forget marks an ended job acknowledged and removes its journal entry and
// then its directory (its artifacts are stored), or keeps the directory,
// emptied, for the next job; it reports false, doing nothing, if the job
// has not ended.
func (j *job) forget() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state != agentproto.JobExited {
		return false
	}
	j.forgotten = true
	j.sess = nil
	if err := j.a.journal.append(record{RunID: j.id, Acked: true}); err != nil {
		j.a.log.Warn("agent: writing journal", "runId", j.id, "err", err)
	}
	if err := j.a.spares.Release(j.dir); err != nil {
		j.a.log.Warn("agent: removing job directory", "runId", j.id, "err", err)
	}
	return true
}

// openNoFollow opens name for reading, refusing symbolic links in any part
// of the path: a job owns its directory and could replace its log files
// with links to files only the agent may read.
func openNoFollow(name string) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if errors.Is(err, unix.ENOSYS) {
		return os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0) // kernels before 5.6: the last element only
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// amlRunID is the job's run ID as AML gives it to a v2 job in
// AZUREML_RUN_ID: its name (the run ID from a control plane that sent no
// name).
func (j *job) amlRunID() string {
	if j.spec.Name != "" {
		return j.spec.Name
	}
	return j.id
}

func fileSize(name string) int64 {
	fi, err := os.Lstat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// evict announces that the node is taken at deadline: the notice file is
// written, then the job's processes get SIGTERM, and SIGKILL at deadline
// (a job not started yet gets them once it starts). A second notice
// changes nothing.
func (j *job) evict(deadline time.Time) {
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.evictAt.IsZero() || j.res != nil {
		return
	}
	j.evictAt = deadline
	lead := max(deadline.Sub(now), 0)
	n := evictionNotice{EventType: "Preempt", NotBefore: deadline.UTC(), LeadTimeSeconds: int(lead.Round(time.Second) / time.Second)}
	if err := writeNotice(j.dir, n); err != nil {
		j.a.log.Warn("agent: eviction notice file", "runId", j.id, "err", err)
	}
	if j.proc != nil {
		j.proc.Evict(lead)
	}
}

// writeNotice writes the notice file in the job's directory (mode 0644, so
// that the job's own user reads it). The directory belongs to the job, so
// the file is created anew, never followed through a link the job made.
func writeNotice(dir string, n evictionNotice) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, NoticeFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return errors.Join(err, f.Close())
}
