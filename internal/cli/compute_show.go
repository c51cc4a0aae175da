package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"kumo/api"
)

// ComputeShowOptions are the inputs of kumo compute show.
type ComputeShowOptions struct {
	commonOptions
	Name string
}

// NewCmdComputeShow returns "kumo compute show".
func NewCmdComputeShow(f *Factory, runF func(*ComputeShowOptions) error) *cobra.Command {
	opts := &ComputeShowOptions{commonOptions: f.options()}
	cmd := withComputeName(&cobra.Command{
		Use:   "show NAME",
		Short: "Show a compute cluster",
	}, &opts.Name, runE(f, opts, runF, computeShowRun))
	return cmd
}

func computeShowRun(opts *ComputeShowOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	if opts.Output != OutputTable {
		return printComputes(opts.IO.Out, opts.Output, true, []api.ComputeResource{ct.Resource()})
	}
	return printComputeDetail(opts.IO.Out, ct.Resource())
}

// printComputeDetail writes one compute as "Key: value" lines: settings,
// then availability (allocation, nodes by state, jobs, and why each
// queued job waits), then errors.
func printComputeDetail(w io.Writer, r api.ComputeResource) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(key, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", key, fmt.Sprintf(format, args...))
	}
	line("Name", "%s", escapeControl(r.Name))
	p := r.Properties
	if p == nil {
		p = &api.ComputeProperties{}
	}
	line("State", "%s", orDash(string(p.ProvisioningState)))
	a := p.Properties
	if a == nil {
		a = &api.AmlComputeProperties{}
	}
	line("Size", "%s (%s)", deref(a.VMSize), deref(a.VMPriority))
	var maxNodes int32
	if ss := a.ScaleSettings; ss != nil {
		line("Scale", "min %s, max %s, idle time before scale down %s",
			derefInt(ss.MinNodeCount), derefInt(ss.MaxNodeCount), idleSeconds(ss.NodeIdleTimeBeforeScaleDown))
		if ss.MaxNodeCount != nil {
			maxNodes = *ss.MaxNodeCount
		}
	}
	alloc := orDash(string(a.AllocationState))
	if a.AllocationStateTransitionTime != "" {
		alloc += " since " + formatTime(a.AllocationStateTransitionTime)
	}
	if e := blocked(a); e != nil {
		alloc += "; blocked by " + e.Code + ": " + escapeControl(e.Message)
	}
	line("Allocation", "%s", alloc)
	var c api.NodeStateCounts
	if a.NodeStateCounts != nil {
		c = *a.NodeStateCounts
	}
	line("Nodes", "%s %d current, %d target", nodeBar(c, int(maxNodes)), a.CurrentNodeCount, a.TargetNodeCount)
	line("Node states", "%d running, %d idle, %d preparing, %d unusable, %d preempted, %d leaving",
		c.RunningNodeCount, c.IdleNodeCount, c.PreparingNodeCount, c.UnusableNodeCount, c.PreemptedNodeCount, c.LeavingNodeCount)
	line("Jobs", "%d queued, %d running", a.QueuedJobCount, a.RunningJobCount)
	if cost := a.Cost; cost != nil {
		line("Cost", "%s/h now, %s so far (%s, catalog prices)", money(cost.PerHour), money(cost.SoFar), cost.Currency)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(a.QueuedJobs) > 0 {
		fmt.Fprintln(w, "Queued jobs:")
		t := newTable(w, "  JOB", "REASON", "MESSAGE")
		for _, q := range a.QueuedJobs {
			code, msg := "-", "-"
			if q.PendingReason != nil {
				code, msg = orDash(q.PendingReason.Code), orDash(q.PendingReason.Message)
			}
			t.row("  "+q.Name, code, msg)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	errs := append(append([]api.ErrorResponse(nil), a.Errors...), p.ProvisioningErrors...)
	if len(errs) > 0 {
		fmt.Fprintln(w, "Errors:")
		for _, e := range errs {
			if e.Error != nil {
				fmt.Fprintf(w, "  %s: %s\n", escapeControl(e.Error.Code), escapeControl(e.Error.Message))
			}
		}
	}
	return nil
}
