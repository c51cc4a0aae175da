package cli

import (
	"time"

	"github.com/spf13/cobra"

	"kumo/api"
)

// JobListOptions are the inputs of kumo job list.
type JobListOptions struct {
	commonOptions
}

// NewCmdJobList returns "kumo job list".
func NewCmdJobList(f *Factory, runF func(*JobListOptions) error) *cobra.Command {
	opts := &JobListOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workspace's jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ctx, opts.Output = cmd.Context(), f.Output
			if runF != nil {
				return runF(opts)
			}
			return jobListRun(opts)
		},
	}
	return cmd
}

func jobListRun(opts *JobListOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	jobs, err := ws.Jobs(opts.Ctx)
	if err != nil {
		return err
	}
	rs := make([]api.JobResource, 0, len(jobs))
	for _, j := range jobs {
		rs = append(rs, j.Resource())
	}
	return printJobs(opts.IO.Out, opts.Output, rs, time.Now())
}
