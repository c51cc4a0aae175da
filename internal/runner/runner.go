// Package runner runs one job process on a node.
//
// [Start] prepares the job directory (it makes the directory, a folder
// outputs/NAME for each AZURE_ML_OUTPUT_NAME variable that names one, and
// extracts an optional code snapshot; nothing else, as each directory or
// file made costs up to a millisecond on a busy ext4 disk), starts the
// command with /bin/sh -c in its own process group with the job directory
// as working directory, and streams its output live to a callback while
// also appending it to user_logs/std_log.txt in the job directory (AML's
// name), which is made when the first output comes: a job that prints
// nothing leaves no log file. A job that writes outputs/ or logs/ makes
// them, as AML's jobs do.
//
// The command's stdout and stderr are one pipe, as in a terminal or AML's
// std_log.txt, so its output keeps the order in which it was written: after
// "echo A; echo B >&2" the log reads A then B. Two pipes cannot give that:
// lines written close together sit in two kernel buffers with nothing that
// says which came first. What stays unordered is what the command itself
// buffers (a program whose stdout is not a terminal usually buffers it, so
// flush it, or run Python with -u), and a single write larger than the
// pipe's atomic size (4 KiB) may interleave with another process's writes.
// The price is that stdout and stderr are not told apart: every [Chunk] is
// of stream [Stdout].
//
// Every [Chunk] carries the offset of its first byte in the output, which is
// also its offset in std_log.txt, so a consumer that has seen offset N can
// resume from the file at N without loss or duplication.
//
// Cancel (by [Job.Cancel] or the context) and timeout send SIGTERM to the
// whole process group, wait a grace period for the group to end, then send
// SIGKILL to the group; [Job.Wait] returns only once no process of the group
// is left. When the job's main process exits by itself, whatever it left in
// its group is sent SIGKILL before Wait returns (and Wait waits for those
// that hold the job's stdout or stderr), so no process of a finished job
// lingers.
//
// Each job uses two goroutines (one waiting for the process, one reading its
// output); both end before [Job.Wait] returns.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	"kumo/internal/model"
)

// Defaults for [Spec] fields left zero.
const (
	DefaultGrace      = 10 * time.Second // time between SIGTERM and SIGKILL
	DefaultDrainLimit = 2 * time.Second  // time to wait for output after the group ended
)

// Log file names, relative to the job directory.
const (
	StdoutFile = "user_logs/stdout.txt"  // written by the control plane, from chunks of stream stdout
	StderrFile = "user_logs/stderr.txt"  // written by the control plane, from chunks of stream stderr
	StdLogFile = "user_logs/std_log.txt" // the job's stdout and stderr in write order; offsets as in [Chunk.Offset]
)

// Stream names one of a job's output streams.
type Stream string

// Streams.
const (
	// Stdout is the job's output: its stdout and stderr, which share one
	// pipe, in the order written. It is the only stream the runner emits.
	Stdout Stream = "stdout"
	// Stderr is a separate standard error. The runner no longer emits it;
	// it stays for the wire protocol and jobs journaled by older agents.
	Stderr Stream = "stderr"
)

// File returns the file in the job directory that holds the stream, at
// the offsets its chunks carry. Stderr's file is never written by this
// runner, so it reads as absent.
func (s Stream) File() string {
	if s == Stderr {
		return StderrFile
	}
	return StdLogFile
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

	// Spare, if set, names processes of User that outlive the job's end
	// (the node's SSH sessions: they run as the same user); while it
	// spares any, User's temporary files stay too. Nil spares none.
	Spare func(pid int) bool

	// Sweeper, if set, is User's [Sweeper], which ends what the job left
	// behind at a fraction of the cost; nil looks at every process and
	// temporary file of the host. Unused without User.
	Sweeper *Sweeper

	// Spares, if set, may hold an emptied directory that becomes Dir, if
	// Dir does not exist, instead of a new one.
	Spares *Spares
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
	ReasonEvicted  Reason = "Evicted"  // ended through Job.Evict: its node is taken away
)

// Result is how a job ended.
type Result struct {
	ExitCode int            // exit code; 128+n when killed by signal n, as shells report it
	Signal   syscall.Signal // the signal that killed the process; 0 if it exited
	Reason   Reason         // ReasonNone on success
	Message  string         // human-readable failure reason; empty on success and for ReasonExitCode, which ExitCode explains
	Started  time.Time      // when the process started
	Ended    time.Time      // when the process group ended and output was drained
	Stdout   int64          // bytes of output (stdout and stderr together)
	Stderr   int64          // always 0: stderr is part of Stdout
}

