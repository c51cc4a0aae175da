package servercmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"kumo/internal/agent"
	"kumo/internal/agent/sshd"
	"kumo/internal/jobuser"
)

// agentOptions are the flags of kumo agent.
type agentOptions struct {
	nodeID, workDir, url, caFile, credentialFile string
	jobUID                                       string
	heartbeat                                    time.Duration
}

func newCmdAgent() *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent in the foreground",
		Long: `Run a node agent in the foreground until SIGINT or SIGTERM.

The agent connects out to the control plane at --url with the node credential
read from --credential-file, registers as --node-id, and runs the jobs the
control plane sends it in --work-dir. Node providers start it; you rarely run
it by hand.

Without --credential-file, the credential is read from $KUMO_AGENT_CREDENTIAL;
without --ca-file, PEM certificates in $KUMO_AGENT_CA are trusted (written to
ca.pem in --work-dir). The Kubernetes provider passes both from the node's
Secret this way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The agent waits on processes and sockets; one P keeps many
			// agents on one host from spinning schedulers against each
			// other and the jobs. GOMAXPROCS in the environment wins.
			if os.Getenv("GOMAXPROCS") == "" {
				runtime.GOMAXPROCS(1)
			}
			cred, err := o.credential()
			if err != nil {
				return err
			}
			if err := o.caFromEnv(); err != nil {
				return err
			}
			var user *jobuser.User
			if o.jobUID != "" {
				uid, err := strconv.Atoi(o.jobUID)
				if err != nil || uid < 1000 || uid > 1<<31-2 {
					return fmt.Errorf("--job-uid %q: want a uid of at least 1000", o.jobUID)
				}
				if !jobuser.Enabled() {
					return errors.New("--job-uid needs the agent to run as root")
				}
				user = &jobuser.User{UID: uid, GID: uid}
			}
			// What kumo adds to every job: the node's GPUs, when it has a
			// say; nothing else of the agent's environment reaches jobs.
			var jobEnv map[string]string
			if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
				jobEnv = map[string]string{"CUDA_VISIBLE_DEVICES": v}
			}
			var helper []string
			if exe, err := os.Executable(); err == nil {
				helper = []string{exe, "ssh-helper"}
			}
			return agent.Run(ctx, agent.Config{
				SSHHelper:         helper,
				NodeID:            o.nodeID,
				WorkDir:           o.workDir,
				URL:               o.url,
				CAFile:            o.caFile,
				Credential:        strings.TrimSpace(string(cred)),
				JobUser:           user,
				JobEnv:            jobEnv,
				HeartbeatInterval: o.heartbeat,
				Log:               slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.nodeID, "node-id", "", "this node's ID (required)")
	f.StringVar(&o.workDir, "work-dir", "", "directory for job files (required)")
	f.StringVar(&o.url, "url", "", "control plane URL, e.g. https://10.0.0.1:8443, or several separated by commas (one per replica: tried in turn) (required)")
	f.StringVar(&o.caFile, "ca-file", "", "PEM certificates to trust for --url (default: the system's)")
	f.StringVar(&o.credentialFile, "credential-file", "", "file holding the node credential (required unless $KUMO_AGENT_CREDENTIAL is set)")
	f.StringVar(&o.jobUID, "job-uid", "", "run jobs as this uid (and the gid of the same number), with no supplementary groups; needs root (default: the agent's own user)")
	f.DurationVar(&o.heartbeat, "heartbeat-interval", 0, "heartbeat interval when the server does not set one (default 5s)")
	for _, name := range []string{"node-id", "work-dir", "url"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// credential reads the node credential from --credential-file, else from
// $KUMO_AGENT_CREDENTIAL.
func (o *agentOptions) credential() ([]byte, error) {
	if o.credentialFile == "" {
		if v := os.Getenv("KUMO_AGENT_CREDENTIAL"); v != "" {
			return []byte(v), nil
		}
		return nil, errors.New("no credential: give --credential-file or set KUMO_AGENT_CREDENTIAL")
	}
	cred, err := os.ReadFile(o.credentialFile)
	if err != nil {
		return nil, fmt.Errorf("read credential: %w", err)
	}
	return cred, nil
}

// caFromEnv writes $KUMO_AGENT_CA to <work-dir>/ca.pem and uses it when
// --ca-file is not given.
func (o *agentOptions) caFromEnv() error {
	pem := os.Getenv("KUMO_AGENT_CA")
	if o.caFile != "" || pem == "" {
		return nil
	}
	if err := os.MkdirAll(o.workDir, 0o711); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	path := filepath.Join(o.workDir, "ca.pem")
	if err := os.WriteFile(path, []byte(pem), 0o600); err != nil {
		return fmt.Errorf("write CA: %w", err)
	}
	o.caFile = path
	return nil
}

// newCmdSSHHelper returns "kumo ssh-helper", which the agent's SSH server
// runs as the node's job user to serve sftp or dial a port forward.
func newCmdSSHHelper() *cobra.Command {
	return &cobra.Command{
		Use:    "ssh-helper sftp | dial HOST:PORT",
		Short:  "Serve sftp or a port forward for a node's SSH session (the agent runs it)",
		Hidden: true,
		Args:   cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sshd.RunHelper(args, os.Stdin, os.Stdout)
		},
	}
}
