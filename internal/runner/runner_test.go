package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"kumo/internal/cgroup"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// collector gathers a job's output and signals when a string appears.
type collector struct {
	mu     sync.Mutex
	bufs   map[Stream]*bytes.Buffer
	chunks []Chunk
	want   string
	seen   chan struct{}
}

func newCollector(want string) *collector {
	return &collector{bufs: map[Stream]*bytes.Buffer{Stdout: {}, Stderr: {}}, want: want, seen: make(chan struct{})}
}

func (c *collector) output(ch Chunk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bufs[ch.Stream]
	if int64(b.Len()) != ch.Offset {
		panic("offset " + strconv.FormatInt(ch.Offset, 10) + " after " + strconv.Itoa(b.Len()) + " bytes")
	}
	b.Write(ch.Data)
	ch.Data = bytes.Clone(ch.Data)
	c.chunks = append(c.chunks, ch)
	if c.want != "" && strings.Contains(b.String(), c.want) {
		c.want = ""
		close(c.seen)
	}
}

func (c *collector) String(s Stream) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bufs[s].String()
}

func waitSeen(t *testing.T, c *collector, j *Job) {
	t.Helper()
	select {
	case <-c.seen:
	case <-j.Done():
		t.Fatalf("job ended before printing the marker: %+v", j.Wait())
	case <-time.After(10 * time.Second):
		t.Fatal("marker not seen")
	}
}

func TestRunResults(t *testing.T) {
	tests := []struct {
		name       string
		command    string
		env        []string
		wantCode   int
		wantSignal syscall.Signal
		wantReason Reason
		wantOut    string // the output, stdout and stderr together
	}{
		{name: "true", command: "true"},
		{name: "exit code", command: "exit 3", wantCode: 3, wantReason: ReasonExitCode},
		{name: "signal", command: "kill -9 $$", wantCode: 137, wantSignal: syscall.SIGKILL, wantReason: ReasonSignal},
		{name: "stdout then stderr", command: "echo A; echo B >&2", wantOut: "A\nB\n"},
		{name: "stderr then stdout", command: "echo B >&2; echo A", wantOut: "B\nA\n"},
		{name: "env", command: `printf %s "$KUMO_T"`, env: []string{"KUMO_T=a b"}, wantOut: "a b"},
		{name: "cwd and no dirs made", command: `test ! -e outputs && test ! -e logs && test ! -e user_logs && pwd`, wantOut: "DIR\n"},
		{name: "output folders", command: `test -d outputs/model && test -d outputs/ckpt_2 && test ! -e outputs/other && test ! -e elsewhere && echo made`,
			env:     []string{"AZURE_ML_OUTPUT_model=outputs/model", "AZURE_ML_OUTPUT_ckpt_2=outputs/ckpt_2", "AZURE_ML_OUTPUT_x=outputs/other", "AZURE_ML_OUTPUT_y=elsewhere", "AZURE_ML_OUTPUT_z=../z"},
			wantOut: "made\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := newCollector("")
			res, err := Run(context.Background(), Spec{Dir: dir, Command: tt.command, Env: tt.env, Output: c.output})
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.wantCode || res.Signal != tt.wantSignal || res.Reason != tt.wantReason {
				t.Errorf("got code %d signal %v reason %q (%s), want %d %v %q",
					res.ExitCode, res.Signal, res.Reason, res.Message, tt.wantCode, tt.wantSignal, tt.wantReason)
			}
			if (res.Message == "") != (tt.wantReason == ReasonNone || tt.wantReason == ReasonExitCode) {
				t.Errorf("message %q with reason %q", res.Message, res.Reason)
			}
			wantOut := strings.ReplaceAll(tt.wantOut, "DIR", dir)
			if got := c.String(Stdout); got != wantOut {
				t.Errorf("stdout = %q, want %q", got, wantOut)
			}
			if got := c.String(Stderr); got != "" {
				t.Errorf("chunks of stream stderr = %q, want none", got)
			}
			b, err := os.ReadFile(filepath.Join(dir, StdLogFile))
			if wantOut == "" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s of a job that printed nothing: %q, %v; want no file", StdLogFile, b, err)
			}
			if wantOut != "" && (err != nil || string(b) != wantOut) {
				t.Errorf("%s = %q, %v; want %q", StdLogFile, b, err, wantOut)
			}
		})
	}
}

