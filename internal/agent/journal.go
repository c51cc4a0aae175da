package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"kumo/internal/agentproto"
	"kumo/internal/jobuser"
	"kumo/internal/runner"
)

// journalPath is where a job's journal lives: beside the job's directory,
// not in it, so that the job's own files do not show it.
func journalPath(jobDir string) string { return jobDir + ".state.json" }

// restartMessage is the Done message of a job the agent lost track of.
const restartMessage = "agent restarted while the job ran"

// record is a job's journal entry.
type record struct {
	RunID     string              `json:"runId"`
	State     agentproto.JobState `json:"state"`
	PID       int                 `json:"pid,omitempty"`
	PIDStart  uint64              `json:"pidStart,omitempty"`  // start time of PID in clock ticks after boot, to tell a reused pid
	Result    *result             `json:"result,omitempty"`    // set when State is exited
	Artifacts bool                `json:"artifacts,omitempty"` // outputs/ or logs/ held files when the job ended
	Final     bool                `json:"final,omitempty"`     // artifacts uploaded (or there were none): Done may be sent
}

// writeJournal writes the job's journal entry atomically (without fsync);
// j.mu must be held. Failures are logged: the journal only helps after a
// restart.
func (j *job) writeJournal() {
	if j.forgotten {
		return
	}
	b, err := json.Marshal(record{
		RunID: j.id, State: j.state, PID: j.pid, PIDStart: j.pidStart,
		Result: j.res, Artifacts: j.artifacts, Final: j.final,
	})
	if err == nil {
		tmp := journalPath(j.dir) + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, journalPath(j.dir))
		}
	}
	if err != nil {
		j.a.log.Warn("agent: writing journal", "runId", j.id, "err", err)
	}
}

// restore loads the jobs the journal holds. A job that was starting or
// running is recorded as ended with reason "error" (its process, if it
// still runs, is killed: nothing reads its output any more); jobs whose
// artifacts were not uploaded get a goroutine that uploads them.
func (a *agent) restore() error {
	ents, err := os.ReadDir(a.jobsDir)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || checkRunID(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(a.jobsDir, e.Name())
		b, err := os.ReadFile(journalPath(dir))
		if errors.Is(err, os.ErrNotExist) {
			// Acknowledged; the agent stopped before it removed the directory.
			if err := os.RemoveAll(dir); err != nil {
				a.log.Warn("agent: removing job directory", "runId", e.Name(), "err", err)
			}
			continue
		}
		var rec record
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil {
			a.log.Warn("agent: ignoring unreadable journal", "dir", dir, "err", err)
			continue
		}
		j := newJob(a, agentproto.JobSpec{RunID: e.Name()})
		j.markStarted()
		j.state, j.pid, j.pidStart = agentproto.JobExited, rec.PID, rec.PIDStart
		j.res, j.artifacts, j.final = rec.Result, rec.Artifacts, rec.Final
		if rec.State != agentproto.JobExited || rec.Result == nil {
			if rec.PID > 0 && rec.PIDStart != 0 && procStart(rec.PID) == rec.PIDStart {
				syscall.Kill(-rec.PID, syscall.SIGKILL)
			}
			if u := a.cfg.JobUser; u != nil {
				if err := jobuser.KillAll(u.UID); err != nil {
					a.log.Warn("agent: ending a lost job", "runId", e.Name(), "err", err)
				}
			}
			if err := runner.Reclaim(dir, a.cfg.JobUser); err != nil {
				a.log.Warn("agent: ending a lost job", "runId", e.Name(), "err", err)
			}
			j.res = &result{Reason: reasonError, Message: restartMessage, Time: fileTime(journalPath(dir))}
			j.artifacts = hasFiles(filepath.Join(dir, "outputs")) || hasFiles(filepath.Join(dir, "logs"))
			j.final = !j.artifacts
		}
		j.mu.Lock()
		j.writeJournal()
		j.mu.Unlock()
		a.jobs[j.id] = j
		a.log.Info("agent: restored job", "runId", j.id, "reason", j.res.Reason)
		if !j.final {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer j.cancel()
				j.finish()
			}()
		}
	}
	return nil
}

// procStart returns the start time of process pid in clock ticks after
// boot, or 0 if there is no such process.
func procStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	// Fields after the command name start at field 3 (state); starttime is 22.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}