// Job is a running job. Its methods are safe for concurrent use.
type Job struct {
	dir   string // Spec.Dir
	cmd   *exec.Cmd
	pid   int
	grace time.Duration
	drain time.Duration
	out   func(Chunk)
	user  *jobuser.User
	spare func(pid int) bool // see Spec.Spare; nil spares none
	sweep *Sweeper           // User's; set when User is
	// sweepAll makes sweep look at every process: Spec.Limiter may have
	// moved the job's out of the sweeper's cgroup.
	sweepAll bool
	done     chan struct{}

	mu       sync.Mutex
	reason   Reason      // ReasonCanceled or ReasonTimeout once stopping
	stopAt   time.Time   // when SIGTERM was sent
	hardKill bool        // SIGKILL was needed
	reaped   bool        // leader reaped: the pgid may no longer be ours
	killT    *time.Timer // SIGKILL after grace, once stopping
	killErr  error       // processes of the job's uid outlived SIGKILL
	timeoutT *time.Timer // Spec.Timeout; nil if none

	outMu    sync.Mutex // serializes writes to the log and Output
	log      *os.File   // StdLogFile; nil until the first output
	reader   *os.File   // the read end of the output pipe
	offset   int64      // bytes of output read
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
	fresh, err := makeDir(spec.Dir, spec.Spares)
	if err != nil {
		return nil, fmt.Errorf("start job: %w", err)
	}
	outputs := outputDirs(spec.Env)
	for _, d := range outputs {
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
		if fresh && len(outputs) == 0 && spec.Code == nil {
			err = os.Lchown(spec.Dir, spec.User.UID, spec.User.GID) // nothing in it yet
		} else {
			err = jobuser.Chown(spec.Dir, *spec.User)
		}
		if err != nil {
			return nil, fmt.Errorf("start job: %w", err)
		}
	}
	j := &Job{
		dir:      spec.Dir,
		user:     spec.User,
		spare:    spec.Spare,
		sweep:    spec.Sweeper,
		sweepAll: spec.Limiter != nil,
		grace:    orDefault(spec.Grace, DefaultGrace),
		drain:    orDefault(spec.DrainLimit, DefaultDrainLimit),
		out:      spec.Output,
		done:     make(chan struct{}),
	}
	if err := j.start(spec); err != nil {
		j.closeAll()
		return nil, fmt.Errorf("start job: %w", err)
	}
	if spec.Timeout > 0 {
		j.timeoutT = time.AfterFunc(spec.Timeout, func() { j.stop(ReasonTimeout, 0) })
	}
	unwatch := context.AfterFunc(ctx, func() { j.stop(ReasonCanceled, 0) })
	go j.supervise(unwatch)
	return j, nil
}

// makeDir makes the job directory dir (mode 0700), from a spare one if
// spares holds one, or sets the mode of the one there; it reports whether
// it made it.
func makeDir(dir string, spares *Spares) (bool, error) {
	if spares.take(dir) {
		return true, nil
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(dir), 0o755); err == nil {
			err = os.Mkdir(dir, 0o700)
		}
	}
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	if fi, serr := os.Stat(dir); serr != nil || !fi.IsDir() {
		return false, err
	}
	return false, os.Chmod(dir, 0o700)
}

// openLog creates StdLogFile in the job directory dir when the first
// output comes, with user_logs/ if the job has not made it (given to user,
// as the rest of the directory, when set). The job owns dir and runs
// meanwhile, so nothing in it is trusted: no symbolic link is followed,
// and whatever the job put at the log's name is replaced by a new file.
func openLog(dir string, user *jobuser.User) (*os.File, error) {
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	logDir, name := filepath.Split(StdLogFile)
	logDir = filepath.Clean(logDir)
	if err := unix.Mkdirat(dfd, logDir, 0o755); err == nil {
		if user != nil {
			if err := unix.Fchownat(dfd, logDir, user.UID, user.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return nil, &os.PathError{Op: "chown", Path: filepath.Join(dir, logDir), Err: err}
			}
		}
	} else if err != unix.EEXIST {
		return nil, &os.PathError{Op: "mkdir", Path: filepath.Join(dir, logDir), Err: err}
	}
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
	lfd, err := unix.Openat2(dfd, logDir, how)
	if err == unix.ENOSYS { // kernels before 5.6
		lfd, err = unix.Openat(dfd, logDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir, logDir), Err: err}
	}
	defer unix.Close(lfd)
	if err := unix.Unlinkat(lfd, name, 0); err != nil && err != unix.ENOENT {
		return nil, &os.PathError{Op: "remove", Path: filepath.Join(dir, StdLogFile), Err: err}
	}
	fd, err := unix.Openat(lfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: filepath.Join(dir, StdLogFile), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, StdLogFile)), nil
}

