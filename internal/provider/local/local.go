// Package local is a [provider.Provider] whose instances are processes on
// this host: each node is a process (by default `kumo agent`) with its
// own work directory, session and process group, and, where the host allows
// it, a cgroup enforcing its VM size's vCPUs and memory.
//
// Layout under [Config.Dir] (mode 0700), one directory per instance:
//
//	<id>/instance.json  the record: pid and start time, size, GPUs, cgroup, job uid, note
//	<id>/credential     the node credential (mode 0600), passed by file, not argv
//	<id>/agent.log      the process's stdout and stderr
//
// and the node's work directory, where its jobs run, under
// [Config.WorkDir] (mode 0711: jobs pass through it but cannot list it):
//
//	<id>/               the node's work directory (<id>/work under Config.Dir when WorkDir is "")
//
// With [Config.JobUIDs] set (kumo runs as root), each node gets a uid of
// that range that no other live instance holds, recorded in its record and
// given to the agent (the {job_uid} placeholder): the node's jobs run as it,
// so they cannot read Config.Dir, credentials or other nodes' files. The
// node process gets a small environment (PATH, HOME, LANG, TZ, TMPDIR and
// Go runtime settings of the provider's, plus its own variables listed at
// [Local.Create]), never the rest of the control plane's.
//
// Processes are started through a short-lived /bin/sh that starts the node
// process in the background and exits, so nodes are never children of the
// control plane: they survive its restart, a new Local on the same directory
// lists and deletes them, and no goroutine waits on them. Liveness is the
// recorded pid with its recorded start time (from /proc/<pid>/stat), so a
// reused pid is not mistaken for the node. Delete sends SIGTERM to every
// process of the node (its session and its cgroup), waits [Config.Grace],
// then sends SIGKILL.
//
// Capacity is the host's CPUs × [Config.CPUOvercommit] (default 4.0: nodes
// mostly wait on I/O and jobs, and cgroup quotas still cap each node) and
// the host's memory × [Config.MemoryOvercommit] (default 1.0: memory
// overcommit ends in OOM kills), minus what live instances hold. GPUs are
// never shared: a GPU size gets a disjoint set of the host's GPUs through
// CUDA_VISIBLE_DEVICES, and a size needing more than are free gets a
// [*provider.CapacityError].
package local

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kumo/internal/cgroup"
	"kumo/internal/jobuser"
	"kumo/internal/provider"
)

var (
	_ provider.Provider         = (*Local)(nil)
	_ provider.CapacityReporter = (*Local)(nil)
)

// Defaults for [Config] fields left zero.
const (
	DefaultCPUOvercommit    = 4.0
	DefaultMemoryOvercommit = 1.0
	DefaultGrace            = 10 * time.Second
)

