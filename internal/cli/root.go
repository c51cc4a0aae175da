package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"
)

// NewRootCmd returns the kumo command with all its client subcommands and
// the given server-side ones (see internal/servercmd), on the process's
// standard streams.
func NewRootCmd(server ...*cobra.Command) *cobra.Command {
	return newRootCmd(NewFactory(), server...)
}

// newRootCmd returns the kumo command on f's streams, with server added
// beside the client commands.
func newRootCmd(f *Factory, server ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:   "kumo",
		Short: "Self-hosted Azure ML compute targets",
		Long: "kumo runs Azure ML style compute clusters on your own machines and serves\n" +
			"an ARM-shaped API for them. These commands talk to a kumo server.\n\n" +
			"Every command that talks to a server takes -w/--workspace-name and\n" +
			"-g/--resource-group to use another workspace than the config's, and\n" +
			"-o table|json|yaml|tsv with --query (JMESPath), as az does. Results go to\n" +
			"stdout; progress and notices go to stderr.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return checkOutput(f.Output, f.Query)
		},
	}
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.PersistentFlags().StringVar(&f.ConfigPath, "config", "", "configuration file (default: .kumo/config.json or config.json here or in a parent directory)")
	root.PersistentFlags().StringVarP(&f.Output, "output", "o", OutputTable, "output format: table, json, yaml or tsv")
	root.PersistentFlags().StringVar(&f.Query, "query", "", "JMESPath query applied to the JSON output, as in az (see jmespath.org)")
	root.AddCommand(NewCmdLogin(f, nil))
	root.AddCommand(NewCmdStudio(f, nil))
	root.AddCommand(NewCmdSSHProxy(f, nil))
	for _, g := range []*cobra.Command{NewCmdWorkspace(f), NewCmdCompute(f), NewCmdJob(f), NewCmdToken(f)} {
		root.AddCommand(asGroup(f, g))
	}
	root.AddCommand(server...)
	return root
}

// asGroup makes g, a command that only holds subcommands, behave as an az
// command group: it takes -w and -g for every subcommand, prints its help
// when called alone, and fails on an unknown subcommand with suggestions
// instead of printing help and exiting 0.
func asGroup(f *Factory, g *cobra.Command) *cobra.Command {
	g.Args = cobra.ArbitraryArgs
	g.SuggestionsMinimumDistance = 2
	g.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		return unknownCommand(cmd, args[0])
	}
	g.PersistentFlags().StringVarP(&f.WorkspaceName, "workspace-name", "w", "", "workspace to use instead of the configuration's")
	g.PersistentFlags().StringVarP(&f.ResourceGroup, "resource-group", "g", "", "resource group to use instead of the configuration's")
	return g
}

// unknownCommand is the error for an unknown subcommand name of cmd, with
// the subcommands whose names are close to it, as cobra words it for the
// root command.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return fmt.Errorf("%s\n\nRun '%s --help' for usage", msg, cmd.CommandPath())
}

// Execute runs kumo with the process's arguments and returns the exit
// status: 0 on success, 1 after printing "Error: ..." to stderr. server are
// the commands that run kumo's own processes (kumo up, kumo agent...),
// added to the root command beside the client commands; cmd/kumo passes
// them so that this package need not import the server side.
func Execute(server ...*cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	f := NewFactory()
	return run(ctx, newRootCmd(f, server...), os.Args[1:], f.IO.ErrOut)
}

// run executes root with args and turns an error into exit status 1.
func run(ctx context.Context, root *cobra.Command, args []string, errOut io.Writer) int {
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		// *client.Error prints as "<Code>: <Message>". The message may
		// echo what the user typed: escape it, keeping its line breaks.
		fmt.Fprintf(errOut, "Error: %s\n", escapeText(explain(err).Error()))
		return 1
	}
	return 0
}
