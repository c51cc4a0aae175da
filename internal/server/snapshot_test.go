package server_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kumo/api"
	"kumo/internal/archive/archivetest"
)

// TestSnapshotUploadRefusesHostileTars uploads the attack's tars through
// the real API: each is refused with 413 or 400 and an ARM error naming
// the problem, and nothing is left in the files directory.
func TestSnapshotUploadRefusesHostileTars(t *testing.T) {
	l := newLimited(t, nil, nil)
	filesDir := l.dir
	var good bytes.Buffer
	tw := tar.NewWriter(&good)
	tw.WriteHeader(&tar.Header{Name: "train.py", Typeflag: tar.TypeReg, Mode: 0o644, Size: 8})
	tw.Write([]byte("print(1)"))
	tw.Close()

	tests := []struct {
		name       string
		body       func() io.ReadCloser
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"sparse 4 GiB file", func() io.ReadCloser { return io.NopCloser(bytes.NewReader(archivetest.SparseTar())) },
			http.StatusBadRequest, "InvalidSnapshot", "sparse file"},
		{"203k files", func() io.ReadCloser { return archivetest.ManyFiles(203_000) },
			http.StatusRequestEntityTooLarge, "SnapshotTooLarge", "entry count limit of 20000"},
		{"link out", func() io.ReadCloser {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			tw.WriteHeader(&tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../../etc/passwd"})
			tw.Close()
			return io.NopCloser(&b)
		}, http.StatusBadRequest, "InvalidSnapshot", "leaves the directory"},
		{"good", func() io.ReadCloser { return io.NopCloser(bytes.NewReader(good.Bytes())) }, http.StatusCreated, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body()
			defer body.Close()
			req, err := http.NewRequest("POST", l.url+wsBase+"/snapshots?api-version=2024-04-01", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+l.owner)
			req.Header.Set("Content-Type", "application/x-tar")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, b)
			}
			if tt.wantStatus == http.StatusCreated {
				var snap api.Snapshot
				if err := json.Unmarshal(b, &snap); err != nil || snap.FileCount != 1 || snap.SizeBytes != int64(good.Len()) {
					t.Errorf("answer %s (%v), want 1 file of %d bytes", b, err, good.Len())
				}
				return
			}
			var e api.ErrorResponse
			if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || e.Error.Code != tt.wantCode || !strings.Contains(e.Error.Message, tt.wantInMsg) {
				t.Errorf("error body %s, want code %s and a message containing %q", b, tt.wantCode, tt.wantInMsg)
			}
		})
	}
	// Only the good snapshot is on disk.
	var got []string
	filepath.WalkDir(filesDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			got = append(got, strings.TrimPrefix(p, filesDir))
		}
		return nil
	})
	if len(got) != 1 || !strings.HasPrefix(got[0], "/snapshots/") {
		t.Errorf("files directory holds %v, want the good snapshot alone", got)
	}
	if ents, _ := os.ReadDir(filesDir); len(ents) != 2 {
		t.Errorf("files directory holds %d entries, want jobs/ and snapshots/", len(ents))
	}
}
