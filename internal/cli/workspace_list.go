package cli

import (
	"github.com/spf13/cobra"
)

// WorkspaceListOptions are the inputs of kumo workspace list.
type WorkspaceListOptions struct {
	commonOptions
	// All lists the workspaces of every resource group of the subscription.
	All bool
}

// NewCmdWorkspaceList returns "kumo workspace list".
func NewCmdWorkspaceList(f *Factory, runF func(*WorkspaceListOptions) error) *cobra.Command {
	opts := &WorkspaceListOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workspaces of the resource group",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, workspaceListRun),
	}
	cmd.Flags().BoolVar(&opts.All, "all", false, "list the workspaces of every resource group of the subscription")
	return cmd
}

func workspaceListRun(opts *WorkspaceListOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	list := ws.ListWorkspaces
	if opts.All {
		list = ws.ListSubscriptionWorkspaces
	}
	wss, err := list(opts.Ctx)
	if err != nil {
		return err
	}
	return printWorkspaces(opts.IO.Out, opts.Output, false, wss)
}