// Config configures a [Local].
type Config struct {
	Dir string // base directory for instance directories and records; required; made mode 0700

	// WorkDir is the base of the nodes' work directories (WorkDir/<id>,
	// mode 0711); "" means <Dir>/<id>/work.
	WorkDir string

	// JobUIDs, if set, is the range of uids the nodes' jobs run as, one
	// per node; nil means jobs run as the node process's user. Only root
	// can use it.
	JobUIDs *jobuser.Range

	// Argv is the node process's command line. Placeholders in any element
	// are replaced: {id}, {compute}, {dir} (instance directory), {work}
	// (work directory), {url}, {ca_file}, {credential_file}, {job_uid} (the
	// uid the node's jobs run as; "" when JobUIDs is nil). Nil means
	// [DefaultArgv]. The same values are also in the environment; see
	// [Local.Create].
	Argv []string

	Grace            time.Duration // SIGTERM to SIGKILL on Delete; 0 means DefaultGrace
	CPUOvercommit    float64       // vCPUs offered per host CPU; 0 means DefaultCPUOvercommit
	MemoryOvercommit float64       // memory offered per byte of host memory; 0 means DefaultMemoryOvercommit
	HostCPUs         int           // host CPUs; 0 means runtime.NumCPU()
	HostMemoryMB     int64         // host memory in MiB; 0 means MemTotal from /proc/meminfo

	// GPUs are the host's GPU IDs as CUDA_VISIBLE_DEVICES takes them. Nil
	// means detect with `nvidia-smi -L` (none if it is absent or fails);
	// an empty non-nil slice means none.
	GPUs []string

	DisableLimits bool   // record limits without applying them, even where cgroups work
	Address       string // address reported for every instance; "" means "127.0.0.1"

	// EvictionLead is how long before an evicted instance is taken its
	// notice comes (see [Local.Evict]); 0 means DefaultEvictionLead.
	EvictionLead time.Duration
	// MeanTimeBetweenEvictions, if set, makes the provider evict a random
	// preemptible instance now and then, this long apart on average over
	// all of them; 0 means only on request.
	MeanTimeBetweenEvictions time.Duration
	// Rand returns a uniform number in [0, 1) for random evictions; nil
	// means math/rand/v2.
	Rand func() float64
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// DefaultArgv is the node command line when Config.Argv is nil: this
// executable run as `kumo agent`.
func DefaultArgv() []string {
	exe, err := os.Executable()
	if err != nil {
		exe = "kumo"
	}
	return []string{exe, "agent", "--node-id={id}", "--work-dir={work}", "--url={url}", "--ca-file={ca_file}", "--credential-file={credential_file}", "--job-uid={job_uid}"}
}

// Local runs instances as processes on this host. Its methods are safe for
// concurrent use; they are serialized, so a Delete waiting out a grace
// period delays other calls.
type Local struct {
	cfg  Config
	cg   *cgroup.Host // nil when limits are disabled
	gpus []string
	note string // why limits are not (all) enforced; "" when they are

	mu       sync.Mutex
	lastDraw time.Time // when Preempted last drew a random eviction; guarded by mu
}

// cgroupName names instance id's cgroup: "kumo-", a tag of the provider's
// directory, and the ID, so that two providers on one host (two control
// planes, or two copies of a test suite) never share a group.
func (l *Local) cgroupName(id string) string {
	sum := sha256.Sum256([]byte(l.cfg.Dir))
	return "kumo-" + hex.EncodeToString(sum[:4]) + "-" + id
}

// New returns a Local, detecting cgroup support and GPUs. It creates
// cfg.Dir if needed.
func New(cfg Config) (*Local, error) {
	if cfg.Dir == "" {
		return nil, errors.New("local provider: no directory")
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{cfg.Dir, 0o700}, {cfg.WorkDir, 0o711}} {
		if d.path == "" {
			continue
		}
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("local provider: %w", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("local provider: %w", err)
		}
	}
	if cfg.JobUIDs != nil {
		if err := cfg.JobUIDs.Check(); err != nil {
			return nil, fmt.Errorf("local provider: %w", err)
		}
		if !jobuser.Enabled() {
			return nil, errors.New("local provider: job uids need root")
		}
	}
	if cfg.Argv == nil {
		cfg.Argv = DefaultArgv()
	}
	if len(cfg.Argv) == 0 {
		return nil, errors.New("local provider: empty argv")
	}
	cfg.Grace = cmp.Or(cfg.Grace, DefaultGrace)
	cfg.CPUOvercommit = cmp.Or(cfg.CPUOvercommit, DefaultCPUOvercommit)
	cfg.MemoryOvercommit = cmp.Or(cfg.MemoryOvercommit, DefaultMemoryOvercommit)
	cfg.HostCPUs = cmp.Or(cfg.HostCPUs, runtime.NumCPU())
	if cfg.HostMemoryMB == 0 {
		cfg.HostMemoryMB = hostMemoryMB()
	}
	cfg.Address = cmp.Or(cfg.Address, "127.0.0.1")
	cfg.EvictionLead = cmp.Or(cfg.EvictionLead, DefaultEvictionLead)
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Local{cfg: cfg, gpus: cfg.GPUs}
	if l.gpus == nil {
		l.gpus = detectGPUs()
	}
	if cfg.DisableLimits {
		l.note = "limits recorded only: disabled in the local provider's configuration"
	} else {
		l.cg = cgroup.Detect()
		l.note = l.cg.Note()
	}
	return l, nil
}

// Factory builds a Local from params: DataDir is Config.Dir; settings are
// "cpu_overcommit", "memory_overcommit", "grace" (a Go duration), "address",
// "disable_limits" (true/false), "argv" (a JSON array of strings),
// "work_dir", "dir" (where instance records are kept instead of the
// provider's data directory: one that replicas on this host share),
// "job_uid_range" (START-END), "eviction_lead_time" and
// "eviction_mean_interval" (Go durations; see Config).
func Factory(p provider.Params) (provider.Provider, error) {
	cfg := Config{Dir: p.DataDir}
	for k, v := range p.Settings {
		var err error
		switch k {
		case "cpu_overcommit":
			cfg.CPUOvercommit, err = strconv.ParseFloat(v, 64)
		case "memory_overcommit":
			cfg.MemoryOvercommit, err = strconv.ParseFloat(v, 64)
		case "grace":
			cfg.Grace, err = time.ParseDuration(v)
		case "address":
			cfg.Address = v
		case "disable_limits":
			cfg.DisableLimits, err = strconv.ParseBool(v)
		case "argv":
			err = json.Unmarshal([]byte(v), &cfg.Argv)
		case "work_dir":
			cfg.WorkDir = v
		case "dir":
			if !filepath.IsAbs(v) {
				err = errors.New("must be an absolute path")
			}
			cfg.Dir = v
		case "eviction_lead_time":
			cfg.EvictionLead, err = time.ParseDuration(v)
		case "eviction_mean_interval":
			cfg.MeanTimeBetweenEvictions, err = time.ParseDuration(v)
		case "job_uid_range":
			var r jobuser.Range
			if r, err = jobuser.ParseRange(v); err == nil {
				cfg.JobUIDs = &r
			}
		default:
			err = errors.New("unknown setting")
		}
		if err != nil {
			return nil, fmt.Errorf("local provider setting %s: %w", k, err)
		}
	}
	return New(cfg)
}

// Note says which limits are recorded only, and why; "" when vCPU and memory
// limits are enforced. Every instance's status carries it.
func (l *Local) Note() string { return l.note }

// GPUs returns the host GPU IDs the provider hands out.
func (l *Local) GPUs() []string { return slices.Clone(l.gpus) }

// record is an instance's on-disk record.
type record struct {
	Instance  provider.Instance `json:"instance"` // Agent.Credential is blanked: it is in the credential file
	PID       int               `json:"pid"`
	StartTime uint64            `json:"start_time"` // /proc/<pid>/stat starttime, clock ticks after boot
	Session   int               `json:"session"`    // session ID of the node's processes
	SessStart uint64            `json:"session_start"`
	Created   time.Time         `json:"created"`
	GPUs      []string          `json:"gpus,omitempty"`
	Cgroup    *cgroup.Group     `json:"cgroup,omitempty"`
	Note      string            `json:"note,omitempty"`
	Argv      []string          `json:"argv"`
	JobUID    int               `json:"job_uid,omitempty"` // the uid the node's jobs run as; 0 means the node's own user
	EvictAt   time.Time         `json:"evict_at,omitzero"` // when an evicted instance is taken; zero when not evicted
}

func (l *Local) dir(id string) string { return filepath.Join(l.cfg.Dir, id) }

// workDir is an instance's work directory.
func (l *Local) workDir(id string) string {
	if l.cfg.WorkDir == "" {
		return filepath.Join(l.dir(id), "work")
	}
	return filepath.Join(l.cfg.WorkDir, id)
}

// jobUID picks a uid for a new instance's jobs that no recorded instance
// holds; 0 when jobs run as the node's own user.
func (l *Local) jobUID(recs map[string]*record) (int, error) {
	if l.cfg.JobUIDs == nil {
		return 0, nil
	}
	used := map[int]bool{}
	for _, r := range recs {
		used[r.JobUID] = true
	}
	// Claimed host-wide: another control plane's nodes may use the range
	// too. Nothing is left running as it from an earlier node.
	return jobuser.Claim(*l.cfg.JobUIDs, l.cfg.Dir, func(u int) bool { return used[u] })
}

// Create starts the instances that do not exist yet. The node process gets
// the expanded Argv, stdin from /dev/null, stdout and stderr to agent.log,
// working directory work/, and this environment on top of the provider's
// own: Agent.Env, KUMO_NODE_ID, KUMO_COMPUTE, KUMO_CONTROL_PLANE_URL,
// KUMO_CA_FILE, KUMO_CREDENTIAL_FILE, KUMO_WORK_DIR, KUMO_VM_SIZE,
// KUMO_VCPUS, KUMO_MEMORY_MB, KUMO_LIMITS_NOTE, KUMO_JOB_UID and
// CUDA_VISIBLE_DEVICES (empty for sizes without GPUs, hiding the host's).
// Of the provider's own environment only what [agentEnv] keeps is passed.
func (l *Local) Create(ctx context.Context, instances []provider.Instance) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, err := l.load()
	if err != nil {
		return err
	}
	use := l.usage(recs)
	var errs []error
	for _, in := range instances {
		if err := ctx.Err(); err != nil {
			errs = append(errs, &provider.InstanceError{ID: in.ID, Err: err})
			continue
		}
		if !provider.ValidID(in.ID) {
			errs = append(errs, &provider.InstanceError{ID: in.ID, Err: errors.New("invalid instance ID")})
			continue
		}
		if _, ok := recs[in.ID]; ok {
			continue
		}
		if _, err := os.Stat(l.dir(in.ID)); err == nil {
			continue // created by a concurrent process on the same directory
		}
		gpus, err := l.fit(use, in.Size)
		var uid int
		if err == nil {
			uid, err = l.jobUID(recs)
		}
		if err == nil {
			var rec *record
			rec, err = l.start(in, gpus, uid)
			if err == nil {
				recs[in.ID] = rec
				use.add(in.Size, gpus)
			}
		}
		if err != nil {
			errs = append(errs, &provider.InstanceError{ID: in.ID, Err: err})
		}
	}
	return errors.Join(errs...)
}

