package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"kumo/client"
)

// Defaults that kumo login writes when no flag names the workspace.
const (
	DefaultSubscriptionID = "00000000-0000-0000-0000-000000000000"
	DefaultResourceGroup  = "default"
	DefaultWorkspaceName  = "default"
)

// LoginOptions are the inputs of kumo login.
type LoginOptions struct {
	IO *IOStreams
	// Dir is the directory that receives .kumo/config.json.
	Dir string

	Endpoint       string
	Token          string
	CAFile         string
	SubscriptionID string
	ResourceGroup  string
	WorkspaceName  string
}

// NewCmdLogin returns "kumo login". runF, when not nil, replaces the run
// function (for tests).
func NewCmdLogin(f *Factory, runF func(*LoginOptions) error) *cobra.Command {
	opts := &LoginOptions{IO: f.IO, Dir: "."}
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Save the server's address and a token in .kumo/config.json",
		Long: "Write .kumo/config.json (mode 0600) in the current directory, so that kumo\n" +
			"commands and client.FromConfig run here or below find the server.",
		Example: "  kumo login --endpoint https://127.0.0.1:8443 --token $KUMO_TOKEN --ca-file ca.pem",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return loginRun(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Endpoint, "endpoint", "", "server URL, such as https://127.0.0.1:8443 (required)")
	cmd.Flags().StringVar(&opts.Token, "token", "", "bearer token (required)")
	cmd.Flags().StringVar(&opts.CAFile, "ca-file", "", "PEM file of the CA that signed the server's certificate")
	cmd.Flags().StringVar(&opts.SubscriptionID, "subscription", DefaultSubscriptionID, "subscription ID")
	cmd.Flags().StringVarP(&opts.ResourceGroup, "resource-group", "g", DefaultResourceGroup, "resource group")
	cmd.Flags().StringVarP(&opts.WorkspaceName, "workspace", "w", DefaultWorkspaceName, "workspace name")
	_ = cmd.MarkFlagRequired("endpoint")
	_ = cmd.MarkFlagRequired("token")
	return cmd
}

func loginRun(opts *LoginOptions) error {
	cfg := client.Config{
		Endpoint:       opts.Endpoint,
		SubscriptionID: opts.SubscriptionID,
		ResourceGroup:  opts.ResourceGroup,
		WorkspaceName:  opts.WorkspaceName,
		Token:          opts.Token,
	}
	if opts.CAFile != "" {
		// The file stores paths relative to itself; store an absolute one.
		abs, err := filepath.Abs(opts.CAFile)
		if err != nil {
			return err
		}
		cfg.CAFile = abs
	}
	// New checks the endpoint and reads the CA file.
	if _, err := client.New(cfg); err != nil {
		return err
	}
	path := filepath.Join(opts.Dir, client.ConfigDir, client.ConfigFileName)
	if err := cfg.Write(path); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Wrote %s for workspace %s/%s at %s\n", path, cfg.ResourceGroup, cfg.WorkspaceName, cfg.Endpoint)
	return nil
}
