package cli

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"kumo/api"
	"kumo/client"
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
		NewCmdComputeEvents(f, nil),
		NewCmdComputeConnectSSH(f, nil),
		NewCmdComputeSSHConfig(f, nil),
		NewCmdComputeSimulateEviction(f, nil),
	)
	return cmd
}

// withComputeName makes cmd take the compute's name as its argument or by
// -n/--name, as "az ml compute show -n NAME" and "kumo job show NAME" do,
// and store it in *name before run runs.
func withComputeName(cmd *cobra.Command, name *string, run func(*cobra.Command, []string) error) *cobra.Command {
	var flag string
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 1 && flag != "" && args[0] != flag:
			return fmt.Errorf("compute name given twice: %q and --name %q", args[0], flag)
		case len(args) == 1:
			*name = args[0]
		case flag != "":
			*name = flag
		default:
			return fmt.Errorf("a compute name is required: %s NAME (or --name NAME)", cmd.CommandPath())
		}
		return run(cmd, args)
	}
	cmd.Flags().StringVarP(&flag, "name", "n", "", "compute name (instead of the argument)")
	return cmd
}

// loadCompute returns the compute target called name in the workspace.
func (o *commonOptions) loadCompute(name string) (*client.ComputeTarget, error) {
	ws, err := o.Workspace()
	if err != nil {
		return nil, err
	}
	return ws.ComputeTarget(o.Ctx, name)
}

// printComputes writes computes as a table or JSON. single prints one JSON
// object rather than an array. The NODES column is a node-state bar (see
// nodeBar and barLegend); IDLE is in seconds, the unit the flags take;
// ALLOCATION names what blocks a cluster that cannot grow.
func printComputes(w io.Writer, output string, single bool, rs []api.ComputeResource) error {
	if output != OutputTable {
		if single && len(rs) == 1 {
			return printJSON(w, rs[0])
		}
		if rs == nil {
			rs = []api.ComputeResource{}
		}
		return printJSON(w, rs)
	}
	t := newTable(w, "NAME", "STATE", "SIZE", "PRIORITY", "MIN", "MAX", "IDLE", "NODES", "CURRENT", "TARGET", "QUEUED", "RUNNING", "ALLOCATION")
	for _, r := range rs {
		var state, size, prio, minN, maxN, idle, alloc = "-", "-", "-", "-", "-", "-", "-"
		var cur, target, queued, running int32
		bar := "-"
		if p := r.Properties; p != nil {
			state = orDash(string(p.ProvisioningState))
			if a := p.Properties; a != nil {
				size, prio = deref(a.VMSize), deref(a.VMPriority)
				var maxNodes int32
				if ss := a.ScaleSettings; ss != nil {
					minN, maxN, idle = derefInt(ss.MinNodeCount), derefInt(ss.MaxNodeCount), idleSeconds(ss.NodeIdleTimeBeforeScaleDown)
					if ss.MaxNodeCount != nil {
						maxNodes = *ss.MaxNodeCount
					}
				}
				var counts api.NodeStateCounts
				if a.NodeStateCounts != nil {
					counts = *a.NodeStateCounts
				}
				bar = nodeBar(counts, int(maxNodes))
				cur, target, alloc = a.CurrentNodeCount, a.TargetNodeCount, allocation(a)
				queued, running = a.QueuedJobCount, a.RunningJobCount
			}
		}
		t.row(r.Name, state, size, prio, minN, maxN, idle, bar, cur, target, queued, running, alloc)
	}
	return t.flush()
}

// blockingCodes are the compute error codes the autoscaler writes while a
// limit outside the cluster keeps it from growing.
var blockingCodes = []string{api.PendingCapacityExhausted, api.PendingQuotaExceeded}

