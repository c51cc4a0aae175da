package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/jobuser"
	"kumo/internal/runner"
)

// JournalFile is the name, in the work directory, of the node's journal:
// one JSON record per line, appended each time a job's state changes (see
// [journal]).
const JournalFile = "jobs.journal"

// legacyJournalPath is where agents before the node journal kept a job's
// record: beside the job's directory. Such files are read once at start.
func legacyJournalPath(jobDir string) string { return jobDir + ".state.json" }

// restartMessage is the Done message of a job the agent lost track of.
const restartMessage = "agent restarted while the job ran"

// record is a job's journal entry: the whole of what the journal keeps of
// the job, so that the last record of a run ID is all that counts.
type record struct {
	RunID     string              `json:"runId"`
	State     agentproto.JobState `json:"state,omitempty"`
	PID       int                 `json:"pid,omitempty"`
	PIDStart  uint64              `json:"pidStart,omitempty"`  // start time of PID in clock ticks after boot, to tell a reused pid
	Result    *result             `json:"result,omitempty"`    // set when State is exited
	Artifacts bool                `json:"artifacts,omitempty"` // outputs/ or logs/ held files when the job ended
	Final     bool                `json:"final,omitempty"`     // artifacts uploaded (or there were none): Done may be sent
	Acked     bool                `json:"acked,omitempty"`     // the server acknowledged Done: the job is forgotten
	Time      time.Time           `json:"time,omitzero"`       // when the record was written
}

// journal is the node's job journal, WorkDir/jobs.journal (mode 0600, out
// of the jobs' sight): it records each job's state and result until the
// server acknowledges Done, so that an agent restarted by hand still
// reports the jobs it finished. It guards against agent restarts, not host
// crashes, so an append is one write(2) and no fsync: a record written is
// in the kernel's hands at once. A record torn by a crash mid-append (the
// last line, without its newline or not JSON) is ignored when the journal
// is read back. When the records of forgotten jobs outweigh the live ones,
// the journal is compacted: the live records are written to a new file,
// synced, and renamed over it.
//
// One file for the node, instead of one per job rewritten at each change,
// spares the job directory's file system a create, a rename and a removal
// per job and state, which cost about a millisecond each on a busy ext4
// disk. Its methods are safe for concurrent use.
type journal struct {
	path string

	mu      sync.Mutex
	f       *os.File          // open for appending; nil after close or a failed compaction
	live    map[string][]byte // last record line (with newline) of each job not forgotten
	written int               // records in the file
}

// compactAfter is the fewest records the journal holds before it is
// compacted, which it is once they are four times the live jobs.
const compactAfter = 1024

// openJournal reads the journal at path (missing means empty) and returns
// it, compacted, with the last record of each job not forgotten.
func openJournal(path string) (*journal, map[string]record, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("read journal: %w", err)
	}
	recs := replay(b)
	jn := &journal{path: path, live: map[string][]byte{}}
	for id, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			return nil, nil, fmt.Errorf("read journal: %w", err)
		}
		jn.live[id] = append(line, '\n')
	}
	if err := jn.compact(); err != nil {
		return nil, nil, err
	}
	return jn, recs, nil
}

// replay returns the last record of each job not forgotten in a journal's
// content; lines that are not whole records (a torn last line) are skipped.
func replay(b []byte) map[string]record {
	recs := map[string]record{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var r record
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.RunID == "" {
			continue
		}
		if r.Acked {
			delete(recs, r.RunID)
		} else {
			recs[r.RunID] = r
		}
	}
	return recs
}

// append records r as the job's state, or forgets the job when r.Acked.
func (jn *journal) append(r record) error {
	r.Time = time.Now().UTC()
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	line = append(line, '\n')
	jn.mu.Lock()
	defer jn.mu.Unlock()
	if r.Acked {
		delete(jn.live, r.RunID)
	} else {
		jn.live[r.RunID] = line
	}
	if jn.f == nil {
		return errors.New("write journal: closed")
	}
	if _, err := jn.f.Write(line); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	jn.written++
	if jn.written >= compactAfter && jn.written > 4*len(jn.live) {
		return jn.compact()
	}
	return nil
}

