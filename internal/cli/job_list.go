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
	opts := &JobListOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workspace's jobs",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, jobListRun),
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
