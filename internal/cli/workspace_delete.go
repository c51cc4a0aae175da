package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// WorkspaceDeleteOptions are the inputs of kumo workspace delete.
type WorkspaceDeleteOptions struct {
	commonOptions
	Name string
	// Yes skips the confirmation question.
	Yes bool
}

// NewCmdWorkspaceDelete returns "kumo workspace delete".
func NewCmdWorkspaceDelete(f *Factory, runF func(*WorkspaceDeleteOptions) error) *cobra.Command {
	opts := &WorkspaceDeleteOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a workspace",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, workspaceDeleteRun),
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "workspace name (required)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func workspaceDeleteRun(opts *WorkspaceDeleteOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	if !opts.Yes {
		if err := confirm(opts.IO, fmt.Sprintf("Delete workspace %q?", opts.Name)); err != nil {
			return err
		}
	}
	if err := ws.DeleteWorkspace(opts.Ctx, opts.Name); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Deleted workspace %s\n", escapeControl(opts.Name))
	return nil
}
