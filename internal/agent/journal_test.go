package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kumo/internal/agentproto"
)

// The journal keeps the last record of each job until the job is
// forgotten, survives being reopened, and is compacted as forgotten jobs
// pile up, so its size follows the live jobs, not the jobs ever run.
func TestJournalCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), JournalFile)
	jn, recs, err := openJournal(path)
	if err != nil || len(recs) != 0 {
		t.Fatalf("openJournal on nothing = %v, %v", recs, err)
	}
	for i := range 3 * compactAfter {
		id := fmt.Sprintf("r%d", i)
		for _, r := range []record{{RunID: id, State: agentproto.JobRunning}, {RunID: id, State: agentproto.JobExited, Final: true}} {
			if err := jn.append(r); err != nil {
				t.Fatal(err)
			}
		}
		if i%100 != 0 { // every hundredth job stays
			if err := jn.append(record{RunID: id, Acked: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	jn.close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	live := (3*compactAfter + 99) / 100
	if lines := bytes.Count(b, []byte("\n")); lines > compactAfter {
		t.Errorf("journal holds %d records for %d live jobs; want it compacted", lines, live)
	}
	_, recs, err = openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]record{}
	for i := 0; i < 3*compactAfter; i += 100 {
		id := fmt.Sprintf("r%d", i)
		want[id] = record{RunID: id, State: agentproto.JobExited, Final: true}
	}
	if diff := cmp.Diff(want, recs, cmpopts.IgnoreFields(record{}, "Time")); diff != "" {
		t.Errorf("records after reopening (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal file: %v, %v; want mode 0600", fi, err)
	}
}