// usage is what live instances hold.
type usage struct {
	vcpus, memMB int64
	gpus         map[string]bool
}

func (u *usage) add(s provider.Size, gpus []string) {
	u.vcpus += int64(s.VCPUs)
	u.memMB += s.MemoryMB
	for _, g := range gpus {
		u.gpus[g] = true
	}
}

func (l *Local) usage(recs map[string]*record) *usage {
	u := &usage{gpus: map[string]bool{}}
	for _, r := range recs {
		if alive(r.PID, r.StartTime) {
			u.add(r.Instance.Size, r.GPUs)
		}
	}
	return u
}

func (l *Local) totals() (vcpus, memMB int64) {
	return int64(float64(l.cfg.HostCPUs) * l.cfg.CPUOvercommit), int64(float64(l.cfg.HostMemoryMB) * l.cfg.MemoryOvercommit)
}

// fit checks that one instance of size fits and picks its GPUs.
func (l *Local) fit(u *usage, s provider.Size) ([]string, error) {
	cpu, mem := l.totals()
	if n := int64(s.VCPUs); n > cpu-u.vcpus {
		return nil, &provider.CapacityError{Size: s, Resource: "cpu", Need: n, Free: cpu - u.vcpus, Total: cpu}
	}
	if s.MemoryMB > mem-u.memMB {
		return nil, &provider.CapacityError{Size: s, Resource: "memory", Need: s.MemoryMB, Free: mem - u.memMB, Total: mem}
	}
	var free []string
	for _, g := range l.gpus {
		if !u.gpus[g] {
			free = append(free, g)
		}
	}
	if s.GPUs > len(free) {
		return nil, &provider.CapacityError{Size: s, Resource: "gpu", Need: int64(s.GPUs), Free: int64(len(free)), Total: int64(len(l.gpus))}
	}
	return free[:s.GPUs], nil
}

