package cli

import (
	"errors"

	"github.com/spf13/cobra"

	"kumo/api"
)

// ComputeUpdateOptions are the inputs of kumo compute update. A nil field
// keeps the cluster's current value.
type ComputeUpdateOptions struct {
	commonOptions
	Name                    string
	MinInstances            *int
	MaxInstances            *int
	IdleTimeBeforeScaleDown *int // seconds
}

// NewCmdComputeUpdate returns "kumo compute update".
func NewCmdComputeUpdate(f *Factory, runF func(*ComputeUpdateOptions) error) *cobra.Command {
	opts := &ComputeUpdateOptions{commonOptions: f.options()}
	var minN, maxN, idle int
	run := runE(f, opts, runF, computeUpdateRun)
	cmd := withComputeName(&cobra.Command{
		Use:     "update NAME",
		Short:   "Change a compute cluster's scale settings",
		Example: "  kumo compute update cpu-cluster --min-instances 1 --max-instances 8",
	}, &opts.Name, func(cmd *cobra.Command, args []string) error {
		fl := cmd.Flags()
		if fl.Changed("min-instances") {
			opts.MinInstances = &minN
		}
		if fl.Changed("max-instances") {
			opts.MaxInstances = &maxN
		}
		if fl.Changed("idle-time-before-scale-down") {
			opts.IdleTimeBeforeScaleDown = &idle
		}
		return run(cmd, args)
	})
	cmd.Flags().IntVar(&minN, "min-instances", 0, "minimum number of nodes")
	cmd.Flags().IntVar(&maxN, "max-instances", 0, "maximum number of nodes")
	cmd.Flags().IntVar(&idle, "idle-time-before-scale-down", 0, "seconds a node sits idle before it is removed")
	return cmd
}

func computeUpdateRun(opts *ComputeUpdateOptions) error {
	if opts.MinInstances == nil && opts.MaxInstances == nil && opts.IdleTimeBeforeScaleDown == nil {
		return errors.New("nothing to update: give --min-instances, --max-instances or --idle-time-before-scale-down")
	}
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	if err := ct.Update(opts.Ctx, opts.MinInstances, opts.MaxInstances, opts.IdleTimeBeforeScaleDown); err != nil {
		return err
	}
	return printComputes(opts.IO.Out, opts.Output, true, []api.ComputeResource{ct.Resource()})
}
