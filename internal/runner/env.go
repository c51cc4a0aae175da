package runner

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"kumo/internal/jobuser"
)

// DefaultPath is the PATH a job gets unless its own variables set one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// JobEnv returns a job's whole environment, built from nothing, so that no
// variable of kumo's own processes (the control plane's or the agent's:
// tokens, credential or CA paths, the control plane's URL) reaches a job.
// It holds, sorted by name:
//
//   - PATH=[DefaultPath], HOME=home (the job's directory) and LANG=C.UTF-8,
//     unless the job's own variables set them;
//   - own, the job's environment_variables;
//   - set, what kumo sets for every job (KUMO_RUN_ID, AZUREML_RUN_ID,
//     KUMO_NODE_ID on a node, CUDA_VISIBLE_DEVICES...): these win over the
//     job's own variables of the same name.
//
// docs/jobs.md lists the variables; keep it true.
func JobEnv(home string, own, set map[string]string) []string {
	env := map[string]string{"PATH": DefaultPath, "HOME": home, "LANG": "C.UTF-8"}
	maps.Copy(env, own)
	maps.Copy(env, set)
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// Reclaim is called on an ended job's directory before kumo reads its
// artifacts: it takes the directory back from the job's user (so a later
// job running as the same uid cannot enter it) and removes an outputs/ or
// logs/ that the job replaced with something other than a directory (a
// symbolic link would have kumo read what it points to).
func Reclaim(dir string, user *jobuser.User) error {
	var errs []error
	if user != nil {
		if err := os.Lchown(dir, os.Getuid(), os.Getgid()); err != nil {
			errs = append(errs, fmt.Errorf("reclaim job directory: %w", err))
		}
	}
	for _, d := range []string{"outputs", "logs"} {
		p := filepath.Join(dir, d)
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
			if err := os.Remove(p); err != nil {
				errs = append(errs, fmt.Errorf("reclaim job directory: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
