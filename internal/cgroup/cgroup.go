// Package cgroup puts processes under CPU and memory limits with Linux control
// groups, using whatever the host offers: cgroup v2 where it is delegated to
// this process, else the cgroup v1 cpu and memory controllers (writable as
// root). Groups are created under the calling process's own cgroup. Where a
// controller cannot be used, the limit is only recorded and [Host.Note] says
// why, so a node's info can carry it.
//
// The package starts no goroutines. A [Group] is plain data (its directories),
// so a caller can store it and remove the group after a restart.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mode is the cgroup interface a [Host] uses to enforce limits.
type Mode string

// Modes.
const (
	ModeV2   Mode = "v2"   // unified hierarchy, delegated to this process
	ModeV1   Mode = "v1"   // legacy per-controller hierarchies (cpu, memory)
	ModeNone Mode = "none" // no usable controller: limits are recorded only
)

// cfsPeriod is the CPU bandwidth period, in microseconds, written with every
// CPU limit (the kernel's default).
const cfsPeriod = 100000

// Limits are the resource limits of one group.
type Limits struct {
	CPUs        float64 // CPU bandwidth in whole CPUs (1.5 = 150 ms per 100 ms); 0 means no limit
	MemoryBytes int64   // memory limit in bytes; 0 means no limit
}

// Host is what this host offers for limits, as found by [Detect]. Its
// methods are safe for concurrent use.
type Host struct {
	mode   Mode
	v2Dir  string // own cgroup dir in the unified hierarchy when mode is v2
	cpuDir string // own v1 cpu cgroup dir; "" when the cpu controller is unusable
	memDir string // own v1 memory cgroup dir; "" when the memory controller is unusable
	note   string
}

// Detect inspects /proc/self/cgroup and /proc/self/mountinfo and probes, by
// creating and removing a group, which controllers this process can use. It
// never fails: a host without usable controllers gives a Host in [ModeNone]
// whose [Host.Note] explains why.
func Detect() *Host {
	return detect("/proc/self/cgroup", "/proc/self/mountinfo")
}

// Mode reports how limits are enforced.
func (h *Host) Mode() Mode { return h.mode }

// CPU reports whether CPU limits are enforced.
func (h *Host) CPU() bool { return h.mode == ModeV2 || h.cpuDir != "" }

// Memory reports whether memory limits are enforced.
func (h *Host) Memory() bool { return h.mode == ModeV2 || h.memDir != "" }

// Note is empty when both CPU and memory limits are enforced; otherwise it
// says which limits are recorded only and why, for example "limits recorded
// only: cgroup v2 not delegated and cgroup v1 memory controller not writable".
func (h *Host) Note() string { return h.note }

// Group is one control group, in one directory per hierarchy (one in v2, one
// per controller in v1). It is plain data: store it and call its methods
// later, from this process or another.
type Group struct {
	Mode Mode     `json:"mode"`
	Dirs []string `json:"dirs"` // group directories; empty means limits are recorded only
}

// New creates the group name (a single path element, e.g. an instance ID)
// under this process's own cgroup and sets lim on the controllers the host
// offers. A controller the host lacks is skipped; see [Host.Note]. If the
// group already exists its limits are rewritten. In [ModeNone] New returns an
// empty Group and no error.
func (h *Host) New(name string, lim Limits) (*Group, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return nil, fmt.Errorf("cgroup name %q: must be a single path element", name)
	}
	g := &Group{Mode: h.mode}
	var err error
	switch h.mode {
	case ModeV2:
		dir := filepath.Join(h.v2Dir, name)
		if err = mkdir(dir); err == nil {
			g.Dirs = append(g.Dirs, dir)
			err = setV2(dir, lim)
		}
	case ModeV1:
		if h.cpuDir != "" {
			dir := filepath.Join(h.cpuDir, name)
			if err = mkdir(dir); err == nil {
				g.Dirs = append(g.Dirs, dir)
				err = setV1CPU(dir, lim.CPUs)
			}
		}
		if err == nil && h.memDir != "" {
			dir := filepath.Join(h.memDir, name)
			if err = mkdir(dir); err == nil {
				g.Dirs = append(g.Dirs, dir)
				err = setV1Memory(dir, lim.MemoryBytes)
			}
		}
	}
	if err != nil {
		_ = g.Remove()
		return nil, fmt.Errorf("cgroup %s: %w", name, err)
	}
	return g, nil
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

func setV2(dir string, lim Limits) error {
	cpu := "max " + strconv.Itoa(cfsPeriod)
	if lim.CPUs > 0 {
		cpu = strconv.FormatInt(quota(lim.CPUs), 10) + " " + strconv.Itoa(cfsPeriod)
	}
	if err := write(dir, "cpu.max", cpu); err != nil {
		return err
	}
	mem := "max"
	if lim.MemoryBytes > 0 {
		mem = strconv.FormatInt(lim.MemoryBytes, 10)
	}
	return write(dir, "memory.max", mem)
}

func setV1CPU(dir string, cpus float64) error {
	if err := write(dir, "cpu.cfs_period_us", strconv.Itoa(cfsPeriod)); err != nil {
		return err
	}
	q := int64(-1)
	if cpus > 0 {
		q = quota(cpus)
	}
	return write(dir, "cpu.cfs_quota_us", strconv.FormatInt(q, 10))
}

func setV1Memory(dir string, bytes int64) error {
	v := "-1"
	if bytes > 0 {
		v = strconv.FormatInt(bytes, 10)
	}
	return write(dir, "memory.limit_in_bytes", v)
}

// quota converts CPUs to a CFS quota in microseconds per period; the kernel
// refuses quotas under 1 ms.
func quota(cpus float64) int64 {
	return max(int64(cpus*cfsPeriod), 1000)
}

func write(dir, file, value string) error {
	return os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
}

// Add moves process pid into the group. Children it forks afterwards are
// in the group too. On an empty Group it does nothing.
func (g *Group) Add(pid int) error {
	for _, dir := range g.Dirs {
		if err := write(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup add pid %d: %w", pid, err)
		}
	}
	return nil
}

// Remove deletes the group's directories. The group's processes must have
// exited (or been moved); Remove waits up to a second for exiting ones to
// leave. Directories already gone are not an error.
func (g *Group) Remove() error {
	var errs []error
	for _, dir := range g.Dirs {
		deadline := time.Now().Add(time.Second)
		for {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond) // exiting tasks leave asynchronously; no event to wait on
				continue
			}
			errs = append(errs, fmt.Errorf("cgroup remove %s: %w", dir, err))
			break
		}
	}
	return errors.Join(errs...)
}

// CPUStat is the CPU bandwidth statistics of a group.
type CPUStat struct {
	Periods   int64 // enforcement periods that elapsed with the group runnable
	Throttled int64 // periods in which the group was throttled
}

// CPUStat reads the group's cpu.stat. It fails when the group has no CPU
// controller.
func (g *Group) CPUStat() (CPUStat, error) {
	for _, dir := range g.Dirs {
		f, err := os.Open(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			continue
		}
		var st CPUStat
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), " ")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "nr_periods":
				st.Periods = n
			case "nr_throttled":
				st.Throttled = n
			}
		}
		f.Close()
		return st, sc.Err()
	}
	return CPUStat{}, errors.New("cgroup has no cpu controller")
}
