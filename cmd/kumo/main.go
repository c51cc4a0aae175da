// Command kumo is the kumo command line: it runs the server ("kumo up") and
// drives workspaces, compute targets and tokens through the public SDK.
// It wires the client commands of internal/cli with the server-side ones
// of internal/servercmd.
package main

import (
	"os"

	"kumo/internal/cli"
	"kumo/internal/servercmd"
)

func main() { os.Exit(cli.Execute(servercmd.Commands()...)) }
