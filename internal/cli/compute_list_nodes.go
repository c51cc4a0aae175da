package cli

import (
	"github.com/spf13/cobra"
)

// ComputeListNodesOptions are the inputs of kumo compute list-nodes.
type ComputeListNodesOptions struct {
	commonOptions
	Name string
}

// NewCmdComputeListNodes returns "kumo compute list-nodes".
func NewCmdComputeListNodes(f *Factory, runF func(*ComputeListNodesOptions) error) *cobra.Command {
	opts := &ComputeListNodesOptions{commonOptions: f.options()}
	cmd := withComputeName(&cobra.Command{
		Use:   "list-nodes NAME",
		Short: "List a compute cluster's nodes",
	}, &opts.Name, runE(f, opts, runF, computeListNodesRun))
	return cmd
}

func computeListNodesRun(opts *ComputeListNodesOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	nodes, err := ct.ListNodes(opts.Ctx)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		return printJSON(opts.IO.Out, nodes)
	}
	t := newTable(opts.IO.Out, "NODE ID", "STATE", "PRIVATE IP", "PUBLIC IP", "PORT", "RUN ID", "SSH HOST KEY", "NOTE")
	for _, n := range nodes {
		run := "-"
		if n.RunID != nil {
			run = orDash(*n.RunID)
		}
		note := n.Reason
		if note == "" {
			note = n.Note
		}
		t.row(n.NodeID, n.NodeState, orDash(n.PrivateIPAddress), orDash(n.PublicIPAddress), n.Port, run, orDash(n.SSHHostKeyFingerprint), orDash(note))
	}
	return t.flush()
}
