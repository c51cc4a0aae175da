package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// ComputeListUsageOptions are the inputs of kumo compute list-usage.
type ComputeListUsageOptions struct {
	commonOptions
	Cost     bool   // report costs instead of quota usage
	From, To string // the cost report's range, RFC 3339; "" means the server's defaults
}

// NewCmdComputeListUsage returns "kumo compute list-usage".
func NewCmdComputeListUsage(f *Factory, runF func(*ComputeListUsageOptions) error) *cobra.Command {
	opts := &ComputeListUsageOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list-usage",
		Short: "List vCPU usage against the workspace's quotas and the host's capacity",
		Long: "List the vCPUs the workspace's nodes use against its quotas (per VM family,\n" +
			"and one for low priority), then what all nodes of the region use of the host's\n" +
			"capacity (vCPUs after --cpu-overcommit, memory, GPUs). A cluster grows only\n" +
			"while both its quota and the host have room.\n\n" +
			"With --cost, report instead what the workspace's nodes cost between --from and\n" +
			"--to (default: the last 30 days), per compute and per job, at the catalog\n" +
			"prices of their sizes and priorities.",
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, computeListUsageRun),
	}
	cmd.Flags().BoolVar(&opts.Cost, "cost", false, "report cost per compute and per job instead of quota usage")
	cmd.Flags().StringVar(&opts.From, "from", "", "start of the cost report, e.g. 2026-03-01T00:00:00Z (default: 30 days before --to)")
	cmd.Flags().StringVar(&opts.To, "to", "", "end of the cost report (default: now)")
	return cmd
}

func computeListCostRun(opts *ComputeListUsageOptions) error {
	var from, to time.Time
	for _, f := range []struct {
		name, v string
		t       *time.Time
	}{{"--from", opts.From, &from}, {"--to", opts.To, &to}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.v)
		if err != nil {
			return fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-03-01T00:00:00Z", f.name, f.v)
		}
		*f.t = t
	}
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	rep, err := ws.Costs(opts.Ctx, from, to)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		return printJSON(opts.IO.Out, rep)
	}
	fmt.Fprintf(opts.IO.Out, "Cost from %s to %s: %s (%s, catalog prices)\n", formatTime(rep.From), formatTime(rep.To), money(rep.Total), rep.Currency)
	t := newTable(opts.IO.Out, "COMPUTE", "NODE-HOURS", "COST")
	for _, c := range rep.Computes {
		t.row(c.Name, fmt.Sprintf("%.2f", c.NodeHours), money(c.Cost))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(rep.Jobs) == 0 {
		return nil
	}
	fmt.Fprintln(opts.IO.Out)
	t = newTable(opts.IO.Out, "JOB", "COMPUTE", "NODE-HOURS", "COST")
	for _, j := range rep.Jobs {
		t.row(j.Name, j.Compute, fmt.Sprintf("%.2f", j.NodeHours), money(j.Cost))
	}
	return t.flush()
}

func computeListUsageRun(opts *ComputeListUsageOptions) error {
	if opts.Cost {
		return computeListCostRun(opts)
	}
	if opts.From != "" || opts.To != "" {
		return fmt.Errorf("--from and --to go with --cost")
	}
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	usages, err := ws.Usages(opts.Ctx)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		return printJSON(opts.IO.Out, usages)
	}
	t := newTable(opts.IO.Out, "NAME", "CURRENT", "LIMIT", "UNIT", "KIND")
	for _, u := range usages {
		name := u.Name.LocalizedValue
		if name == "" {
			name = u.Name.Value
		}
		kind := "quota"
		if strings.HasPrefix(u.Name.Value, "host") {
			kind = "host capacity"
		}
		t.row(name, u.CurrentValue, u.Limit, u.Unit, kind)
	}
	return t.flush()
}
