package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"kumo/client"
)

// ComputeDeleteOptions are the inputs of kumo compute delete.
type ComputeDeleteOptions struct {
	commonOptions
	Name string
	// Yes skips the confirmation question.
	Yes bool
}

// NewCmdComputeDelete returns "kumo compute delete".
func NewCmdComputeDelete(f *Factory, runF func(*ComputeDeleteOptions) error) *cobra.Command {
	opts := &ComputeDeleteOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a compute cluster and its nodes, and wait until it is gone",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ctx, opts.Output = cmd.Context(), f.Output
			if runF != nil {
				return runF(opts)
			}
			return computeDeleteRun(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "compute name (required)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func computeDeleteRun(opts *ComputeDeleteOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	ct, err := ws.ComputeTarget(opts.Ctx, opts.Name)
	if errors.Is(err, client.ErrComputeTargetNotFound) {
		fmt.Fprintf(opts.IO.ErrOut, "Compute %s does not exist\n", opts.Name)
		return nil
	}
	if err != nil {
		return err
	}
	if !opts.Yes {
		if err := confirm(opts.IO, fmt.Sprintf("Delete compute %q and all its nodes?", opts.Name)); err != nil {
			return err
		}
	}
	if err := ct.Delete(opts.Ctx); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Deleted compute %s\n", opts.Name)
	return nil
}