// compact writes the live records to a new file that replaces the
// journal, and appends to it from then on; jn.mu must be held (or jn not
// yet shared).
func (jn *journal) compact() error {
	tmp := jn.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	var buf bytes.Buffer
	for _, line := range jn.live {
		buf.Write(line)
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, jn.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact journal: %w", err)
	}
	if jn.f != nil {
		jn.f.Close()
	}
	jn.f, jn.written = f, len(jn.live)
	return nil
}

// close closes the file; later appends fail.
func (jn *journal) close() {
	jn.mu.Lock()
	defer jn.mu.Unlock()
	if jn.f != nil {
		jn.f.Close()
		jn.f = nil
	}
}

// writeJournal records the job's state in the node's journal; j.mu must
// be held. Failures are logged: the journal only helps after a restart.
func (j *job) writeJournal() {
	if j.forgotten {
		return
	}
	err := j.a.journal.append(record{
		RunID: j.id, State: j.state, PID: j.pid, PIDStart: j.pidStart,
		Result: j.res, Artifacts: j.artifacts, Final: j.final,
	})
	if err != nil {
		j.a.log.Warn("agent: writing journal", "runId", j.id, "err", err)
	}
}

// restore opens the journal and loads the jobs it holds, with those that
// an agent of an earlier version journaled in files of their own. A job
// that was starting or running is recorded as ended with reason "error"
// (its process, if it still runs, is killed: nothing reads its output any
// more); jobs whose artifacts were not uploaded get a goroutine that
// uploads them. A job directory no job holds is removed: its job was
// acknowledged before the agent stopped.
func (a *agent) restore() error {
	jn, recs, err := openJournal(filepath.Join(a.cfg.WorkDir, JournalFile))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.journal = jn
	ents, err := os.ReadDir(a.jobsDir)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || checkRunID(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(a.jobsDir, e.Name())
		rec, ok := recs[e.Name()]
		ended := rec.Time
		if legacy := legacyJournalPath(dir); !ok {
			b, err := os.ReadFile(legacy)
			if err == nil {
				err = json.Unmarshal(b, &rec)
				ok, ended = err == nil, fileTime(legacy)
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				a.log.Warn("agent: ignoring unreadable journal", "dir", dir, "err", err)
				continue
			}
		}
		if !ok {
			// Acknowledged; the agent stopped before it removed the directory.
			if err := os.RemoveAll(dir); err != nil {
				a.log.Warn("agent: removing job directory", "runId", e.Name(), "err", err)
			}
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
			if ended.IsZero() {
				ended = time.Now()
			}
			j.res = &result{Reason: reasonError, Message: restartMessage, Time: ended}
			j.artifacts = hasFiles(filepath.Join(dir, "outputs")) || hasFiles(filepath.Join(dir, "logs"))
			j.final = !j.artifacts
		}
		j.mu.Lock()
		j.writeJournal()
		j.mu.Unlock()
		if err := os.Remove(legacyJournalPath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("agent: removing a journal file of an earlier version", "runId", j.id, "err", err)
		}
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
	// Records of jobs whose directories are gone go too.
	restored := make(map[string]bool, len(a.jobs))
	for id := range a.jobs {
		restored[id] = true
	}
	return jn.retain(func(id string) bool { return restored[id] })
}

// retain forgets the jobs keep reports false for and compacts the journal.
func (jn *journal) retain(keep func(runID string) bool) error {
	jn.mu.Lock()
	defer jn.mu.Unlock()
	for id := range jn.live {
		if !keep(id) {
			delete(jn.live, id)
		}
	}
	if err := jn.compact(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// procStart returns the start time of process pid in clock ticks after
// boot, or 0 if there is no such process.
func procStart(pid int) uint64 {
	var buf [1024]byte // a stat line is a few hundred bytes
	b, ok := jobuser.ReadProc(pid, "stat", buf[:])
	if !ok {
		return 0
	}
	i := strings.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	// Fields after the command name start at field 3 (state); starttime is 22.
	f := strings.Fields(b[i+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}
