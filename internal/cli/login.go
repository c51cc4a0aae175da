package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

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
	// Ctx is the command's context, set when the command runs.
	Ctx context.Context
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
		Short: "Check a server's address, CA and token, then save them in .kumo/config.json",
		Long: "Read the workspace once with the given endpoint, CA and token; when that\n" +
			"works, write .kumo/config.json (mode 0600) in the current directory, so that\n" +
			"kumo commands and client.FromConfig run here or below find the server.\n" +
			"Nothing is written when the check fails. Plain http:// is refused except on\n" +
			"a loopback address. kumo up writes the CA that signed its certificate to\n" +
			".kumo/ca.pem beside its own config: copy it and pass it with --ca-file.",
		Example: "  kumo login --endpoint https://127.0.0.1:8443 --token $KUMO_TOKEN --ca-file ca.pem",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Ctx = cmd.Context()
			if runF != nil {
				return runF(opts)
			}
			return loginRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Endpoint, "endpoint", "", "server URL, such as https://127.0.0.1:8443 (required)")
	fl.StringVar(&opts.Token, "token", "", "bearer token (required)")
	fl.StringVar(&opts.CAFile, "ca-file", "", "PEM file of the CA that signed the server's certificate (kumo up writes .kumo/ca.pem)")
	fl.StringVar(&opts.SubscriptionID, "subscription", DefaultSubscriptionID, "subscription ID")
	fl.StringVarP(&opts.ResourceGroup, "resource-group", "g", DefaultResourceGroup, "resource group")
	fl.StringVarP(&opts.WorkspaceName, "workspace-name", "w", DefaultWorkspaceName, "workspace name")
	// --workspace was the flag's first name; keep it working.
	fl.StringVar(&opts.WorkspaceName, "workspace", DefaultWorkspaceName, "workspace name")
	_ = fl.MarkHidden("workspace")
	_ = cmd.MarkFlagRequired("endpoint")
	_ = cmd.MarkFlagRequired("token")
	return cmd
}

func loginRun(opts *LoginOptions) error {
	if err := checkEndpoint(opts.Endpoint); err != nil {
		return err
	}
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
	ws, err := client.New(cfg)
	if err != nil {
		return err
	}
	// One request checks the address, the CA, the token and the
	// workspace's name together.
	ctx, cancel := context.WithTimeout(opts.Ctx, loginTimeout)
	defer cancel()
	got, err := ws.Get(ctx)
	if err != nil {
		return fmt.Errorf("check %s (nothing written): %w", cfg.Endpoint, explain(err))
	}
	path := filepath.Join(opts.Dir, client.ConfigDir, client.ConfigFileName)
	if err := cfg.Write(path); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Logged in to %s: workspace %s/%s in %s. Wrote %s\n",
		cfg.Endpoint, cfg.ResourceGroup, escapeControl(got.Name), escapeControl(got.Location), path)
	return nil
}

// loginTimeout bounds kumo login's check request.
const loginTimeout = 30 * time.Second

// checkEndpoint refuses an endpoint that would send the token in clear
// text over the network: http:// is allowed only to a loopback address.
func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("--endpoint %q is not an https:// URL such as https://127.0.0.1:8443", endpoint)
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return nil
	}
	return fmt.Errorf("--endpoint %q is plain http to another machine: the token would cross the network in clear text; use https://", endpoint)
}

// explain adds what to do to errors a user cannot act on as they stand,
// such as a server certificate signed by a CA the client does not know.
func explain(err error) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w\n\nThe server's certificate is signed by a certificate authority this client does not trust.\n"+
			"kumo up writes its CA to .kumo/ca.pem beside the config it creates; copy that file and pass it:\n"+
			"\tkumo login --endpoint URL --token TOKEN --ca-file ca.pem\n"+
			"or set \"ca_file\" in .kumo/config.json", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w\n\nThe server's certificate does not name the host in the endpoint: use a name or address it lists", err)
	}
	return err
}