// The log file is made when the first output comes, in a directory the
// job owns: what the job put at its names beforehand is not followed.
func TestLogMadeSafely(t *testing.T) {
	tests := []struct {
		name    string
		command string // run in the job directory; ELSE is a directory outside it
		wantErr bool   // the result reports that logs could not be written
	}{
		{name: "user_logs made by the job", command: "mkdir user_logs; echo hi"},
		{name: "a file at the log's name", command: "mkdir user_logs; echo old > user_logs/std_log.txt; echo hi"},
		{name: "a link at the log's name", command: "mkdir user_logs; ln -s ELSE/f user_logs/std_log.txt; echo hi"},
		{name: "user_logs a link", command: "ln -s ELSE user_logs; echo hi", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, elsewhere := t.TempDir(), t.TempDir()
			c := newCollector("")
			res, err := Run(context.Background(), Spec{Dir: dir, Command: strings.ReplaceAll(tt.command, "ELSE", elsewhere), Output: c.output})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.String(Stdout); got != "hi\n" {
				t.Errorf("output = %q, want %q", got, "hi\n")
			}
			if got := strings.Contains(res.Message, "writing logs"); got != tt.wantErr {
				t.Errorf("result message %q; want a log error: %v", res.Message, tt.wantErr)
			}
			if ents, _ := os.ReadDir(elsewhere); len(ents) > 0 {
				t.Errorf("the log was written outside the job directory: %v", ents)
			}
			if !tt.wantErr {
				b, err := os.ReadFile(filepath.Join(dir, StdLogFile))
				if err != nil || string(b) != "hi\n" {
					t.Errorf("%s = %q, %v; want %q", StdLogFile, b, err, "hi\n")
				}
				if fi, err := os.Lstat(filepath.Join(dir, StdLogFile)); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s is not a regular file: %v %v", StdLogFile, fi, err)
				}
			}
		})
	}
}

func TestOutputOffsets(t *testing.T) {
	dir := t.TempDir()
	c := newCollector("")
	// Enough output on both streams to need many reads.
	cmd := `i=0; while [ $i -lt 2000 ]; do echo "line $i of stdout with some padding"; echo "e$i" >&2; i=$((i+1)); done`
	res, err := Run(context.Background(), Spec{Dir: dir, Command: cmd, Output: c.output})
	if err != nil || res.Reason != ReasonNone {
		t.Fatalf("Run: %v %+v", err, res)
	}
	b, _ := os.ReadFile(filepath.Join(dir, Stdout.File()))
	if diff := cmp.Diff(string(b), c.String(Stdout)); diff != "" {
		t.Errorf("file and chunks differ (-file +chunks):\n%s", diff)
	}
	// Resuming from any chunk's offset in the file gives the rest exactly.
	for _, ch := range c.chunks {
		if ch.Stream != Stdout || !bytes.HasPrefix(b[ch.Offset:], ch.Data) {
			t.Fatalf("chunk of %s at %d not found at that offset of the file", ch.Stream, ch.Offset)
		}
	}
	if res.Stdout != int64(len(b)) || res.Stderr != 0 {
		t.Errorf("result counts %d/%d, want %d/0", res.Stdout, res.Stderr, len(b))
	}
}

