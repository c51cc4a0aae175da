package cli

import (
	"bytes"
	"context"
	"io"

	"github.com/spf13/cobra"

	"kumo/api"
	"kumo/client"
)

// NewCmdWorkspace returns "kumo workspace" and its subcommands.
func NewCmdWorkspace(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workspace",
		Aliases: []string{"ws"},
		Short:   "Create, show, list and delete workspaces",
	}
	cmd.AddCommand(
		NewCmdWorkspaceCreate(f, nil),
		NewCmdWorkspaceShow(f, nil),
		NewCmdWorkspaceList(f, nil),
		NewCmdWorkspaceDelete(f, nil),
	)
	return cmd
}

// commonOptions are the fields every command that talks to the server
// shares.
type commonOptions struct {
	IO        *IOStreams
	Workspace func() (*client.Workspace, error)
	// Ctx is the command's context, set when the command runs.
	Ctx context.Context
	// Output is OutputTable or OutputJSON, set when the command runs; with
	// -o yaml, -o tsv or --query it is OutputJSON and runE renders the
	// JSON the command prints.
	Output string
}

// options returns the commonOptions of a command built from f.
func (f *Factory) options() commonOptions {
	return commonOptions{IO: f.IO, Workspace: f.Workspace}
}

func (o *commonOptions) common() *commonOptions { return o }

// runE returns the RunE of a command whose Options embed commonOptions: it
// sets the context and output format of opts, then calls runF, a test's
// stand-in, or else run.
func runE[O interface{ common() *commonOptions }](f *Factory, opts O, runF, run func(O) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c := opts.common()
		c.Ctx, c.Output = cmd.Context(), f.Output
		if runF != nil {
			run = runF
		}
		if !structured(f.Output, f.Query) {
			return run(opts)
		}
		// The command prints its JSON output into a buffer; render turns
		// it into the format asked for, after the query.
		streams := c.IO
		var buf bytes.Buffer
		c.IO = &IOStreams{In: streams.In, Out: &buf, ErrOut: streams.ErrOut}
		c.Output = OutputJSON
		err := run(opts)
		c.IO = streams
		if err != nil {
			_, _ = streams.Out.Write(buf.Bytes())
			return err
		}
		return render(streams.Out, buf.Bytes(), f.Output, f.Query)
	}
}

// namedWorkspace returns the configured workspace and name, or the
// configured workspace's own name where name is "".
func (o *commonOptions) namedWorkspace(name string) (*client.Workspace, string, error) {
	ws, err := o.Workspace()
	if err != nil {
		return nil, "", err
	}
	if name == "" {
		name = ws.Name()
	}
	return ws, name, nil
}

func printWorkspaces(w io.Writer, output string, single bool, wss []api.Workspace) error {
	if output == OutputJSON {
		if single && len(wss) == 1 {
			return printJSON(w, wss[0])
		}
		return printJSON(w, wss)
	}
	t := newTable(w, "NAME", "LOCATION", "STATE", "DESCRIPTION", "TAGS")
	for _, ws := range wss {
		var state, desc string
		if ws.Properties != nil {
			state, desc = ws.Properties.ProvisioningState, ws.Properties.Description
		}
		t.row(ws.Name, ws.Location, orDash(state), orDash(desc), orDash(formatTags(ws.Tags)))
	}
	return t.flush()
}