// Capacity returns how many more instances of size fit.
func (l *Local) Capacity(ctx context.Context, size provider.Size) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, err := l.load()
	if err != nil {
		return 0, err
	}
	u := l.usage(recs)
	cpu, mem := l.totals()
	n := int64(1 << 30)
	free := int64(len(l.gpus) - len(u.gpus))
	for _, r := range []struct{ free, need int64 }{{cpu - u.vcpus, int64(size.VCPUs)}, {mem - u.memMB, size.MemoryMB}, {free, int64(size.GPUs)}} {
		if r.need > 0 {
			n = min(n, max(r.free, 0)/r.need)
		}
	}
	return int(n), nil
}

// launchScript starts the node process in the background once released
// through stdin (after the shell joined the cgroup), prints its pid and
// exits, so the node is not our child.
const launchScript = `read -r _ || exit 1; "$@" </dev/null 1>&2 & echo $!`

func (l *Local) start(in provider.Instance, gpus []string, uid int) (rec *record, err error) {
	dir := l.dir(in.ID)
	work := l.workDir(in.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(work, 0o711); err != nil {
		return nil, err
	}
	var g *cgroup.Group
	defer func() {
		if err != nil {
			if g != nil {
				g.Remove()
			}
			os.RemoveAll(dir)
			os.RemoveAll(work)
		}
	}()
	credFile := filepath.Join(dir, "credential")
	if err := os.WriteFile(credFile, []byte(in.Agent.Credential), 0o600); err != nil {
		return nil, err
	}
	note := l.note
	if l.cg != nil && (l.cg.CPU() || l.cg.Memory()) {
		g, err = l.cg.New(l.cgroupName(in.ID), cgroup.Limits{CPUs: float64(in.Size.VCPUs), MemoryBytes: in.Size.MemoryMB << 20})
		if err != nil {
			return nil, err
		}
	}
	uidText := ""
	if uid != 0 {
		uidText = strconv.Itoa(uid)
	}
	repl := strings.NewReplacer("{id}", in.ID, "{compute}", in.Compute, "{dir}", dir, "{work}", work,
		"{url}", in.Agent.URL, "{ca_file}", in.Agent.CAFile, "{credential_file}", credFile, "{job_uid}", uidText)
	argv := make([]string, len(l.cfg.Argv))
	for i, a := range l.cfg.Argv {
		argv[i] = repl.Replace(a)
	}
	env := agentEnv(os.Environ())
	for k, v := range in.Agent.Env {
		env = append(env, k+"="+v)
	}
	env = append(env,
		"KUMO_NODE_ID="+in.ID, "KUMO_COMPUTE="+in.Compute, "KUMO_CONTROL_PLANE_URL="+in.Agent.URL,
		"KUMO_CA_FILE="+in.Agent.CAFile, "KUMO_CREDENTIAL_FILE="+credFile, "KUMO_WORK_DIR="+work,
		"KUMO_VM_SIZE="+in.Size.Name, "KUMO_VCPUS="+strconv.Itoa(in.Size.VCPUs),
		"KUMO_MEMORY_MB="+strconv.FormatInt(in.Size.MemoryMB, 10), "KUMO_LIMITS_NOTE="+note,
		"KUMO_JOB_UID="+uidText, "CUDA_VISIBLE_DEVICES="+strings.Join(gpus, ","))

	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := &exec.Cmd{
		Path:        "/bin/sh",
		Args:        append([]string{"/bin/sh", "-c", launchScript, "kumo-launch"}, argv...),
		Dir:         work,
		Env:         env,
		Stderr:      logf,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	gate, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node process: %w", err)
	}
	sid := cmd.Process.Pid
	sh, _ := readStat(sid)
	if g != nil {
		err = g.Add(sid)
	}
	if err == nil {
		_, err = io.WriteString(gate, "\n")
	}
	gate.Close()
	pidText, _ := bufio.NewReader(out).ReadString('\n')
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("start node process: %w", werr)
	}
	if err != nil {
		syscall.Kill(-sid, syscall.SIGKILL)
		return nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(pidText))
	if err != nil {
		return nil, fmt.Errorf("start node process: no pid from launcher: %q", pidText)
	}
	st, _ := readStat(pid) // a node that already exited gets start time 0 and lists as Stopped

	safe := in
	safe.Agent.Credential = ""
	rec = &record{
		Instance: safe, PID: pid, StartTime: st.startTime, Session: sid, SessStart: sh.startTime,
		Created: time.Now().UTC(), GPUs: gpus, Cgroup: g, Note: note, Argv: argv, JobUID: uid,
	}
	if err := writeRecord(dir, rec); err != nil {
		killAll(l.members(rec), syscall.SIGKILL)
		return nil, err
	}
	return rec, nil
}