// blocked returns the error that keeps the cluster from growing (host
// capacity or quota), or nil.
func blocked(a *api.AmlComputeProperties) *api.ErrorDetail {
	for _, e := range a.Errors {
		if e.Error != nil && slices.Contains(blockingCodes, e.Error.Code) {
			return e.Error
		}
	}
	return nil
}

// allocation is a cluster's allocation state, or "Blocked: CODE" when it
// cannot reach its target because of host capacity or quota: "Resizing"
// would promise nodes that are not coming.
func allocation(a *api.AmlComputeProperties) string {
	if e := blocked(a); e != nil {
		return "Blocked: " + e.Code
	}
	return orDash(string(a.AllocationState))
}

// idleSeconds writes an ISO-8601 idle time ("PT40M") in seconds
// ("2400s"), as --idle-time-before-scale-down takes it.
func idleSeconds(d *string) string {
	if d == nil || *d == "" {
		return "-"
	}
	n, err := client.ParseISODuration(*d)
	if err != nil {
		return *d
	}
	return fmt.Sprintf("%ds", n)
}

// maxBarWidth is the most characters a node-state bar spends on nodes.
const maxBarWidth = 20

// barStates are the node states of a bar, in the order it draws them,
// with their symbols; free capacity up to the maximum comes last.
var barStates = []struct {
	sym   byte
	name  string
	count func(api.NodeStateCounts) int32
}{
	{'#', "running", func(c api.NodeStateCounts) int32 { return c.RunningNodeCount }},
	{'o', "idle", func(c api.NodeStateCounts) int32 { return c.IdleNodeCount }},
	{'+', "preparing", func(c api.NodeStateCounts) int32 { return c.PreparingNodeCount }},
	{'!', "unusable", func(c api.NodeStateCounts) int32 { return c.UnusableNodeCount }},
	{'x', "preempted", func(c api.NodeStateCounts) int32 { return c.PreemptedNodeCount }},
	{'-', "leaving", func(c api.NodeStateCounts) int32 { return c.LeavingNodeCount }},
}

// barLegend explains the symbols of nodeBar.
const barLegend = "NODES: # running  o idle  + preparing  ! unusable  x preempted  - leaving  . free (up to max)"

// nodeBar draws a cluster's nodes by state, one symbol per node and a "."
// per node it may still add up to maxNodes, such as "[##o+....]". A bar
// of more than maxBarWidth nodes is scaled down to that width, each state
// with nodes keeping at least one symbol.
func nodeBar(c api.NodeStateCounts, maxNodes int) string {
	counts := make([]int, 0, len(barStates)+1)
	total := 0
	for _, s := range barStates {
		n := max(int(s.count(c)), 0)
		counts = append(counts, n)
		total += n
	}
	slots := max(maxNodes, total)
	counts = append(counts, slots-total)
	if slots > maxBarWidth {
		counts = scaleCounts(counts, maxBarWidth)
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, n := range counts {
		sym := byte('.')
		if i < len(barStates) {
			sym = barStates[i].sym
		}
		b.WriteString(strings.Repeat(string(sym), n))
	}
	b.WriteByte(']')
	return b.String()
}

// scaleCounts shares width cells among counts in proportion, by largest
// remainder, then gives each non-zero count at least one cell, taken from
// the largest. width must be at least the number of non-zero counts.
func scaleCounts(counts []int, width int) []int {
	total := 0
	for _, n := range counts {
		total += n
	}
	cells := make([]int, len(counts))
	order := make([]int, len(counts))
	used := 0
	for i, n := range counts {
		cells[i] = n * width / total
		used += cells[i]
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return counts[order[a]]*width%total > counts[order[b]]*width%total
	})
	for k := 0; used < width; k++ {
		cells[order[k%len(order)]]++
		used++
	}
	for i, n := range counts {
		if n > 0 && cells[i] == 0 {
			big := 0
			for j := range cells {
				if cells[j] > cells[big] {
					big = j
				}
			}
			cells[big]--
			cells[i] = 1
		}
	}
	return cells
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
