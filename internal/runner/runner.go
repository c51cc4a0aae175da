// Package runner runs one job process on a node.
//
// [Start] prepares the job directory (creating outputs/, logs/ and
// user_logs/, and extracting an optional code snapshot), starts the command
// with /bin/sh -c in its own process group with the job directory as working
// directory, and streams its stdout and stderr live to a callback while also
// appending them to files in the job directory:
//
//	user_logs/stdout.txt   the job's stdout, byte for byte
//	user_logs/stderr.txt   the job's stderr, byte for byte
//	user_logs/std_log.txt  both, interleaved in the order they were read (AML's name)
//
// Every [Chunk] carries its stream and the offset of its first byte in that
// stream, which is also its offset in the stream's file, so a consumer that
// has seen offset N can resume from the file at N without loss or duplication.
//
// Cancel (by [Job.Cancel] or the context) and timeout send SIGTERM to the
// whole process group, wait a grace period for the group to end, then send
// SIGKILL to the group; [Job.Wait] returns only once no process of the group
// is left. When the job's main process exits by itself, whatever it left in
// its group is sent SIGKILL before Wait returns (and Wait waits for those
// that hold the job's stdout or stderr), so no process of a finished job
// lingers.
//
// Each job uses three goroutines (one waiting for the process, one reader per
// stream); all end before [Job.Wait] returns.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kumo/internal/jobuser"
)

// Defaults for [Spec] fields left zero.
const (
	DefaultGrace      = 10 * time.Second // time between SIGTERM and SIGKILL
	DefaultDrainLimit = 2 * time.Second  // time to wait for output after the group ended
)

// Log file names, relative to the job directory.
const (
	StdoutFile = "user_logs/stdout.txt"  // stdout, byte offsets as in [Chunk.Offset]
	StderrFile = "user_logs/stderr.txt"  // stderr, byte offsets as in [Chunk.Offset]
	StdLogFile = "user_logs/std_log.txt" // stdout and stderr interleaved
)

// Stream names one of a job's output streams.
type Stream string

// Streams.
const (
	Stdout Stream = "stdout" // the job's standard output
	Stderr Stream = "stderr" // the job's standard error
)

// File returns the stream's log file name relative to the job directory.
func (s Stream) File() string {
	if s == Stderr {
		return StderrFile
	}
	return StdoutFile
}

// Chunk is a piece of a job's output as it was read. Chunks are not aligned
// to lines.
type Chunk struct {
	Stream Stream
	Offset int64  // offset of Data[0] in the stream (and in its log file)
	Data   []byte // valid only during the callback; copy to keep
}

// Limiter places a started job process under resource limits before it runs
// any of the job's command. *cgroup.Group satisfies it.
type Limiter interface {
	Add(pid int) error
}

// Spec describes one job run.
type Spec struct {
	Dir     string        // job directory; created (mode 0700) if missing; the process's working directory
	Command string        // run with /bin/sh -c
	Env     []string      // the process's whole environment, KEY=VALUE (nothing is inherited); see [JobEnv]
	Code    io.Reader     // tar stream extracted into Dir before start; nil means none
	Timeout time.Duration // run time limit; 0 means none
	Grace   time.Duration // SIGTERM to SIGKILL; 0 means DefaultGrace

	// DrainLimit bounds how long output is awaited after the process group
	// has ended, in case a process that left the group holds the pipes;
	// 0 means DefaultDrainLimit.
	DrainLimit time.Duration

	// Output, if set, receives the output as it is read. Calls are never
	// concurrent and happen in offset order per stream; a slow Output slows
	// the job's writes.
	Output func(Chunk)

	// Limiter, if set, is given the process's pid after start and before the
	// command runs; its failure ends the process and fails Start.
	Limiter Limiter

	// User, if set, is who the process runs as (no supplementary groups).
	// Dir and the extracted code are given to it, and the uid is taken to
	// be the job's alone: when the job ends, every process still running
	// as it is killed, in or out of the process group, and what it owns in
	// /tmp, /var/tmp and /dev/shm is removed. Nil means this process's own
	// user.
	User *jobuser.User
}

