package cli

import (
	"github.com/spf13/cobra"

	"kumo/api"
)

// WorkspaceCreateOptions are the inputs of kumo workspace create.
type WorkspaceCreateOptions struct {
	commonOptions
	// Name is the workspace to create; "" means the configured one.
	Name        string
	Location    string
	Description string
	Tags        []string
}

// NewCmdWorkspaceCreate returns "kumo workspace create".
func NewCmdWorkspaceCreate(f *Factory, runF func(*WorkspaceCreateOptions) error) *cobra.Command {
	opts := &WorkspaceCreateOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create or update a workspace",
		Example: "  kumo workspace create --name ws1 --location local --description 'team ML' --tags team=ml",
		Args:    cobra.NoArgs,
		RunE:    runE(f, opts, runF, workspaceCreateRun),
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "workspace name (default: the configured workspace)")
	cmd.Flags().StringVarP(&opts.Location, "location", "l", "local", "location")
	cmd.Flags().StringVar(&opts.Description, "description", "", "description")
	cmd.Flags().StringSliceVar(&opts.Tags, "tags", nil, "tags as key=value (repeat or separate with commas)")
	return cmd
}

func workspaceCreateRun(opts *WorkspaceCreateOptions) error {
	tags, err := parseTags(opts.Tags)
	if err != nil {
		return err
	}
	ws, name, err := opts.namedWorkspace(opts.Name)
	if err != nil {
		return err
	}
	body := api.Workspace{
		Location:   opts.Location,
		Tags:       tags,
		Properties: &api.WorkspaceProperties{Description: opts.Description},
	}
	created, err := ws.CreateWorkspace(opts.Ctx, name, body)
	if err != nil {
		return err
	}
	return printWorkspaces(opts.IO.Out, opts.Output, true, []api.Workspace{*created})
}
