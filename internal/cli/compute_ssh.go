package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"kumo/api"
	"kumo/client"
)

// ComputeConnectSSHOptions are the inputs of kumo compute connect-ssh.
type ComputeConnectSSHOptions struct {
	commonOptions
	Name           string
	NodeID         string // "" means the first node that serves SSH
	PrivateKeyFile string // "" means ssh's own choice
	Command        []string
	// ConfigPath is the value of --config, handed to the ProxyCommand.
	ConfigPath string
	// SSH is the ssh program; "" means "ssh" on PATH.
	SSH string
}

// NewCmdComputeConnectSSH returns "kumo compute connect-ssh", as in az ml.
func NewCmdComputeConnectSSH(f *Factory, runF func(*ComputeConnectSSHOptions) error) *cobra.Command {
	opts := &ComputeConnectSSHOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "connect-ssh --name COMPUTE [--node-id NODE] [--private-key-file-path FILE] [-- COMMAND...]",
		Short: "Log in to a node over SSH, through the control plane",
		Long: `Log in to a node of a compute cluster with the system's ssh, as the cluster's
administrator, through a tunnel the control plane opens to the node (so nodes
need no reachable address). The node's host key is checked against the one
kumo publishes. Arguments after -- are run on the node instead of a shell, and
their exit status is connect-ssh's.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Command = args
			opts.ConfigPath = f.ConfigPath
			return runE(f, opts, runF, computeConnectSSHRun)(cmd, args)
		},
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "compute name (required)")
	cmd.Flags().StringVar(&opts.NodeID, "node-id", "", "the node to log in to (default: the first that serves SSH)")
	cmd.Flags().StringVar(&opts.PrivateKeyFile, "private-key-file-path", "", "private key for the cluster's admin public key (default: ssh's own keys, then the password)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// sshTarget is what ssh needs to reach one node.
type sshTarget struct {
	alias   string // HostKeyAlias, and the Host name
	node    api.NodeInformation
	user    string
	command []string // ProxyCommand argv
}

// sshTargets returns the nodes of ct that publish a host key, with what
// ssh needs for each.
func sshTargets(o *commonOptions, ct *client.ComputeTarget, configPath string) ([]sshTarget, error) {
	res := ct.Resource()
	user := ""
	if p := res.Properties; p != nil && p.Properties != nil && p.Properties.UserAccountCredentials != nil &&
		p.Properties.UserAccountCredentials.AdminUserName != nil {
		user = *p.Properties.UserAccountCredentials.AdminUserName
	}
	if user == "" {
		return nil, fmt.Errorf("compute %q has no administrator account: SSH login is not enabled", ct.Name())
	}
	nodes, err := ct.ListNodes(o.Ctx)
	if err != nil {
		return nil, err
	}
	ws, err := o.Workspace()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	base := []string{exe}
	if path, err := client.FindConfig(configPath); err == nil {
		if abs, err := filepath.Abs(path); err == nil {
			base = append(base, "--config", abs)
		}
	}
	var out []sshTarget
	for _, n := range nodes {
		if n.SSHHostKey == "" || n.NodeState == api.NodeLeaving || n.NodeState == api.NodeUnusable || n.NodeState == api.NodePreempted {
			continue
		}
		argv := append(append([]string{}, base...), "ssh-proxy", "-w", ws.Name(), "-g", ws.ResourceGroup(),
			"--name", ct.Name(), "--node-id", n.NodeID)
		out = append(out, sshTarget{alias: "kumo-" + ct.Name() + "-" + n.NodeID, node: n, user: user, command: argv})
	}
	return out, nil
}

// proxyCommand renders argv for ssh's ProxyCommand: shell-quoted, with
// ssh's % tokens escaped.
func proxyCommand(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = strings.ReplaceAll(shellQuote(a), "%", "%%")
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@,+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// exitError ends kumo with its status, printing nothing: connect-ssh
// passes on ssh's.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func computeConnectSSHRun(opts *ComputeConnectSSHOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	targets, err := sshTargets(&opts.commonOptions, ct, opts.ConfigPath)
	if err != nil {
		return err
	}
	var t *sshTarget
	for i := range targets {
		if opts.NodeID == "" || targets[i].node.NodeID == opts.NodeID {
			t = &targets[i]
			break
		}
	}
	if t == nil {
		if opts.NodeID != "" {
			return fmt.Errorf("node %q of compute %q is not serving SSH (see kumo compute list-nodes %s)", opts.NodeID, opts.Name, opts.Name)
		}
		return fmt.Errorf("no node of compute %q serves SSH yet (see kumo compute list-nodes %s)", opts.Name, opts.Name)
	}
	dir, err := os.MkdirTemp("", "kumo-ssh-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(t.alias+" "+t.node.SSHHostKey+"\n"), 0o600); err != nil {
		return err
	}
	args := []string{
		"-o", "ProxyCommand=" + proxyCommand(t.command),
		"-o", "HostKeyAlias=" + t.alias,
		"-o", "UserKnownHostsFile=" + known,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "CheckHostIP=no",
		"-l", t.user,
	}
	if opts.PrivateKeyFile != "" {
		args = append(args, "-i", opts.PrivateKeyFile, "-o", "IdentitiesOnly=yes")
	}
	args = append(args, t.alias)
	if len(opts.Command) > 0 {
		args = append(append(args, "--"), opts.Command...)
	}
	prog := opts.SSH
	if prog == "" {
		prog = "ssh"
	}
	cmd := exec.CommandContext(opts.Ctx, prog, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.IO.In, opts.IO.Out, opts.IO.ErrOut
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("run ssh: %w", err)
	}
	return nil
}

// ComputeSSHConfigOptions are the inputs of kumo compute ssh-config.
type ComputeSSHConfigOptions struct {
	commonOptions
	Name           string
	KnownHostsFile string // "" prints the known-hosts lines as comments
	ConfigPath     string
}

// NewCmdComputeSSHConfig returns "kumo compute ssh-config".
func NewCmdComputeSSHConfig(f *Factory, runF func(*ComputeSSHConfigOptions) error) *cobra.Command {
	opts := &ComputeSSHConfigOptions{commonOptions: f.options()}
	cmd := withComputeName(&cobra.Command{
		Use:   "ssh-config NAME",
		Short: "Print ~/.ssh/config entries for a cluster's nodes",
		Long: `Print a Host entry for each node of a cluster that serves SSH, for
~/.ssh/config: "ssh NAME-0" (or NAME-<node ID>) then logs in through the
control plane, and so do scp, sftp and VS Code Remote-SSH. Each entry names
the node's published host key by HostKeyAlias; with --known-hosts-file the
known-hosts lines are written there and the entries use it, otherwise they
are printed as comments to add to ~/.ssh/known_hosts.`,
	}, &opts.Name, func(cmd *cobra.Command, args []string) error {
		opts.ConfigPath = f.ConfigPath
		return runE(f, opts, runF, computeSSHConfigRun)(cmd, args)
	})
	cmd.Flags().StringVar(&opts.KnownHostsFile, "known-hosts-file", "", "write the nodes' known-hosts lines to this file and point the entries at it")
	return cmd
}

func computeSSHConfigRun(opts *ComputeSSHConfigOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	targets, err := sshTargets(&opts.commonOptions, ct, opts.ConfigPath)
	if err != nil {
		return err
	}
	var known strings.Builder
	for _, t := range targets {
		fmt.Fprintf(&known, "%s %s\n", t.alias, t.node.SSHHostKey)
	}
	knownPath := ""
	if opts.KnownHostsFile != "" {
		if knownPath, err = filepath.Abs(opts.KnownHostsFile); err != nil {
			return err
		}
		if err := os.WriteFile(knownPath, []byte(known.String()), 0o600); err != nil {
			return err
		}
	}
	w := opts.IO.Out
	fmt.Fprintf(w, "# kumo compute %s: %d node(s) serving SSH\n", opts.Name, len(targets))
	for i, t := range targets {
		fmt.Fprintf(w, "Host %s-%d %s-%s\n", opts.Name, i, opts.Name, t.node.NodeID)
		fmt.Fprintf(w, "  User %s\n", t.user)
		fmt.Fprintf(w, "  HostKeyAlias %s\n", t.alias)
		fmt.Fprintf(w, "  ProxyCommand %s\n", proxyCommand(t.command))
		if knownPath != "" {
			fmt.Fprintf(w, "  UserKnownHostsFile %s\n", shellQuote(knownPath))
			fmt.Fprintf(w, "  StrictHostKeyChecking yes\n")
		}
		fmt.Fprintf(w, "  # host key %s\n", t.node.SSHHostKeyFingerprint)
	}
	if knownPath == "" && known.Len() > 0 {
		fmt.Fprintln(w, "# known-hosts lines (add them to ~/.ssh/known_hosts):")
		for line := range strings.Lines(known.String()) {
			fmt.Fprintf(w, "# %s", line)
		}
	}
	return nil
}
