package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"kumo/internal/model"
)

// maxChangeTries bounds how often JobChange retries after losing a race.
const maxChangeTries = 10

// JobChange applies change to the job with the given run ID and stores it,
// conditional on the status it read; when another writer changed the job
// meanwhile it reads again and retries. change returns false to leave the
// job as it is.
func JobChange(ctx context.Context, st Store, runID string, change func(*model.Job) bool) error {
	for range maxChangeTries {
		j, err := st.JobGetByRunID(ctx, runID)
		if err != nil {
			return err
		}
		from := j.Status
		if !change(&j) {
			return nil
		}
		err = st.JobUpdate(ctx, j, from, nil, "")
		if !errors.Is(err, ErrPreconditionFailed) {
			return err
		}
	}
	return fmt.Errorf("job %s: too many concurrent changes", runID)
}

// NodeJob returns the unfinished job node n runs, if any: the job n's
// record names, when that job's current attempt runs on n (on any rank of
// a gang; see model.Job.RunsOn). ok is
// false when n runs none (or the job is gone).
func NodeJob(ctx context.Context, st Store, n model.Node) (j model.Job, ok bool, err error) {
	if n.JobID == "" {
		return model.Job{}, false, nil
	}
	j, err = st.JobGet(ctx, n.JobID)
	if errors.Is(err, ErrNotFound) {
		return model.Job{}, false, nil
	}
	if err != nil {
		return model.Job{}, false, fmt.Errorf("get job %s: %w", n.JobID, err)
	}
	if !j.RunsOn(n.ID) {
		return model.Job{}, false, nil
	}
	return j, true, nil
}

// JobWarn adds warning to the job's warnings unless it is there already.
func JobWarn(ctx context.Context, st Store, runID, warning string) error {
	return JobChange(ctx, st, runID, func(j *model.Job) bool {
		if slices.Contains(j.Warnings, warning) {
			return false
		}
		j.Warnings = append(j.Warnings, warning)
		return true
	})
}
