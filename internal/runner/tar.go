package runner

import (
	"fmt"
	"io"

	"kumo/internal/archive"
)

// ErrUnsafeEntry is wrapped by [ExtractTar]'s error for an entry the
// archive reader refuses; it is [archive.ErrUnsafe].
var ErrUnsafeEntry = archive.ErrUnsafe

// ExtractTar extracts a job's code snapshot, the tar stream r, into dir
// with kumo's one archive reader ([archive.Extract]) under
// [archive.NodeLimits]: directories, regular files and links that resolve
// inside dir, nothing written through a link, and nothing left behind when
// the snapshot is refused.
func ExtractTar(dir string, r io.Reader) error {
	if _, err := archive.Extract(dir, r, archive.NodeLimits); err != nil {
		return fmt.Errorf("extract code: %w", err)
	}
	return nil
}
