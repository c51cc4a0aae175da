package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
)

// NewRootCmd returns the kumo command with all its subcommands, on the
// process's standard streams.
func NewRootCmd() *cobra.Command {
	return newRootCmd(NewFactory())
}

func newRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "kumo",
		Short: "Self-hosted Azure ML compute targets",
		Long: "kumo runs Azure ML style compute clusters on your own machines and serves\n" +
			"an ARM-shaped API for them. These commands talk to a kumo server.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if f.Output != OutputTable && f.Output != OutputJSON {
				return fmt.Errorf("--output must be %s or %s, not %q", OutputTable, OutputJSON, f.Output)
			}
			return nil
		},
	}
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.PersistentFlags().StringVar(&f.ConfigPath, "config", "", "configuration file (default: .kumo/config.json or config.json here or in a parent directory)")
	root.PersistentFlags().StringVarP(&f.Output, "output", "o", OutputTable, "output format: table or json")
	root.AddCommand(
		NewCmdLogin(f, nil),
		NewCmdWorkspace(f),
		NewCmdCompute(f),
		NewCmdJob(f),
		NewCmdToken(f),
	)
	addServerCommands(root)
	return root
}

// Execute runs kumo with the process's arguments and returns the exit
// status: 0 on success, 1 after printing "Error: ..." to stderr.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	f := NewFactory()
	return run(ctx, newRootCmd(f), os.Args[1:], f.IO.ErrOut)
}

// run executes root with args and turns an error into exit status 1.
func run(ctx context.Context, root *cobra.Command, args []string, errOut io.Writer) int {
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		// *client.Error prints as "<Code>: <Message>".
		fmt.Fprintf(errOut, "Error: %s\n", err)
		return 1
	}
	return 0
}
