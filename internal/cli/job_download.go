package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// JobDownloadOptions are the inputs of kumo job download.
type JobDownloadOptions struct {
	commonOptions
	Name string
	// DownloadPath is where the artifacts go; "" means ./NAME.
	DownloadPath string
}

// NewCmdJobDownload returns "kumo job download NAME".
func NewCmdJobDownload(f *Factory, runF func(*JobDownloadOptions) error) *cobra.Command {
	opts := &JobDownloadOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	var nameFlag string
	cmd := &cobra.Command{
		Use:   "download NAME",
		Short: "Download a job's outputs/, logs/ and user_logs/",
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
			return jobDownloadRun(opts)
		},
	}
	cmd.Flags().StringVarP(&nameFlag, "name", "n", "", "job name (instead of the argument)")
	cmd.Flags().StringVarP(&opts.DownloadPath, "download-path", "p", "", "directory to write to (default ./NAME)")
	return cmd
}

func jobDownloadRun(opts *JobDownloadOptions) error {
	dir := opts.DownloadPath
	if dir == "" {
		dir = opts.Name
	}
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	job, err := ws.Job(opts.Ctx, opts.Name)
	if err != nil {
		return err
	}
	if err := job.Download(opts.Ctx, dir); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Downloaded the artifacts of job %s to %s\n", opts.Name, dir)
	return nil
}
