package local

import (
	"os"
	"strconv"
	"strings"
)

// procStat is the part of /proc/<pid>/stat the provider uses.
type procStat struct {
	pid       int
	state     byte   // R, S, D, Z, ...
	session   int    // session ID
	startTime uint64 // clock ticks after boot; with pid, identifies a process across pid reuse
}

// readStat reads /proc/<pid>/stat; ok is false when the process is gone.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	return parseStat(pid, string(b))
}

func parseStat(pid int, s string) (procStat, bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	// After the command name: state(3) ppid(4) pgrp(5) session(6) ... starttime(22).
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "" {
		return procStat{}, false
	}
	sess, err1 := strconv.Atoi(f[3])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{pid: pid, state: f[0][0], session: sess, startTime: start}, true
}

// live reports whether the process is running (not a zombie).
func (p procStat) live() bool { return p.state != 'Z' && p.state != 'X' }

// alive reports whether the process pid that started at startTime is still
// running: a reused pid has another start time.
func alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, ok := readStat(pid)
	return ok && st.startTime == startTime && st.live()
}

// liveProcs returns every live process on the host.
func liveProcs() []procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.live() {
			out = append(out, st)
		}
	}
	return out
}
