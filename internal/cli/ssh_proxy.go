package cli

import (
	"errors"
	"io"
	"sync"

	"github.com/spf13/cobra"
)

// SSHProxyOptions are the inputs of kumo ssh-proxy.
type SSHProxyOptions struct {
	commonOptions
	Name   string
	NodeID string
}

// NewCmdSSHProxy returns "kumo ssh-proxy", the ProxyCommand that
// connect-ssh and ssh-config give ssh: it opens a tunnel to a node's SSH
// server through the control plane and copies stdin to it and it to
// stdout.
func NewCmdSSHProxy(f *Factory, runF func(*SSHProxyOptions) error) *cobra.Command {
	opts := &SSHProxyOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "ssh-proxy --name COMPUTE --node-id NODE",
		Short: "Tunnel stdin and stdout to a node's SSH server (an ssh ProxyCommand)",
		Long: `Tunnel stdin and stdout to a node's SSH server through the control plane.

ssh runs it as its ProxyCommand: "kumo compute connect-ssh" and the entries of
"kumo compute ssh-config" set it up. It needs a token of role contributor or
higher.`,
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, sshProxyRun),
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "compute name (required)")
	cmd.Flags().StringVar(&opts.NodeID, "node-id", "", "the node's ID, as list-nodes shows it (required)")
	cmd.Flags().StringVarP(&f.WorkspaceName, "workspace-name", "w", "", "workspace to use instead of the configuration's")
	cmd.Flags().StringVarP(&f.ResourceGroup, "resource-group", "g", "", "resource group to use instead of the configuration's")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("node-id")
	return cmd
}

func sshProxyRun(opts *SSHProxyOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	tun, err := ct.DialSSH(opts.Ctx, opts.NodeID)
	if err != nil {
		return err
	}
	defer tun.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(tun, opts.IO.In)
		if cw, ok := tun.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	})
	_, err = io.Copy(opts.IO.Out, tun)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	// The node closed the connection: ssh is done with us, whether or not
	// it closed our stdin.
	return nil
}
