package cli

import (
	"github.com/spf13/cobra"
)

// JobStreamOptions are the inputs of kumo job stream.
type JobStreamOptions struct {
	commonOptions
	Name string
}

// NewCmdJobStream returns "kumo job stream NAME".
func NewCmdJobStream(f *Factory, runF func(*JobStreamOptions) error) *cobra.Command {
	opts := &JobStreamOptions{commonOptions: f.options()}
	return withJobName(&cobra.Command{
		Use:   "stream NAME",
		Short: "Follow a job until it ends: its queue position while it waits, then its output",
		Long: `Follow a job until it ends, as "az ml job stream" does, and exit non-zero
unless it Completed. A job that has ended prints its output and how it ended.

` + streamNote,
	}, &opts.Name, runE(f, opts, runF, jobStreamRun))
}

func jobStreamRun(opts *JobStreamOptions) error {
	job, err := opts.loadJob(opts.Name)
	if err != nil {
		return err
	}
	return streamJob(&opts.commonOptions, job)
}
