package cli

import (
	"github.com/spf13/cobra"
)

// JobLogsOptions are the inputs of kumo job logs.
type JobLogsOptions struct {
	commonOptions
	Name string
	// Follow keeps streaming until the job ends.
	Follow bool
}

// NewCmdJobLogs returns "kumo job logs NAME [-f]".
func NewCmdJobLogs(f *Factory, runF func(*JobLogsOptions) error) *cobra.Command {
	opts := &JobLogsOptions{commonOptions: f.options()}
	cmd := withJobName(&cobra.Command{
		Use:   "logs NAME",
		Short: "Print a job's output (stdout and stderr); -f follows it until the job ends",
	}, &opts.Name, runE(f, opts, runF, jobLogsRun))
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing output as the job writes it, until it ends")
	return cmd
}

func jobLogsRun(opts *JobLogsOptions) error {
	job, err := opts.loadJob(opts.Name)
	if err != nil {
		return err
	}
	return job.StreamLogs(opts.Ctx, opts.IO.Out, opts.Follow)
}
