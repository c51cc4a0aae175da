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
	opts := &JobLogsOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	var nameFlag string
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a job's output (stdout and stderr); -f follows it until the job ends",
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
			return jobLogsRun(opts)
		},
	}
	cmd.Flags().StringVarP(&nameFlag, "name", "n", "", "job name (instead of the argument)")
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing output as the job writes it, until it ends")
	return cmd
}

func jobLogsRun(opts *JobLogsOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	job, err := ws.Job(opts.Ctx, opts.Name)
	if err != nil {
		return err
	}
	return job.StreamLogs(opts.Ctx, opts.IO.Out, opts.Follow)
}
