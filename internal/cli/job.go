package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"kumo/api"
	"kumo/client"
)

// NewCmdJob returns "kumo job" and its subcommands, named as in
// "az ml job".
func NewCmdJob(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit and follow command jobs",
	}
	cmd.AddCommand(
		NewCmdJobCreate(f, nil),
		NewCmdJobSubmit(f, nil),
		NewCmdJobList(f, nil),
		NewCmdJobShow(f, nil),
		NewCmdJobLogs(f, nil),
		NewCmdJobStream(f, nil),
		NewCmdJobCancel(f, nil),
		NewCmdJobDownload(f, nil),
	)
	return cmd
}

// jobName returns the job named by the single argument or by --name,
// as "az ml job" takes it.
func jobName(args []string, flag string) (string, error) {
	switch {
	case len(args) == 1 && flag != "" && args[0] != flag:
		return "", fmt.Errorf("job name given twice: %q and --name %q", args[0], flag)
	case len(args) == 1:
		return args[0], nil
	case flag != "":
		return flag, nil
	}
	return "", errors.New("a job name is required: kumo job COMMAND NAME")
}

// withJobName makes cmd take the name of one job as its argument or by
// -n/--name, as "az ml job" does, and store it in *name before run runs.
func withJobName(cmd *cobra.Command, name *string, run func(*cobra.Command, []string) error) *cobra.Command {
	var nameFlag string
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		n, err := jobName(args, nameFlag)
		if err != nil {
			return err
		}
		*name = n
		return run(cmd, args)
	}
	cmd.Flags().StringVarP(&nameFlag, "name", "n", "", "job name (instead of the argument)")
	return cmd
}

// loadJob returns the job called name in the workspace.
func (o *commonOptions) loadJob(name string) (*client.Job, error) {
	ws, err := o.Workspace()
	if err != nil {
		return nil, err
	}
	return ws.Job(o.Ctx, name)
}

// submitOptions are what job create and job submit share.
type submitOptions struct {
	commonOptions
	// Name is the job's name; "" lets the SDK generate one.
	Name string
	// Stream waits for the job and streams its output.
	Stream bool
}

// submitAndReport submits spec and prints what create and submit print:
// the job's name alone on stdout (its JSON with -o json); with Stream,
// what streamJob prints. The server's warnings go to stderr.
func submitAndReport(opts *submitOptions, spec client.CommandJob) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	job, err := ws.SubmitJob(opts.Ctx, opts.Name, spec)
	if err != nil {
		return err
	}
	if snap := job.Snapshot(); snap != nil {
		fmt.Fprintf(opts.IO.ErrOut, "Uploaded code snapshot: %d files, %d KiB\n", snap.FileCount, (snap.SizeBytes+1023)/1024)
	}
	if p := job.Resource().Properties; p != nil {
		for _, w := range p.Warnings {
			fmt.Fprintf(opts.IO.ErrOut, "Warning: %s\n", w)
		}
	}
	if !opts.Stream {
		if opts.Output == OutputJSON {
			return printJSON(opts.IO.Out, job.Resource())
		}
		fmt.Fprintln(opts.IO.Out, job.Name())
		return nil
	}
	return streamJob(&opts.commonOptions, job)
}

// streamNote is the help text on what --stream and job stream print.
const streamNote = `While it streams, the job's name ("RunId: NAME"), its place in the queue
and why it waits, and at the end its status go to stderr; stdout gets the
job's output alone (user_logs/std_log.txt: its stdout and stderr in the
order written). The exit status is 0 only when the job Completed.`

// queuePoll is how often streamJob asks about a job waiting in the queue;
// a variable so that tests can shorten it.
var queuePoll = time.Second

