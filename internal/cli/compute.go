package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"kumo/api"
)

// NewCmdCompute returns "kumo compute" and its subcommands, named as in
// "az ml compute".
func NewCmdCompute(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compute",
		Short: "Manage compute clusters (AmlCompute)",
	}
	cmd.AddCommand(
		NewCmdComputeCreate(f, nil),
		NewCmdComputeShow(f, nil),
		NewCmdComputeList(f, nil),
		NewCmdComputeUpdate(f, nil),
		NewCmdComputeDelete(f, nil),
		NewCmdComputeListNodes(f, nil),
		NewCmdComputeListSizes(f, nil),
		NewCmdComputeListUsage(f, nil),
	)
	return cmd
}

// printComputes writes computes as a table or JSON. single prints one JSON
// object rather than an array.
func printComputes(w io.Writer, output string, single bool, rs []api.ComputeResource) error {
	if output == OutputJSON {
		if single && len(rs) == 1 {
			return printJSON(w, rs[0])
		}
		return printJSON(w, rs)
	}
	t := newTable(w, "NAME", "STATE", "SIZE", "PRIORITY", "MIN", "MAX", "IDLE", "CURRENT", "TARGET", "ALLOCATION")
	for _, r := range rs {
		var state, size, prio, minN, maxN, idle, alloc = "-", "-", "-", "-", "-", "-", "-"
		var cur, target int32
		if p := r.Properties; p != nil {
			state = orDash(string(p.ProvisioningState))
			if a := p.Properties; a != nil {
				size, prio = deref(a.VMSize), deref(a.VMPriority)
				if ss := a.ScaleSettings; ss != nil {
					minN, maxN, idle = derefInt(ss.MinNodeCount), derefInt(ss.MaxNodeCount), deref(ss.NodeIdleTimeBeforeScaleDown)
				}
				cur, target, alloc = a.CurrentNodeCount, a.TargetNodeCount, orDash(string(a.AllocationState))
			}
		}
		t.row(r.Name, state, size, prio, minN, maxN, idle, cur, target, alloc)
	}
	return t.flush()
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return orDash(*s)
}

func derefInt(n *int32) string {
	if n == nil {
		return "-"
	}
	return fmt.Sprint(*n)
}
