package cli

import (
	"strings"

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
		Short: "List vCPU usage against the workspace's quotas and the host's capacity",
		Long: "List the vCPUs the workspace's nodes use against its quotas (per VM family,\n" +
			"and one for low priority), then what all nodes of the region use of the host's\n" +
			"capacity (vCPUs after --cpu-overcommit, memory, GPUs). A cluster grows only\n" +
			"while both its quota and the host have room.",
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, computeListUsageRun),
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