// Reason says why a job ended other than by exiting with code 0.
type Reason string

// Reasons.
const (
	ReasonNone     Reason = ""         // exited with code 0
	ReasonExitCode Reason = "ExitCode" // exited with a non-zero code
	ReasonSignal   Reason = "Signal"   // killed by a signal it was not sent by the runner (e.g. out of memory)
	ReasonCanceled Reason = "Canceled" // canceled through Job.Cancel or the context
	ReasonTimeout  Reason = "Timeout"  // ran longer than Spec.Timeout
)

// Result is how a job ended.
type Result struct {
	ExitCode int            // exit code; 128+n when killed by signal n, as shells report it
	Signal   syscall.Signal // the signal that killed the process; 0 if it exited
	Reason   Reason         // ReasonNone on success
	Message  string         // human-readable failure reason; empty on success
	Started  time.Time      // when the process started
	Ended    time.Time      // when the process group ended and output was drained
	Stdout   int64          // bytes of stdout
	Stderr   int64          // bytes of stderr
}

// Job is a running job. Its methods are safe for concurrent use.
type Job struct {
	cmd   *exec.Cmd
	pid   int
	grace time.Duration
	drain time.Duration
	out   func(Chunk)
	user  *jobuser.User
	done  chan struct{}

	mu       sync.Mutex
	reason   Reason      // ReasonCanceled or ReasonTimeout once stopping
	stopAt   time.Time   // when SIGTERM was sent
	hardKill bool        // SIGKILL was needed
	reaped   bool        // leader reaped: the pgid may no longer be ours
	killT    *time.Timer // SIGKILL after grace, once stopping
	killErr  error       // processes of the job's uid outlived SIGKILL
	timeoutT *time.Timer // Spec.Timeout; nil if none

	outMu    sync.Mutex // serializes writes to files and Output
	files    [3]*os.File
	readers  [2]*os.File
	offsets  [2]int64
	writeErr error

	result Result
}

// Run starts the job and waits for it; see [Start].
func Run(ctx context.Context, spec Spec) (Result, error) {
	j, err := Start(ctx, spec)
	if err != nil {
		return Result{}, err
	}
	return j.Wait(), nil
}

