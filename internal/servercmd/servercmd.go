package servercmd

import "github.com/spf13/cobra"

// Commands returns new instances of the server-side commands, to be added
// to the kumo root command. Each call returns fresh commands with their
// own flag values.
func Commands() []*cobra.Command {
	return []*cobra.Command{newCmdUp(), newCmdAgent(), newCmdSSHHelper(), newCmdAdmin()}
}
