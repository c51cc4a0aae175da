package cli

import (
	"github.com/spf13/cobra"
)

// ComputeListUsageOptions are the inputs of kumo compute list-usage.
type ComputeListUsageOptions struct {
	commonOptions
}

// NewCmdComputeListUsage returns "kumo compute list-usage".
func NewCmdComputeListUsage(f *Factory, runF func(*ComputeListUsageOptions) error) *cobra.Command {
	opts := &ComputeListUsageOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list-usage",
		Short: "List vCPU usage against quota in the workspace's location",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, computeListUsageRun),
	}
	return cmd
}

func computeListUsageRun(opts *ComputeListUsageOptions) error {
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
	t := newTable(opts.IO.Out, "NAME", "CURRENT", "LIMIT", "UNIT")
	for _, u := range usages {
		name := u.Name.LocalizedValue
		if name == "" {
			name = u.Name.Value
		}
		t.row(name, u.CurrentValue, u.Limit, u.Unit)
	}
	return t.flush()
}
