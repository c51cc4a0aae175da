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
	opts := &WorkspaceShowOptions{commonOptions: commonOptions{IO: f.IO, Workspace: f.Workspace}}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a workspace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ctx, opts.Output = cmd.Context(), f.Output
			if runF != nil {
				return runF(opts)
			}
			return workspaceShowRun(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "workspace name (default: the configured workspace)")
	return cmd
}

func workspaceShowRun(opts *WorkspaceShowOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	name := opts.Name
	if name == "" {
		name = ws.Name()
	}
	got, err := ws.GetWorkspace(opts.Ctx, name)
	if err != nil {
		return err
	}
	return printWorkspaces(opts.IO.Out, opts.Output, true, []api.Workspace{*got})
}
