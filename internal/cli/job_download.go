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
	opts := &JobDownloadOptions{commonOptions: f.options()}
	cmd := withJobName(&cobra.Command{
		Use:   "download NAME",
		Short: "Download a job's outputs/, logs/ and user_logs/",
	}, &opts.Name, runE(f, opts, runF, jobDownloadRun))
	cmd.Flags().StringVarP(&opts.DownloadPath, "download-path", "p", "", "directory to write to (default ./NAME)")
	return cmd
}

func jobDownloadRun(opts *JobDownloadOptions) error {
	dir := opts.DownloadPath
	if dir == "" {
		dir = opts.Name
	}
	job, err := opts.loadJob(opts.Name)
	if err != nil {
		return err
	}
	if err := job.Download(opts.Ctx, dir); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Downloaded the artifacts of job %s to %s\n", opts.Name, dir)
	return nil
}
