package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kumo/api"
)

// JobShowOptions are the inputs of kumo job show.
type JobShowOptions struct {
	commonOptions
	Name string
}

// NewCmdJobShow returns "kumo job show NAME".
func NewCmdJobShow(f *Factory, runF func(*JobShowOptions) error) *cobra.Command {
	opts := &JobShowOptions{commonOptions: f.options()}
	return withJobName(&cobra.Command{
		Use:   "show NAME",
		Short: "Show a job: status, why it waits, exit code, error",
	}, &opts.Name, runE(f, opts, runF, jobShowRun))
}

func jobShowRun(opts *JobShowOptions) error {
	job, err := opts.loadJob(opts.Name)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		return printJSON(opts.IO.Out, job.Resource())
	}
	return printJobDetail(opts.IO.Out, job.Resource(), time.Now())
}

// printJobDetail writes one job as "Key: value" lines, leaving out what
// is not set.
func printJobDetail(w io.Writer, j api.JobResource, now time.Time) error {
	p := j.Properties
	if p == nil {
		p = &api.JobProperties{}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(key, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", key, escapeControl(value))
		}
	}
	line("Name", j.Name)
	line("Display name", p.DisplayName)
	line("Experiment", p.ExperimentName)
	line("Status", string(p.Status))
	if p.Status == api.JobQueued && p.QueuePosition > 0 {
		line("Position", fmt.Sprintf("%d in the queue of %s", p.QueuePosition, p.ComputeID))
	}
	if r := p.PendingReason; r != nil && p.Status == api.JobQueued {
		line("Pending", strings.TrimSuffix(r.Code+": "+r.Message, ": "))
	}
	if p.Status == api.JobQueued && p.EstimatedStartTime != "" {
		line("Estimated start", formatTime(p.EstimatedStartTime))
	}
	line("Compute", p.ComputeID)
	line("Node", p.NodeID)
	if p.Resources != nil && p.Resources.InstanceCount > 1 {
		line("Instances", fmt.Sprint(p.Resources.InstanceCount))
	}
	if len(p.NodeIDs) > 0 {
		nodes := make([]string, len(p.NodeIDs))
		for r, id := range p.NodeIDs {
			if id == "" {
				id = "(awaiting a replacement)"
			}
			nodes[r] = fmt.Sprintf("%d=%s", r, id)
		}
		line("Nodes", strings.Join(nodes, ", "))
	}
	if d := p.Distribution; d != nil {
		if d.DistributionType == api.DistributionTensorFlow {
			line("Distribution", fmt.Sprintf("%s, %d worker(s), %d parameter server(s)", d.DistributionType, d.WorkerCount, d.ParameterServerCount))
		} else {
			line("Distribution", fmt.Sprintf("%s, %d process(es) per instance", d.DistributionType, max(d.ProcessCountPerInstance, 1)))
		}
	}
	line("Command", p.Command)
	line("Code", p.CodeID)
	line("Environment", p.EnvironmentID)
	if len(p.Inputs) > 0 {
		var pairs []string
		for k, in := range p.Inputs {
			if in != nil {
				pairs = append(pairs, k+"="+in.Value)
			}
		}
		sort.Strings(pairs)
		line("Inputs", strings.Join(pairs, ", "))
	}
	if len(p.EnvironmentVariables) > 0 {
		line("Env", formatTags(p.EnvironmentVariables))
	}
	if p.Limits != nil {
		line("Timeout", p.Limits.Timeout)
	}
	if p.CreatedOn != "" {
		line("Created", formatTime(p.CreatedOn))
	}
	if p.StartTime != "" {
		line("Started", formatTime(p.StartTime))
		line("Duration", jobDuration(p, now))
	}
	if p.EndTime != "" {
		line("Ended", formatTime(p.EndTime))
	}
	if p.Attempts > 1 {
		line("Attempts", fmt.Sprint(p.Attempts))
	}
	if p.ExitCode != nil {
		line("Exit code", fmt.Sprint(*p.ExitCode))
	}
	if p.NodeHours > 0 {
		line("Usage", fmt.Sprintf("%.2f node-hours, %s", p.NodeHours, money(p.Cost)))
	}
	if e := p.Error; e != nil {
		line("Error", strings.TrimSuffix(e.Code+": "+e.Message, ": "))
	}
	if len(p.AttemptHistory) > 1 || (len(p.AttemptHistory) == 1 && p.AttemptHistory[0].FailureClass != "") {
		for _, a := range p.AttemptHistory {
			line(fmt.Sprintf("Attempt %d", a.Number), attemptLine(a))
		}
	}
	for _, warn := range p.Warnings {
		line("Warning", warn)
	}
	line("Description", p.Description)
	if len(p.Tags) > 0 {
		line("Tags", formatTags(p.Tags))
	}
	return tw.Flush()
}

// attemptLine says where an attempt ran, when, and how it ended:
// "node n1, 2026-03-01 12:00:01 – 2026-03-01 12:03:10, preemption:
// Preempted: node n1: …", in local time.
func attemptLine(a api.JobAttempt) string {
	where := "local"
	if len(a.NodeIDs) > 1 {
		where = "nodes " + strings.Join(a.NodeIDs, ", ")
	} else if a.NodeID != "" {
		where = "node " + a.NodeID
	}
	when := formatTime(a.StartTime) + " – "
	if a.EndTime == "" {
		return where + ", " + when + "running"
	}
	when += formatTime(a.EndTime)
	how := a.Reason
	if a.FailureClass != "" {
		how = a.FailureClass + ": " + how
	}
	if a.Message != "" {
		how += ": " + a.Message
	}
	return where + ", " + when + ", " + how
}
