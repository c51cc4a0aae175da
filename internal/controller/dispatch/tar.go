package dispatch

import (
	"context"
	"io"

	"kumo/internal/archive"
	"kumo/internal/model"
	"kumo/internal/store"
)

// saveArtifacts stores the outputs/ and logs/ of a local job's directory
// dir, written with kumo's one archive writer and read back with its one
// reader, and records on the job what the writer left out (a link
// pointing outside dir).
func (l *localRunner) saveArtifacts(ctx context.Context, j model.Job, dir string) {
	cfg := l.d.cfg
	pr, pw := io.Pipe()
	warned := make(chan []string, 1)
	go func() {
		warnings, err := archive.Write(pw, dir, "outputs", "logs")
		pw.CloseWithError(err)
		warned <- warnings
	}()
	if err := cfg.Files.SaveArtifacts(j.RunID, pr, ""); err != nil {
		cfg.Log.Error("local job artifacts", "job", j.Name, "err", err)
	}
	pr.Close()
	warnings := <-warned
	if len(warnings) == 0 {
		return
	}
	for i, w := range warnings {
		warnings[i] = "artifacts: " + w
	}
	if err := store.JobChange(ctx, cfg.Store, j.RunID, func(x *model.Job) bool { return x.AddWarnings(warnings...) }); err != nil {
		cfg.Log.Error("local job artifact warnings", "job", j.Name, "err", err)
	}
}
