package cgroup

import (
	"path/filepath"
	"slices"
	"strings"
)

// OwnProcsFiles returns the cgroup.procs file of this process's own group
// in each mounted hierarchy (v1 and v2) it can map to a directory. Each
// lists the processes of that group, which include every process this one
// starts from then on unless something privileged moves it: processes of
// an unprivileged user cannot leave their group. Nil when none is found.
func OwnProcsFiles() []string {
	return ownProcsFiles("/proc/self/cgroup", "/proc/self/mountinfo")
}

func ownProcsFiles(cgroupFile, mountinfoFile string) []string {
	own, err1 := readOwn(cgroupFile)
	mounts, err2 := readMounts(mountinfoFile)
	if err1 != nil || err2 != nil {
		return nil
	}
	var files []string
	seen := map[string]bool{}
	for ctrls, path := range own {
		for _, m := range mounts {
			if !m.holds(ctrls) {
				continue
			}
			if dir, ok := m.dir(path); ok && !seen[dir] {
				seen[dir] = true
				files = append(files, filepath.Join(dir, "cgroup.procs"))
			}
		}
	}
	return files
}

// holds reports whether m is the hierarchy that /proc/self/cgroup's entry
// with controller list ctrls ("0:" for v2) names.
func (m mount) holds(ctrls string) bool {
	if ctrls == "0:" {
		return m.fstype == "cgroup2"
	}
	if m.fstype != "cgroup" {
		return false
	}
	for _, c := range strings.Split(ctrls, ",") {
		if !slices.Contains(m.opts, c) {
			return false
		}
	}
	return true
}