// outputDirs are the folders of the job's outputs, named by the
// AZURE_ML_OUTPUT_NAME=outputs/NAME entries of env; other values of such
// variables are left alone.
func outputDirs(env []string) []string {
	var dirs []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, model.OutputEnvPrefix); ok && name != "" && v == model.OutputPath(name) && filepath.IsLocal(v) {
			dirs = append(dirs, v)
		}
	}
	return dirs
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (j *Job) start(spec Spec) error {
	// One pipe for stdout and stderr keeps their lines in write order.
	r, writer, err := os.Pipe()
	if err != nil {
		return err
	}
	defer writer.Close()
	j.reader = r
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
		Stdout:      writer,
		Stderr:      writer,
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
func (j *Job) Cancel() { j.stop(ReasonCanceled, 0) }

// Evict ends the job with ReasonEvicted because its node is taken away:
// SIGTERM to its process group now, SIGKILL after lead (at once when lead
// is 0 or less), however long its grace period. It returns at once; it
// does nothing if the job is already ending or ended.
func (j *Job) Evict(lead time.Duration) { j.stop(ReasonEvicted, max(lead, time.Nanosecond)) }

// stop sends SIGTERM now and SIGKILL after grace (0 means the job's own).
func (j *Job) stop(reason Reason, grace time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.reaped || j.reason != "" {
		return
	}
	if grace > 0 {
		j.grace = grace
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
	readDone := make(chan struct{}, 1)
	go func() { j.read(); readDone <- struct{}{} }()

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
		// A child the shell was starting when SIGTERM came can lose it: it
		// still runs the shell's code, with the shell's handler, until it
		// execs, and the exec forgets the signal. Tell the group again a
		// few times while such a child may be in that window, then give the
		// rest of it what is left of the grace period.
		for _, wait := range []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond} {
			time.Sleep(wait)
			if !groupAlive(j.pid) {
				break
			}
			syscall.Kill(-j.pid, syscall.SIGTERM)
		}
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
		sw := j.sweep
		if sw == nil {
			sw = &Sweeper{uid: j.user.UID} // every process and file of the host
		}
		if _, err := sw.Sweep(j.spare, j.sweepAll); err != nil {
			j.mu.Lock()
			j.killErr = err
			j.mu.Unlock()
		}
	}

	drain := time.NewTimer(j.drain)
	select {
	case <-readDone:
	case <-drain.C:
		j.reader.Close() // a process outside the group holds the pipe; unblock the reader
		<-readDone
	}
	drain.Stop()
	j.finish()
	j.closeAll()
	close(j.done)
}

// readBufs are read's buffers: a job that prints nothing still reads
// once, and a buffer made for each job would be most of a node's garbage.
var readBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// read copies the output to the log and to Output.
func (j *Job) read() {
	b := readBufs.Get().(*[32 << 10]byte)
	defer readBufs.Put(b)
	buf := b[:]
	for {
		n, err := j.reader.Read(buf)
		if n > 0 {
			j.outMu.Lock()
			off := j.offset
			j.offset += int64(n)
			if j.log == nil && j.writeErr == nil {
				j.log, j.writeErr = openLog(j.dir, j.user)
			}
			if j.log != nil {
				if _, err := j.log.Write(buf[:n]); err != nil && j.writeErr == nil {
					j.writeErr = err
				}
			}
			if j.out != nil {
				j.out(Chunk{Stream: Stdout, Offset: off, Data: buf[:n]})
			}
			j.outMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (j *Job) finish() {
	r := &j.result
	r.Ended = time.Now()
	r.Stdout = j.offset
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
	case j.reason == ReasonEvicted:
		r.Reason, r.Message = ReasonEvicted, "evicted: its node is taken away; "+end
	case r.Signal != 0:
		r.Reason, r.Message = ReasonSignal, "killed by signal "+strconv.Itoa(int(r.Signal))+" ("+r.Signal.String()+")"
		if r.Signal == syscall.SIGKILL {
			r.Message += "; the memory limit may have been reached"
		}
	case r.ExitCode != 0:
		r.Reason = ReasonExitCode // ExitCode says it all; no message repeats it
	}
	if j.killErr != nil {
		r.Message = strings.TrimPrefix(r.Message+"; ", "; ") + j.killErr.Error()
	}
	if j.writeErr != nil {
		r.Message = strings.TrimPrefix(r.Message+"; ", "; ") + "writing logs: " + j.writeErr.Error()
	}
}

func (j *Job) closeAll() {
	for _, f := range []*os.File{j.log, j.reader} {
		if f != nil {
			f.Close()
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
