package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"kumo/api"
)

// ComputeListOptions are the inputs of kumo compute list.
type ComputeListOptions struct {
	commonOptions
}

// NewCmdComputeList returns "kumo compute list".
func NewCmdComputeList(f *Factory, runF func(*ComputeListOptions) error) *cobra.Command {
	opts := &ComputeListOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workspace's compute clusters",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, computeListRun),
	}
	return cmd
}

func computeListRun(opts *ComputeListOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	cts, err := ws.ComputeTargets(opts.Ctx)
	if err != nil {
		return err
	}
	rs := make([]api.ComputeResource, 0, len(cts))
	for _, ct := range cts {
		rs = append(rs, ct.Resource())
	}
	if err := printComputes(opts.IO.Out, opts.Output, false, rs); err != nil {
		return err
	}
	if opts.Output == OutputTable && len(rs) > 0 {
		fmt.Fprintln(opts.IO.ErrOut, barLegend)
	}
	return nil
}
