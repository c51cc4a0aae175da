package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// JobCancelOptions are the inputs of kumo job cancel.
type JobCancelOptions struct {
	commonOptions
	Name string
}

// NewCmdJobCancel returns "kumo job cancel NAME".
func NewCmdJobCancel(f *Factory, runF func(*JobCancelOptions) error) *cobra.Command {
	opts := &JobCancelOptions{commonOptions: f.options()}
	return withJobName(&cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a job: its command gets SIGTERM, then SIGKILL after a grace period",
	}, &opts.Name, runE(f, opts, runF, jobCancelRun))
}

func jobCancelRun(opts *JobCancelOptions) error {
	job, err := opts.loadJob(opts.Name)
	if err != nil {
		return err
	}
	if job.Status().Terminal() {
		fmt.Fprintf(opts.IO.ErrOut, "Job %s has already ended: %s\n", opts.Name, job.Status())
		return nil
	}
	if err := job.Cancel(opts.Ctx); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Cancel requested for job %s\n", opts.Name)
	return nil
}
