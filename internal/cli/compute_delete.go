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
	opts := &ComputeDeleteOptions{commonOptions: f.options()}
	cmd := withComputeName(&cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a compute cluster and its nodes, and wait until it is gone",
	}, &opts.Name, runE(f, opts, runF, computeDeleteRun))
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func computeDeleteRun(opts *ComputeDeleteOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if errors.Is(err, client.ErrComputeTargetNotFound) {
		fmt.Fprintf(opts.IO.ErrOut, "Compute %s does not exist\n", escapeControl(opts.Name))
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
	fmt.Fprintf(opts.IO.ErrOut, "Deleted compute %s\n", escapeControl(opts.Name))
	return nil
}
