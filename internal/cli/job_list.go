package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"kumo/api"
	"kumo/client"
)

// JobListOptions are the inputs of kumo job list.
type JobListOptions struct {
	commonOptions
	// Compute keeps one compute target's jobs; "" keeps all.
	Compute string
	// Statuses keep the jobs in one of these statuses; none keeps all.
	Statuses []string
	// MaxResults bounds the number of jobs listed; 0 means all.
	MaxResults int
}

// NewCmdJobList returns "kumo job list".
func NewCmdJobList(f *Factory, runF func(*JobListOptions) error) *cobra.Command {
	opts := &JobListOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workspace's jobs, newest first",
		Long: `List the workspace's jobs, newest first, as "az ml job list" does.

  kumo job list --compute cpu-cluster --status Queued,Running --max-results 10`,
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, jobListRun),
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Compute, "compute", "", "only the jobs of this compute target (NAME, azureml:NAME or local)")
	fl.StringSliceVar(&opts.Statuses, "status", nil, "only jobs in these statuses, comma-separated (Queued, Running, Completed, Failed, Canceled...)")
	fl.IntVarP(&opts.MaxResults, "max-results", "r", 0, "list at most this many jobs (default all)")
	return cmd
}

func jobListRun(opts *JobListOptions) error {
	if opts.MaxResults < 0 {
		return fmt.Errorf("--max-results %d is negative", opts.MaxResults)
	}
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	lo := client.JobListOptions{Compute: opts.Compute, Max: opts.MaxResults}
	for _, s := range opts.Statuses {
		if s = strings.TrimSpace(s); s != "" {
			lo.Statuses = append(lo.Statuses, api.JobStatus(s))
		}
	}
	jobs, err := ws.ListJobs(opts.Ctx, lo)
	if err != nil {
		return err
	}
	rs := make([]api.JobResource, 0, len(jobs))
	for _, j := range jobs {
		rs = append(rs, j.Resource())
	}
	return printJobs(opts.IO.Out, opts.Output, rs, time.Now())
}
