package cli

import (
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
	opts := &ComputeShowOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a compute cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ctx, opts.Output = cmd.Context(), f.Output
			if runF != nil {
				return runF(opts)
			}
			return computeShowRun(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "compute name (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func computeShowRun(opts *ComputeShowOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	ct, err := ws.ComputeTarget(opts.Ctx, opts.Name)
	if err != nil {
		return err
	}
	return printComputes(opts.IO.Out, opts.Output, true, []api.ComputeResource{ct.Resource()})
}
