package daemon

import (
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"syscall"
)

// reportDataDir writes one line saying where the data directory and the
// jobs' work directory are and how much disk each uses.
func reportDataDir(w io.Writer, dataDir, workDir string) {
	fmt.Fprintf(w, "Data directory %s uses %s; jobs' work directory %s uses %s\n",
		dataDir, usage(dataDir), workDir, usage(workDir))
}

func usage(dir string) string {
	n, err := diskUsage(dir)
	if err != nil {
		return "an unknown amount (" + err.Error() + ")"
	}
	return humanBytes(n)
}

// diskUsage returns the bytes of disk that the files under dir occupy, as
// du counts them; files that vanish meanwhile are skipped.
func diskUsage(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if d == nil || d.IsDir() {
				return err
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// humanBytes formats n in binary units: "512 B", "1.5 KiB", "20.0 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
