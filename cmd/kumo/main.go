// Command kumo is the kumo command line: it runs the server ("kumo up") and
// drives workspaces, compute targets and tokens through the public SDK.
package main

import (
	"os"

	"kumo/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