// Start prepares spec.Dir and starts the job. Canceling ctx cancels the job
// (like [Job.Cancel]); it does not abort Start's own preparation. The job's
// goroutines end once the process group has ended and its output is read.
func Start(ctx context.Context, spec Spec) (*Job, error) {
	if spec.Command == "" {
		return nil, errors.New("start job: empty command")
	}
	if spec.Dir == "" {
		return nil, errors.New("start job: empty directory")
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start job: %w", err)
	}
	if err := os.Chmod(spec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start job: %w", err)
	}
	for _, d := range []string{"outputs", "logs", "user_logs"} {
		if err := os.MkdirAll(filepath.Join(spec.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("start job: %w", err)
		}
	}
	if spec.Code != nil {
		if err := ExtractTar(spec.Dir, spec.Code); err != nil {
			return nil, fmt.Errorf("start job: %w", err)
		}
	}
	if spec.User != nil {
		if err := jobuser.Chown(spec.Dir, *spec.User); err != nil {
			return nil, fmt.Errorf("start job: %w", err)
		}
	}
	j := &Job{
		user:  spec.User,
		grace: orDefault(spec.Grace, DefaultGrace),
		drain: orDefault(spec.DrainLimit, DefaultDrainLimit),
		out:   spec.Output,
		done:  make(chan struct{}),
	}
	if err := j.start(spec); err != nil {
		j.closeAll()
		return nil, fmt.Errorf("start job: %w", err)
	}
	if spec.Timeout > 0 {
		j.timeoutT = time.AfterFunc(spec.Timeout, func() { j.stop(ReasonTimeout) })
	}
	unwatch := context.AfterFunc(ctx, func() { j.stop(ReasonCanceled) })
	go j.supervise(unwatch)
	return j, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (j *Job) start(spec Spec) error {
	for i, name := range []string{StdoutFile, StderrFile, StdLogFile} {
		f, err := os.OpenFile(filepath.Join(spec.Dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		j.files[i] = f
	}
	var writers [2]*os.File
	defer func() {
		for _, w := range writers {
			if w != nil {
				w.Close()
			}
		}
	}()
	for i := range writers {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		j.readers[i], writers[i] = r, w
	}
	args := []string{"/bin/sh", "-c", spec.Command}
	var gateW *os.File
	var extra []*os.File
	if spec.Limiter != nil {
		// Hold the shell until it is in the limiter's group, so nothing of the
		// command runs outside it.
		gateR, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer gateR.Close()
		defer w.Close()
		gateW, extra = w, []*os.File{gateR}
		args = []string{"/bin/sh", "-c", `read -r _ <&3; exec 3<&-; exec /bin/sh -c "$1"`, "kumo-job", spec.Command}
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if u := spec.User; u != nil {
		attr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}
	}
	j.cmd = &exec.Cmd{
		Path:        "/bin/sh",
		Args:        args,
		Dir:         spec.Dir,
		Env:         append([]string{}, spec.Env...), // non-nil: nothing inherited
		Stdout:      writers[0],
		Stderr:      writers[1],
		ExtraFiles:  extra,
		SysProcAttr: attr,
	}
	if err := j.cmd.Start(); err != nil {
		return err
	}
	j.pid = j.cmd.Process.Pid
	j.result.Started = time.Now()
	if spec.Limiter != nil {
		if err := spec.Limiter.Add(j.pid); err != nil {
			syscall.Kill(-j.pid, syscall.SIGKILL)
			j.cmd.Wait()
			return fmt.Errorf("apply limits: %w", err)
		}
		if _, err := gateW.Write([]byte("\n")); err != nil {
			syscall.Kill(-j.pid, syscall.SIGKILL)
			j.cmd.Wait()
			return err
		}
	}
	return nil
}

// PID returns the job's main process ID, which is also its process group ID.
func (j *Job) PID() int { return j.pid }

// Done is closed when the job has ended and Wait would not block.
func (j *Job) Done() <-chan struct{} { return j.done }

// Wait blocks until the job has ended, its process group is gone and its
// output is read, and returns how it ended.
func (j *Job) Wait() Result {
	<-j.done
	return j.result
}

// Cancel asks the job to end with ReasonCanceled: SIGTERM to its process
// group now, SIGKILL after the grace period. It returns at once; it does
// nothing if the job is already ending or ended.
func (j *Job) Cancel() { j.stop(ReasonCanceled) }

func (j *Job) stop(reason Reason) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.reaped || j.reason != "" {
		return
	}
	j.reason = reason
	j.stopAt = time.Now()
	syscall.Kill(-j.pid, syscall.SIGTERM)
	j.killT = time.AfterFunc(j.grace, func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		if !j.reaped {
			j.hardKill = true
			syscall.Kill(-j.pid, syscall.SIGKILL)
		}
	})
}

// supervise waits for the main process, ends the rest of its group, drains
// output and records the result.
func (j *Job) supervise(unwatch func() bool) {
	readDone := make(chan struct{}, 2)
	for i, s := range []Stream{Stdout, Stderr} {
		go func() { j.read(i, s); readDone <- struct{}{} }()
	}

	// Learn that the leader exited without reaping it, so its pid keeps the
	// process group ID ours while we signal the group.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, j.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	unwatch()
	j.mu.Lock()
	if j.timeoutT != nil {
		j.timeoutT.Stop()
	}
	stopping, deadline := j.reason != "", j.stopAt.Add(j.grace)
	j.mu.Unlock()
	if stopping {
		// Give the rest of the group what is left of the grace period.
		for groupAlive(j.pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // no event tells when a process group empties
		}
	}
	left := stopping && groupAlive(j.pid)
	j.mu.Lock()
	syscall.Kill(-j.pid, syscall.SIGKILL)
	if left {
		j.hardKill = true
	}
	j.reaped = true
	if j.killT != nil {
		j.killT.Stop()
	}
	j.mu.Unlock()
	if left {
		// SIGKILL is delivered asynchronously; a canceled job is over only
		// when its whole group is.
		for end := time.Now().Add(5 * time.Second); groupAlive(j.pid) && time.Now().Before(end); {
			time.Sleep(2 * time.Millisecond) // no event tells when a process group empties
		}
	}
	j.cmd.Wait()
	if j.user != nil {
		// The uid is the job's alone: whatever still runs as it escaped
		// the group (setsid, double fork) and would see the next job.
		// Nor may its files in /tmp and the like.
		err := errors.Join(jobuser.KillAll(j.user.UID), jobuser.RemoveTemp(j.user.UID))
		if err != nil {
			j.mu.Lock()
			j.killErr = err
			j.mu.Unlock()
		}
	}

	drain := time.NewTimer(j.drain)
	for range 2 {
		select {
		case <-readDone:
		case <-drain.C:
			for _, r := range j.readers {
				r.Close() // a process outside the group holds the pipe; unblock the readers
			}
			<-readDone
		}
	}
	drain.Stop()
	j.finish()
	j.closeAll()
	close(j.done)
}

// read copies one stream to its files and to Output.
func (j *Job) read(i int, s Stream) {
	buf := make([]byte, 32<<10)
	for {
		n, err := j.readers[i].Read(buf)
		if n > 0 {
			j.outMu.Lock()
			off := j.offsets[i]
			j.offsets[i] += int64(n)
			j.write(j.files[i], buf[:n])
			j.write(j.files[2], buf[:n])
			if j.out != nil {
				j.out(Chunk{Stream: s, Offset: off, Data: buf[:n]})
			}
			j.outMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (j *Job) write(f *os.File, b []byte) {
	if _, err := f.Write(b); err != nil && j.writeErr == nil {
		j.writeErr = err
	}
}

func (j *Job) finish() {
	r := &j.result
	r.Ended = time.Now()
	r.Stdout, r.Stderr = j.offsets[0], j.offsets[1]
	ws, _ := j.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		r.Signal = ws.Signal()
		r.ExitCode = 128 + int(r.Signal)
	default:
		r.ExitCode = ws.ExitStatus()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	end := "process group ended after SIGTERM"
	if j.hardKill {
		end = "process group killed with SIGKILL after " + j.grace.String() + " grace"
	}
	switch {
	case j.reason == ReasonCanceled:
		r.Reason, r.Message = ReasonCanceled, "canceled; "+end
	case j.reason == ReasonTimeout:
		r.Reason, r.Message = ReasonTimeout, "timed out; "+end
	case r.Signal != 0:
		r.Reason, r.Message = ReasonSignal, "killed by signal "+strconv.Itoa(int(r.Signal))+" ("+r.Signal.String()+")"
		if r.Signal == syscall.SIGKILL {
			r.Message += "; the memory limit may have been reached"
		}
	case r.ExitCode != 0:
		r.Reason, r.Message = ReasonExitCode, "exit code "+strconv.Itoa(r.ExitCode)
	}
	if j.killErr != nil {
		r.Message = strings.TrimPrefix(r.Message+"; ", "; ") + j.killErr.Error()
	}
	if j.writeErr != nil {
		r.Message = strings.TrimPrefix(r.Message+"; ", "; ") + "writing logs: " + j.writeErr.Error()
	}
}

func (j *Job) closeAll() {
	for _, f := range j.files {
		if f != nil {
			f.Close()
		}
	}
	for _, r := range j.readers {
		if r != nil {
			r.Close()
		}
	}
}

// groupAlive reports whether a live (non-zombie) process is in process group pgid.
func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	want := strconv.Itoa(pgid)
	for _, e := range ents {
		if c := e.Name()[0]; c < '0' || c > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name: state ppid pgrp ...
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[2] == want && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}