// agentEnv keeps of env (the provider's environment) what a node process
// needs to run: the rest (tokens, the control plane's settings) stays out
// of nodes and their jobs.
func agentEnv(env []string) []string {
	keep := []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "GOTRACEBACK", "GOCOVERDIR"}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(keep, k) {
			out = append(out, kv)
		}
	}
	return out
}

func writeRecord(dir string, rec *record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "instance.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "instance.json"))
}

// load reads every instance record. Directories without a record (a create
// that crashed half-way) are ignored.
func (l *Local) load() (map[string]*record, error) {
	ents, err := os.ReadDir(l.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("local provider: %w", err)
	}
	recs := make(map[string]*record, len(ents))
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(l.cfg.Dir, e.Name(), "instance.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("local provider: %w", err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("local provider: record %s: %w", e.Name(), err)
		}
		recs[r.Instance.ID] = &r
	}
	return recs, nil
}

// List reports every recorded instance: Running while its process lives,
// Stopped once it has gone.
func (l *Local) List(ctx context.Context) ([]provider.InstanceStatus, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, err := l.load()
	if err != nil {
		return nil, err
	}
	out := make([]provider.InstanceStatus, 0, len(recs))
	for _, r := range recs {
		st := provider.InstanceStatus{
			ID: r.Instance.ID, Compute: r.Instance.Compute, Size: r.Instance.Size, State: provider.StateRunning,
			Address: l.cfg.Address, Note: r.Note, Created: r.Created,
		}
		if !alive(r.PID, r.StartTime) {
			st.State = provider.StateStopped
			st.Reason = "node process exited; see " + filepath.Join(l.dir(r.Instance.ID), "agent.log")
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b provider.InstanceStatus) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Delete stops the instances' processes (SIGTERM, Grace, SIGKILL), removes
// their cgroups and directories. Unknown IDs are ignored. If ctx ends during
// the grace period, the remaining processes get SIGKILL at once.
func (l *Local) Delete(ctx context.Context, ids []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, err := l.load()
	if err != nil {
		return err
	}
	var doomed []*record
	for _, id := range ids {
		if r, ok := recs[id]; ok {
			doomed = append(doomed, r)
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	members := func() []int {
		var pids []int
		for _, r := range doomed {
			pids = append(pids, l.members(r)...)
		}
		return pids
	}
	killAll(members(), syscall.SIGTERM)
	deadline := time.Now().Add(l.cfg.Grace)
	for len(members()) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // no event tells when another process's tree ends
	}
	if pids := members(); len(pids) > 0 {
		killAll(pids, syscall.SIGKILL)
		for end := time.Now().Add(5 * time.Second); len(members()) > 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond) // SIGKILL is delivered asynchronously
		}
	}
	var errs []error
	for _, r := range doomed {
		id := r.Instance.ID
		if pids := l.members(r); len(pids) > 0 {
			errs = append(errs, &provider.InstanceError{ID: id, Err: fmt.Errorf("processes %v survived SIGKILL", pids)})
			continue
		}
		if r.Cgroup != nil {
			if err := r.Cgroup.Remove(); err != nil {
				errs = append(errs, &provider.InstanceError{ID: id, Err: err})
				continue
			}
		}
		// Remove the record first, so a failure half-way leaves no record of a
		// gone instance.
		if err := os.Remove(filepath.Join(l.dir(id), "instance.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, &provider.InstanceError{ID: id, Err: err})
			continue
		}
		if r.JobUID != 0 {
			// What a job daemonized outside the node's session and cgroup.
			if err := errors.Join(jobuser.KillAll(r.JobUID), jobuser.Release(r.JobUID, l.cfg.Dir)); err != nil {
				errs = append(errs, &provider.InstanceError{ID: id, Err: err})
				continue
			}
		}
		if err := os.RemoveAll(l.workDir(id)); err != nil {
			errs = append(errs, &provider.InstanceError{ID: id, Err: err})
			continue
		}
		if err := os.RemoveAll(l.dir(id)); err != nil {
			errs = append(errs, &provider.InstanceError{ID: id, Err: err})
		}
	}
	return errors.Join(errs...)
}

// members returns the live processes of an instance: those in its cgroup,
// and those in its session. The session ID is trusted only while it cannot
// have been reused: the node process or the launcher (with their recorded
// start times) still exist, or another member started after the node did.
func (l *Local) members(r *record) []int {
	var pids []int
	if r.Cgroup != nil && len(r.Cgroup.Dirs) > 0 {
		if b, err := os.ReadFile(filepath.Join(r.Cgroup.Dirs[0], "cgroup.procs")); err == nil {
			for f := range strings.FieldsSeq(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					if st, ok := readStat(pid); ok && st.live() {
						pids = append(pids, pid)
					}
				}
			}
		}
	}
	if r.Session <= 0 {
		return pids
	}
	// A session ID is reused only after every process of the old session is
	// gone; a new session's leader has pid == sid and a later start time.
	if st, ok := readStat(r.Session); ok && st.startTime != r.SessStart {
		return pids
	}
	for _, st := range liveProcs() {
		if st.session == r.Session && st.startTime >= r.SessStart && !slices.Contains(pids, st.pid) {
			pids = append(pids, st.pid)
		}
	}
	return pids
}

func killAll(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
}

// hostMemoryMB reads MemTotal from /proc/meminfo; 0 if it cannot.
func hostMemoryMB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb / 1024
		}
	}
	return 0
}

// detectGPUs lists the host's GPUs by index with `nvidia-smi -L`; none if it
// is absent or fails.
func detectGPUs() []string {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return []string{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-L").Output()
	if err != nil {
		return []string{}
	}
	return parseNvidiaSMI(string(out))
}

// parseNvidiaSMI parses `nvidia-smi -L` lines like
// "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)" into indexes.
func parseNvidiaSMI(out string) []string {
	gpus := []string{}
	for line := range strings.Lines(out) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "GPU ")
		if !ok {
			continue
		}
		idx, _, ok := strings.Cut(rest, ":")
		if _, err := strconv.Atoi(idx); ok && err == nil {
			gpus = append(gpus, idx)
		}
	}
	return gpus
}
