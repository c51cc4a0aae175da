package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// TokenRevokeOptions are the inputs of kumo token revoke.
type TokenRevokeOptions struct {
	commonOptions
	ID string
}

// NewCmdTokenRevoke returns "kumo token revoke ID".
func NewCmdTokenRevoke(f *Factory, runF func(*TokenRevokeOptions) error) *cobra.Command {
	opts := &TokenRevokeOptions{commonOptions: f.options()}
	run := runE(f, opts, runF, tokenRevokeRun)
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			return run(cmd, args)
		},
	}
	return cmd
}

func tokenRevokeRun(opts *TokenRevokeOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	if err := ws.RevokeToken(opts.Ctx, opts.ID); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Revoked token %s\n", escapeControl(opts.ID))
	return nil
}
