package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// mount is one cgroup filesystem from mountinfo.
type mount struct {
	root, point, fstype string
	opts                []string // super options, e.g. ["rw", "cpu", "cpuacct"]
}

// detect does [Detect]'s work on the given proc files.
func detect(cgroupFile, mountinfoFile string) *Host {
	own, err1 := readOwn(cgroupFile)
	mounts, err2 := readMounts(mountinfoFile)
	if err1 != nil || err2 != nil {
		return &Host{mode: ModeNone, note: "limits recorded only: cannot read cgroup information"}
	}

	v2Reason := "cgroup v2 not mounted"
	for _, m := range mounts {
		if m.fstype != "cgroup2" {
			continue
		}
		dir, ok := m.dir(own["0:"])
		if !ok {
			continue
		}
		reason := probeV2(dir)
		if reason == "" {
			return &Host{mode: ModeV2, v2Dir: dir}
		}
		v2Reason = reason
	}

	h := &Host{mode: ModeV1}
	var missing []string // v1 controllers that are not usable
	for _, c := range []struct {
		name, file string
		dir        *string
	}{
		{"cpu", "cpu.cfs_quota_us", &h.cpuDir},
		{"memory", "memory.limit_in_bytes", &h.memDir},
	} {
		dir, reason := probeV1(mounts, own, c.name, c.file)
		if reason != "" {
			missing = append(missing, reason)
			continue
		}
		*c.dir = dir
	}
	switch len(missing) {
	case 0:
		return h
	case 1:
		which := "memory"
		if h.cpuDir == "" {
			which = "cpu"
		}
		h.note = fmt.Sprintf("%s limit recorded only: %s and %s", which, v2Reason, missing[0])
	default:
		h.mode = ModeNone
		h.note = fmt.Sprintf("limits recorded only: %s and %s", v2Reason, strings.Join(missing, " and "))
	}
	return h
}

// probeV2 returns "" when dir's cgroup can hold child groups with the cpu
// and memory controllers enabled, else the reason it cannot.
func probeV2(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return "cgroup v2 not delegated"
	}
	have := strings.Fields(string(b))
	if !slices.Contains(have, "cpu") || !slices.Contains(have, "memory") {
		return "cgroup v2 not delegated (controllers: " + strings.Join(have, " ") + ")"
	}
	b, _ = os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	enabled := strings.Fields(string(b))
	if !slices.Contains(enabled, "cpu") || !slices.Contains(enabled, "memory") {
		if err := write(dir, "cgroup.subtree_control", "+cpu +memory"); err != nil {
			return "cgroup v2 not delegated (cannot enable cpu and memory for child groups)"
		}
	}
	if !probeMkdir(dir) {
		return "cgroup v2 not delegated (cannot create groups)"
	}
	return ""
}

// probeV1 returns the own group directory of a v1 controller, or the reason
// it cannot be used.
func probeV1(mounts []mount, own map[string]string, controller, file string) (string, string) {
	reason := "cgroup v1 " + controller + " controller not mounted"
	for _, m := range mounts {
		if m.fstype != "cgroup" || !slices.Contains(m.opts, controller) {
			continue
		}
		path, ok := "", false
		for ctrls, p := range own {
			if slices.Contains(strings.Split(ctrls, ","), controller) {
				path, ok = p, true
			}
		}
		if !ok {
			continue
		}
		dir, ok := m.dir(path)
		if !ok {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			reason = "cgroup v1 " + controller + " controller lacks " + file
			continue
		}
		if !probeMkdir(dir) {
			reason = "cgroup v1 " + controller + " controller not writable"
			continue
		}
		return dir, ""
	}
	return "", reason
}

// probeMkdir reports whether a child group can be created (and removed) in dir.
func probeMkdir(dir string) bool {
	probe := filepath.Join(dir, fmt.Sprintf("kumo-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return false
	}
	return os.Remove(probe) == nil
}

// dir maps a cgroup path (as /proc/self/cgroup shows it) to a directory in
// this mount, allowing for mounts of a sub-tree.
func (m mount) dir(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	if m.root != "/" {
		rel, ok := strings.CutPrefix(path, m.root)
		if !ok || (rel != "" && rel[0] != '/') {
			return "", false
		}
		path = rel
	}
	return filepath.Join(m.point, path), true
}

// readOwn parses /proc/self/cgroup into controller list → path; the unified
// hierarchy's entry has the key "0:".
func readOwn(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	own := make(map[string]string)
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		key := parts[1]
		if parts[0] == "0" && parts[1] == "" {
			key = "0:"
		}
		own[key] = parts[2]
	}
	return own, nil
}

// readMounts returns the cgroup and cgroup2 mounts in a mountinfo file.
func readMounts(file string) ([]mount, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []mount
	for line := range strings.Lines(string(b)) {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		out = append(out, mount{root: unescape(f[3]), point: unescape(f[4]), fstype: g[0], opts: strings.Split(g[2], ",")})
	}
	return out, nil
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