// streamJob follows job as "az ml job stream" does: the job's name, and
// while it is queued its position and pending reason whenever they change,
// on stderr; its output on stdout until it ends; then a summary on stderr.
// It returns nil only when the job Completed.
func streamJob(opts *commonOptions, job *client.Job) error {
	errOut := opts.IO.ErrOut
	fmt.Fprintf(errOut, "RunId: %s\n", job.Name())
	if p := job.Resource().Properties; p != nil && p.Status == api.JobQueued && p.PendingReason == nil {
		// A submit's answer leaves out where the job stands; ask.
		if err := job.Refresh(opts.Ctx); err != nil {
			return err
		}
	}
	last := ""
	for {
		p := job.Resource().Properties
		if p == nil || (p.Status != api.JobQueued && p.Status != api.JobNotStarted) {
			break
		}
		if line := queueLine(p); line != last {
			fmt.Fprintln(errOut, line)
			last = line
		}
		select {
		case <-opts.Ctx.Done():
			return stoppedStreaming(job, opts.Ctx.Err())
		case <-time.After(queuePoll):
		}
		if err := job.Refresh(opts.Ctx); err != nil {
			if opts.Ctx.Err() != nil {
				return stoppedStreaming(job, err)
			}
			return err
		}
	}
	fmt.Fprintf(errOut, "Streaming user_logs/std_log.txt\n%s\n\n", "===============================")
	if err := job.StreamLogs(opts.Ctx, opts.IO.Out, true); err != nil {
		if opts.Ctx.Err() != nil {
			return stoppedStreaming(job, err)
		}
		return err
	}
	err := job.Wait(opts.Ctx)
	if err != nil && opts.Ctx.Err() != nil {
		return stoppedStreaming(job, err)
	}
	fmt.Fprintf(errOut, "\nExecution Summary\n=================\nRunId: %s\nStatus: %s\n", job.Name(), job.Status())
	return err
}

// stoppedStreaming is streamJob's error when the user stops it (Ctrl-C).
func stoppedStreaming(job *client.Job, err error) error {
	return fmt.Errorf("stopped streaming; job %s goes on (kumo job cancel %s stops it): %w", job.Name(), job.Name(), err)
}

// queueLine says where a waiting job stands: "Queued: position 2 on
// cpu-cluster: MaxNodesReached: all 2 nodes ... are busy".
func queueLine(p *api.JobProperties) string {
	var b strings.Builder
	b.WriteString(string(p.Status))
	if p.QueuePosition > 0 {
		fmt.Fprintf(&b, ": position %d", p.QueuePosition)
		if p.ComputeID != "" {
			fmt.Fprintf(&b, " on %s", p.ComputeID)
		}
	}
	if r := p.PendingReason; r != nil {
		fmt.Fprintf(&b, ": %s", strings.TrimSuffix(r.Code+": "+r.Message, ": "))
	}
	return b.String()
}

// printJobs writes jobs, in the order given, as a table or, with -o json,
// as a JSON array.
func printJobs(w io.Writer, output string, jobs []api.JobResource, now time.Time) error {
	if output == OutputJSON {
		if jobs == nil {
			jobs = []api.JobResource{}
		}
		return printJSON(w, jobs)
	}
	t := newTable(w, "NAME", "DISPLAY NAME", "STATUS", "COMPUTE", "NODE", "CREATED", "DURATION")
	for _, j := range jobs {
		p := j.Properties
		if p == nil {
			p = &api.JobProperties{}
		}
		t.row(j.Name, orDash(p.DisplayName), orDash(string(p.Status)), orDash(p.ComputeID), orDash(p.NodeID), formatTime(p.CreatedOn), jobDuration(p, now))
	}
	return t.flush()
}

// formatTime writes an ARM timestamp in local time to the second, or "-".
func formatTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return orDash(s)
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// jobDuration is how long the job has run: from its start to its end, or
// to now while it runs; "-" before it starts.
func jobDuration(p *api.JobProperties, now time.Time) string {
	start, err := time.Parse(time.RFC3339Nano, p.StartTime)
	if err != nil {
		return "-"
	}
	end, err := time.Parse(time.RFC3339Nano, p.EndTime)
	if err != nil {
		end = now
	}
	d := end.Sub(start)
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
