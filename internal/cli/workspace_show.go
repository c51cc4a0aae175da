package cli

import (
	"github.com/spf13/cobra"

	"kumo/api"
)

// WorkspaceShowOptions are the inputs of kumo workspace show.
type WorkspaceShowOptions struct {
	commonOptions
	// Name is the workspace to show; "" means the configured one.
	Name string
}

// NewCmdWorkspaceShow returns "kumo workspace show".
func NewCmdWorkspaceShow(f *Factory, runF func(*WorkspaceShowOptions) error) *cobra.Command {
	opts := &WorkspaceShowOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a workspace",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, workspaceShowRun),
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "workspace name (default: the configured workspace)")
	return cmd
}

func workspaceShowRun(opts *WorkspaceShowOptions) error {
	ws, name, err := opts.namedWorkspace(opts.Name)
	if err != nil {
		return err
	}
	got, err := ws.GetWorkspace(opts.Ctx, name)
	if err != nil {
		return err
	}
	return printWorkspaces(opts.IO.Out, opts.Output, true, []api.Workspace{*got})
}
