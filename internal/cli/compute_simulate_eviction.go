package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// ComputeSimulateEvictionOptions are the inputs of kumo compute
// simulate-eviction.
type ComputeSimulateEvictionOptions struct {
	commonOptions
	Name   string
	NodeID string // "" means every node of the cluster
}

// NewCmdComputeSimulateEviction returns "kumo compute simulate-eviction".
func NewCmdComputeSimulateEviction(f *Factory, runF func(*ComputeSimulateEvictionOptions) error) *cobra.Command {
	opts := &ComputeSimulateEvictionOptions{commonOptions: f.options()}
	cmd := withComputeName(&cobra.Command{
		Use:   "simulate-eviction --name NAME [--node-id ID]",
		Short: "Evict a LowPriority cluster's nodes, as a provider takes spot VMs, to rehearse",
		Long: "Evict a LowPriority cluster's nodes, or one of them, as a cloud provider takes spot VMs away\n" +
			"(named after az vm simulate-eviction). Each job on them gets SIGTERM with a notice file\n" +
			"($KUMO_EVICTION_NOTICE_FILE) saying how long it has, SIGKILL after the region's lead time,\n" +
			"and is requeued; the nodes are replaced. A Dedicated cluster's nodes are never evicted.",
	}, &opts.Name, runE(f, opts, runF, computeSimulateEvictionRun))
	cmd.Flags().StringVar(&opts.NodeID, "node-id", "", "evict only this node (see kumo compute list-nodes)")
	return cmd
}

func computeSimulateEvictionRun(opts *ComputeSimulateEvictionOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	ids, err := ct.SimulateEviction(opts.Ctx, opts.NodeID)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		if ids == nil {
			ids = []string{}
		}
		return printJSON(opts.IO.Out, map[string][]string{"nodeIds": ids})
	}
	if len(ids) == 0 {
		_, err = fmt.Fprintf(opts.IO.Out, "compute %s has no node to evict\n", opts.Name)
		return err
	}
	_, err = fmt.Fprintf(opts.IO.Out, "evicting %s\n", strings.Join(ids, ", "))
	return err
}
