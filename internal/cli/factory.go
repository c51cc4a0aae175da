package cli

import (
	"bytes"
	"io"
	"os"

	"kumo/client"
)

// IOStreams are the streams a command reads and writes.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer // results: tables, JSON, secrets, progress
	ErrOut io.Writer // errors, prompts and notices
}

// SystemIO returns the process's standard streams.
func SystemIO() *IOStreams {
	return &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
}

// TestIO returns streams backed by buffers: stdin, stdout and stderr.
func TestIO() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// Output formats for -o/--output.
const (
	OutputTable = "table" // the command's own columns, for people
	OutputJSON  = "json"  // the API's ARM-shaped resources, indented
	OutputYAML  = "yaml"  // the JSON output as YAML, keys in the same order
	OutputTSV   = "tsv"   // tab-separated values, as az writes them
)

// Factory holds what every command needs: streams, the values of the global
// flags, and a way to reach the workspace.
type Factory struct {
	IO *IOStreams
	// ConfigPath is the value of --config; "" searches from the current
	// directory (client.FromConfig(".")).
	ConfigPath string
	// Output is the value of -o/--output: OutputTable, OutputJSON,
	// OutputYAML or OutputTSV.
	Output string
	// Query is the value of --query, a JMESPath expression applied to the
	// JSON output; "" applies none.
	Query string
	// WorkspaceName and ResourceGroup are the values of -w/--workspace-name
	// and -g/--resource-group; "" keeps the configuration's.
	WorkspaceName string
	ResourceGroup string
	// Workspace returns the workspace the configuration names, with the
	// flags' overrides. Tests replace it to point at an httptest server.
	Workspace func() (*client.Workspace, error)
}

// NewFactory returns a Factory on the standard streams whose Workspace
// reads the configuration file named by --config, or found from ".", and
// applies -w and -g to it.
func NewFactory() *Factory {
	f := &Factory{IO: SystemIO(), Output: OutputTable}
	f.Workspace = func() (*client.Workspace, error) {
		path, err := client.FindConfig(f.ConfigPath)
		if err != nil {
			return nil, err
		}
		cfg, err := client.LoadConfig(path)
		if err != nil {
			return nil, err
		}
		if f.WorkspaceName != "" {
			cfg.WorkspaceName = f.WorkspaceName
		}
		if f.ResourceGroup != "" {
			cfg.ResourceGroup = f.ResourceGroup
		}
		return client.New(cfg)
	}
	return f
}
