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
	opts := &ComputeListOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workspace's compute clusters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ctx, opts.Output = cmd.Context(), f.Output
			if runF != nil {
				return runF(opts)
			}
			return computeListRun(opts)
		},
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
