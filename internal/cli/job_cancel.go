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
	opts := &JobCancelOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	var nameFlag string
	cmd := &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a job: its command gets SIGTERM, then SIGKILL after a grace period",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ctx, opts.Output = cmd.Context(), f.Output
			name, err := jobName(args, nameFlag)
			if err != nil {
				return err
			}
			opts.Name = name
			if runF != nil {
				return runF(opts)
			}
			return jobCancelRun(opts)
		},
	}
	cmd.Flags().StringVarP(&nameFlag, "name", "n", "", "job name (instead of the argument)")
	return cmd
}

func jobCancelRun(opts *JobCancelOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	job, err := ws.Job(opts.Ctx, opts.Name)
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
