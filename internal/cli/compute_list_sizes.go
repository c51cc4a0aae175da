package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"kumo/api"
)

// ComputeListSizesOptions are the inputs of kumo compute list-sizes.
type ComputeListSizesOptions struct {
	commonOptions
}

// NewCmdComputeListSizes returns "kumo compute list-sizes".
func NewCmdComputeListSizes(f *Factory, runF func(*ComputeListSizesOptions) error) *cobra.Command {
	opts := &ComputeListSizesOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list-sizes",
		Short: "List the VM sizes offered in the workspace's location, with hourly prices",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, computeListSizesRun),
	}
	return cmd
}

// price returns the hourly price of size for a VM tier ("Standard" or
// "LowPriority"), or "-".
func price(size api.VMSize, tiers ...string) string {
	if size.EstimatedVMPrices == nil {
		return "-"
	}
	for _, p := range size.EstimatedVMPrices.Values {
		for _, t := range tiers {
			if p.VMTier == t {
				return fmt.Sprintf("%.3f", p.RetailPrice)
			}
		}
	}
	return "-"
}

func computeListSizesRun(opts *ComputeListSizesOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	sizes, err := ws.VMSizes(opts.Ctx)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		return printJSON(opts.IO.Out, sizes)
	}
	t := newTable(opts.IO.Out, "NAME", "TYPE", "VCPUS", "MEMORY GB", "GPUS", "FAMILY", "DEDICATED $/H", "LOW PRIORITY $/H")
	for _, s := range sizes {
		kind := "CPU"
		if s.GPUs > 0 {
			kind = "GPU"
		}
		t.row(s.Name, kind, s.VCPUs, fmt.Sprintf("%g", s.MemoryGB), s.GPUs, s.Family,
			price(s, "Standard", "Dedicated"), price(s, "LowPriority", "Low Priority", "Spot"))
	}
	return t.flush()
}
