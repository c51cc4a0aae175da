package hub

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"kumo/internal/agentproto"
	"kumo/internal/archive"
	"kumo/internal/archive/archivetest"
	"kumo/internal/model"
)

// TestArtifactsRefusedAndWarned: a hostile or oversized artifacts tar is
// answered 400 or 413 and changes nothing stored; the warnings an agent
// sends in the upload's trailer are recorded on the job once.
func TestArtifactsRefusedAndWarned(t *testing.T) {
	e := newEnv(t)
	e.files.SetLimits(archive.Limits{}, archive.Limits{MaxBytes: 1024})
	mine := e.job(t, "mine", "n1", model.JobFinalizing, nil)
	e.node(t, "n1", model.NodeRunning, mine.ID)
	path := agentproto.ArtifactsPath + mine.RunID + "/artifacts?" + agentproto.AttemptQuery + "=" + strconv.Itoa(mine.Attempts)
	good := makeTar(t, map[string]string{"outputs/good.txt": "good"})

	put := func(body []byte, warnings ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, e.srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+cred("n1"))
		req.Header.Set(agentproto.NodeHeader, "n1")
		signedBy(e.key(t, "n1"))(req.Header, http.MethodPut, req.URL.RequestURI(), "n1", nil)
		req.ContentLength = -1 // chunked, to carry a trailer
		req.Trailer = http.Header{agentproto.WarningsTrailer: warnings}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	warn := `"outputs/evil": link to "/etc/passwd" points outside the directory; left out`
	if got, body := put(good, warn); got != http.StatusNoContent {
		t.Fatalf("PUT good artifacts = %d %s, want 204", got, body)
	}
	if got, body := put(good, warn); got != http.StatusNoContent { // a retry
		t.Fatalf("PUT good artifacts again = %d %s, want 204", got, body)
	}
	tests := []struct {
		name string
		body []byte
		want int
	}{
		{"sparse", archivetest.SparseTar(), http.StatusBadRequest},
		{"over the limit", makeTar(t, map[string]string{"outputs/big": string(make([]byte, 2000))}), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		if got, body := put(tt.body, "should not be recorded"); got != tt.want {
			t.Errorf("PUT %s artifacts = %d %s, want %d", tt.name, got, body, tt.want)
		}
	}
	j, err := e.st.JobGet(context.Background(), mine.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"artifacts: " + warn}; !slices.Equal(j.Warnings, want) {
		t.Errorf("job warnings = %q, want %q", j.Warnings, want)
	}
	dir, _ := e.files.JobDir(mine.RunID)
	if got, err := os.ReadFile(filepath.Join(dir, "outputs", "good.txt")); err != nil || string(got) != "good" {
		t.Errorf("outputs/good.txt = %q, %v after refused uploads; want it kept", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "outputs", "big")); err == nil {
		t.Errorf("a refused upload left outputs/big")
	}
}
