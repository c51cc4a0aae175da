package agent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/agentproto"
)

// TestArtifactsLeaveOutOutsideLinks: a job that links outputs/ to a file
// outside its directory (which the agent, running as root, could read)
// gets its other outputs uploaded; the links are left out, unread, and
// named in the upload's warnings.
func TestArtifactsLeaveOutOutsideLinks(t *testing.T) {
	fs := newFakeServer(t)
	startAgent(t, fs, "")
	c, _ := fs.welcome(agentproto.Message{})
	c.send(agentproto.Message{Type: agentproto.TypeRun, Job: &agentproto.JobSpec{RunID: "r1",
		Command: "mkdir -p outputs && printf good > outputs/good.txt && ln -s /etc/passwd outputs/evil && ln -s ../../.. outputs/up && ln -s ok.txt outputs/inside"}})
	c.next(agentproto.TypeStarted)
	c.output("r1", agentproto.Offsets{}, agentproto.TypeExited)
	done := c.next(agentproto.TypeDone)
	if done.ExitCode == nil || *done.ExitCode != 0 || done.Message != "" {
		t.Errorf("done = %+v, want code 0 and no message", done)
	}
	u := <-fs.uploads
	want := map[string]string{"outputs/": "", "outputs/good.txt": "good", "outputs/inside": ""}
	if diff := cmp.Diff(want, u.files); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	warnings := strings.Join(u.warnings, "\n")
	for _, name := range []string{`"outputs/evil"`, `"outputs/up"`} {
		if !strings.Contains(warnings, name) {
			t.Errorf("warnings %q do not name %s", u.warnings, name)
		}
	}
}
