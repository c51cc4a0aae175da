package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

// TestOutsideLinkInOutputs: a job that plants links to outside files in
// outputs/ still Completes with its other outputs kept; the links are
// neither stored nor read, and the job shows a warning naming them. On a
// cluster node and on compute local alike.
func TestOutsideLinkInOutputs(t *testing.T) {
	s := startServer(t, "", fastNodes...)
	createCluster(t, s, "c1", 0, 1, "PT30S")
	const command = "mkdir -p outputs/sub && echo good > outputs/good.txt && echo deep > outputs/sub/deep.txt && " +
		"ln -s /etc/passwd outputs/evil && ln -s .. outputs/up && ln -s up/../../.. outputs/chain"
	for _, compute := range []string{"c1", "local"} {
		t.Run(compute, func(t *testing.T) {
			name := "links-" + compute
			submitJob(t, s, name, compute, command)
			j := waitJob(t, s, name, 60*time.Second)
			if j.Properties.Status != api.JobCompleted {
				t.Fatalf("%s: %s %+v", name, j.Properties.Status, j.Properties.Error)
			}
			warnings := strings.Join(j.Properties.Warnings, "\n")
			for _, link := range []string{"outputs/evil", "outputs/chain"} {
				if !strings.Contains(warnings, `"`+link+`"`) {
					t.Errorf("job warnings %q do not name %s", j.Properties.Warnings, link)
				}
			}
			out, err := run(t, s.dir, "job", "show", name)
			if err != nil || !strings.Contains(out, "outputs/evil") {
				t.Errorf("job show (err %v) does not show the warning:\n%s", err, out)
			}
			dl := t.TempDir()
			if out, err := run(t, s.dir, "job", "download", name, "--download-path", dl); err != nil {
				t.Fatalf("download: %v %s", err, out)
			}
			for file, want := range map[string]string{"outputs/good.txt": "good\n", "outputs/sub/deep.txt": "deep\n"} {
				if got, err := os.ReadFile(filepath.Join(dl, file)); err != nil || string(got) != want {
					t.Errorf("downloaded %s = %q, %v; want %q", file, got, err, want)
				}
			}
			for _, link := range []string{"outputs/evil", "outputs/chain"} {
				if _, err := os.Lstat(filepath.Join(dl, link)); err == nil {
					t.Errorf("downloaded %s, which points outside the job", link)
				}
			}
		})
	}
}
