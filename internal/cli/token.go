package cli

import (
	"github.com/spf13/cobra"
)

// NewCmdToken returns "kumo token" and its subcommands.
func NewCmdToken(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens (needs an owner token)",
	}
	cmd.AddCommand(
		NewCmdTokenCreate(f, nil),
		NewCmdTokenList(f, nil),
		NewCmdTokenRevoke(f, nil),
	)
	return cmd
}