// TestOutputOrder writes lines to stdout and stderr in turn, each flushed
// at once, and checks that std_log.txt and the chunks keep that order.
func TestOutputOrder(t *testing.T) {
	const n = 1000
	var want strings.Builder
	for i := range n {
		fmt.Fprintf(&want, "out %d\nerr %d\n", i, i)
	}
	// The shell's echo is a builtin: one write(2) per line, nothing buffered.
	cmd := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`, n)
	for round := range 3 {
		dir := t.TempDir()
		c := newCollector("")
		res, err := Run(context.Background(), Spec{Dir: dir, Command: cmd, Output: c.output})
		if err != nil || res.Reason != ReasonNone {
			t.Fatalf("Run: %v %+v", err, res)
		}
		b, err := os.ReadFile(filepath.Join(dir, StdLogFile))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want.String(), string(b)); diff != "" {
			t.Fatalf("round %d: %s out of order (-want +got):\n%s", round, StdLogFile, diff)
		}
		if got := c.String(Stdout); got != want.String() {
			t.Fatalf("round %d: chunks out of order", round)
		}
	}
}

func TestOutputIsLive(t *testing.T) {
	dir := t.TempDir()
	c := newCollector("started\n")
	j, err := Start(context.Background(), Spec{Dir: dir, Command: `echo started; while [ ! -e go ]; do sleep 0.01; done; echo finished`, Output: c.output})
	if err != nil {
		t.Fatal(err)
	}
	waitSeen(t, c, j) // the job is still waiting for ./go, so this output is live
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := j.Wait(); res.Reason != ReasonNone {
		t.Fatalf("result %+v", res)
	}
	if got := c.String(Stdout); got != "started\nfinished\n" {
		t.Errorf("stdout = %q", got)
	}
}

// liveInGroup lists the live processes of process group pgid.
func liveInGroup(pgid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestCancelEndsProcessTree(t *testing.T) {
	tests := []struct {
		name     string
		command  string
		stop     func(j *Job, cancel context.CancelFunc)
		timeout  time.Duration
		reason   Reason
		hardKill bool
	}{
		{
			name:    "leader traps TERM and exits",
			command: `trap 'echo got-term; exit 0' TERM; sh -c 'echo ready; exec sleep 1000' & wait`,
			stop:    func(j *Job, _ context.CancelFunc) { j.Cancel() },
			reason:  ReasonCanceled,
		},
		{
			name:     "leader traps TERM and goes on",
			command:  `trap 'echo got-term' TERM; sh -c 'echo ready; exec sleep 1000' & while :; do wait; done`,
			stop:     func(j *Job, _ context.CancelFunc) { j.Cancel() },
			reason:   ReasonCanceled,
			hardKill: true,
		},
		{
			name:     "child ignores TERM, leader exits",
			command:  `sh -c 'trap "" TERM; echo ready; exec sleep 1000' & wait`,
			stop:     func(j *Job, _ context.CancelFunc) { j.Cancel() },
			reason:   ReasonCanceled,
			hardKill: true,
		},
		{
			name:    "context canceled",
			command: `sh -c 'echo ready; exec sleep 1000' & wait`,
			stop:    func(_ *Job, cancel context.CancelFunc) { cancel() },
			reason:  ReasonCanceled,
		},
		{
			name:    "timeout",
			command: `sh -c 'echo ready; exec sleep 1000' & wait`,
			timeout: 50 * time.Millisecond,
			reason:  ReasonTimeout,
		},
		{
			name:    "evicted, leader exits on TERM",
			command: `trap 'echo got-term; exit 0' TERM; sh -c 'echo ready; exec sleep 1000' & wait`,
			stop:    func(j *Job, _ context.CancelFunc) { j.Evict(time.Minute) },
			reason:  ReasonEvicted,
		},
		{
			// The eviction's lead time, not the job's grace, bounds it.
			name:     "evicted, TERM ignored until the lead time",
			command:  `trap 'echo got-term' TERM; sh -c 'echo ready; exec sleep 1000' & while :; do wait; done`,
			stop:     func(j *Job, _ context.CancelFunc) { j.Evict(200 * time.Millisecond) },
			reason:   ReasonEvicted,
			hardKill: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := newCollector("ready\n")
			// A group expected to end on SIGTERM gets a long grace, so a loaded
			// host cannot make it look like SIGKILL was needed; that ends the
			// test as soon as the group has gone, not after the grace.
			grace := 10 * time.Second
			if tt.hardKill {
				grace = 300 * time.Millisecond
			}
			j, err := Start(ctx, Spec{Dir: t.TempDir(), Command: tt.command, Grace: grace, Timeout: tt.timeout, Output: c.output})
			if err != nil {
				t.Fatal(err)
			}
			if tt.stop != nil {
				waitSeen(t, c, j)
				if pids := liveInGroup(j.PID()); len(pids) < 2 {
					t.Fatalf("group %d has %v before cancel, want the shell and its child", j.PID(), pids)
				}
				tt.stop(j, cancel)
			}
			res := j.Wait()
			if res.Reason != tt.reason {
				t.Errorf("reason = %q (%s), want %q", res.Reason, res.Message, tt.reason)
			}
			if got := strings.Contains(res.Message, "SIGKILL"); got != tt.hardKill {
				t.Errorf("message %q: mentions SIGKILL = %v, want %v", res.Message, got, tt.hardKill)
			}
			if pids := liveInGroup(j.PID()); len(pids) > 0 {
				t.Errorf("processes %v of group %d remain after Wait", pids, j.PID())
			}
		})
	}
}

func TestLeftoversKilledOnExit(t *testing.T) {
	c := newCollector("")
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: `sleep 1000 </dev/null >/dev/null 2>&1 & echo $$`, Output: c.output})
	if err != nil || res.Reason != ReasonNone {
		t.Fatalf("Run: %v %+v", err, res)
	}
	pgid, _ := strconv.Atoi(strings.TrimSpace(c.String(Stdout)))
	// The leftover got SIGKILL before Wait returned; it ends very soon after.
	for end := time.Now().Add(5 * time.Second); len(liveInGroup(pgid)) > 0; {
		if time.Now().After(end) {
			t.Fatalf("background processes %v remain", liveInGroup(pgid))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEscapedProcessDoesNotHang(t *testing.T) {
	// setsid moves the child out of the group; it keeps stdout open.
	res, err := Run(context.Background(), Spec{
		Dir:        t.TempDir(),
		Command:    `setsid sleep 1000 & echo $! > escaped.pid`,
		DrainLimit: 50 * time.Millisecond,
	})
	if err != nil || res.Reason != ReasonNone {
		t.Fatalf("Run: %v %+v", err, res)
	}
}

type recordLimiter struct {
	dir string
	err error
	ran bool // the command had run when Add was called
	pid int
}

func (l *recordLimiter) Add(pid int) error {
	l.pid = pid
	_, err := os.Stat(filepath.Join(l.dir, "ran"))
	l.ran = err == nil
	return l.err
}

func TestLimiter(t *testing.T) {
	t.Run("applied before the command runs", func(t *testing.T) {
		dir := t.TempDir()
		l := &recordLimiter{dir: dir}
		c := newCollector("")
		res, err := Run(context.Background(), Spec{Dir: dir, Command: `touch ran; echo "$0"`, Limiter: l, Output: c.output})
		if err != nil || res.Reason != ReasonNone {
			t.Fatalf("Run: %v %+v", err, res)
		}
		if l.pid == 0 || l.ran {
			t.Errorf("Add called with pid %d, command had run: %v", l.pid, l.ran)
		}
		if got := c.String(Stdout); got != "/bin/sh\n" {
			t.Errorf("$0 = %q, want /bin/sh as without a limiter", got)
		}
	})
	t.Run("failure fails start", func(t *testing.T) {
		dir := t.TempDir()
		l := &recordLimiter{dir: dir, err: errors.New("no room")}
		_, err := Start(context.Background(), Spec{Dir: dir, Command: `touch ran`, Limiter: l})
		if err == nil || !strings.Contains(err.Error(), "no room") {
			t.Fatalf("Start err = %v, want the limiter's error", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
			t.Error("command ran although limits failed")
		}
		if pids := liveInGroup(l.pid); len(pids) > 0 {
			t.Errorf("processes %v remain", pids)
		}
	})
	t.Run("cgroup", func(t *testing.T) {
		h := cgroup.Detect()
		if !h.CPU() {
			t.Skip("no usable cpu controller: " + h.Note())
		}
		g, err := h.New("kumo-runner-test-"+strconv.Itoa(os.Getpid()), cgroup.Limits{CPUs: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Remove()
		c := newCollector("")
		res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: `cat /proc/self/cgroup`, Limiter: g, Output: c.output})
		if err != nil || res.Reason != ReasonNone {
			t.Fatalf("Run: %v %+v", err, res)
		}
		if name := filepath.Base(g.Dirs[0]); !strings.Contains(c.String(Stdout), "/"+name+"\n") {
			t.Errorf("job's /proc/self/cgroup lacks %s:\n%s", name, c.String(Stdout))
		}
	})
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{name: "empty command", spec: Spec{Dir: "/tmp"}, want: "empty command"},
		{name: "empty dir", spec: Spec{Command: "true"}, want: "empty directory"},
		{name: "unsafe code", spec: Spec{Command: "true", Code: tarOf(t, entry{name: "../x", body: "x"})}, want: "unsafe tar entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spec.Dir == "" && tt.spec.Command != "" && tt.name != "empty dir" {
				tt.spec.Dir = t.TempDir()
			}
			_, err := Start(context.Background(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func BenchmarkRunTrue(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		if _, err := Run(context.Background(), Spec{Dir: dir, Command: "true"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForkExecTrue is the baseline for BenchmarkRunTrue: os/exec of
// /bin/sh -c true in its own process group, no job directory or output.
func BenchmarkForkExecTrue(b *testing.B) {
	for b.Loop() {
		cmd := exec.Command("/bin/sh", "-c", "true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// A job evicted while its shell is starting a background child ends on
// SIGTERM: the child that was between fork and exec when the first SIGTERM
// came (and lost it with the shell's handler) gets another once the shell
// exits. Repeated, as the window is narrow.
func TestEvictDuringFork(t *testing.T) {
	for i := range 60 {
		j, err := Start(context.Background(), Spec{Dir: t.TempDir(), Command: `trap 'exit 0' TERM; sleep 1000 & wait`, Grace: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		j.Evict(20 * time.Second)
		if r := j.Wait(); strings.Contains(r.Message, "SIGKILL") {
			t.Fatalf("eviction %d: %s; want the group ended on SIGTERM", i, r.Message)
		}
	}
}
