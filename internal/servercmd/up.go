package servercmd

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"kumo/internal/archive"
	"kumo/internal/daemon"
	"kumo/internal/jobuser"
)

// upOptions are the flags of kumo up.
type upOptions struct {
	daemon.Options
	pollMS       int
	cpuProfile   string
	jobUIDs      string
	localCompute string
	// Limits of uploads, in MiB and entries.
	snapshotMiB, artifactMiB int64
	snapshotFiles            int
}

func newCmdUp() *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the kumo control plane in the foreground",
		Long: `Run the kumo control plane in the foreground until Ctrl-C.

On first start kumo creates its data directory (a SQLite database and a
self-signed certificate authority), a default workspace in region "local",
and an owner API token, which it prints once. It writes a client config to
.kumo/config.json in the current directory unless one exists, so that the
kumo CLI and the Go SDK find the server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Out = cmd.OutOrStdout()
			o.PollInterval = time.Duration(o.pollMS) * time.Millisecond
			switch o.localCompute {
			case "on":
			case "off":
				o.LocalComputeOff = true
			default:
				return fmt.Errorf("--local-compute %q: want on or off", o.localCompute)
			}
			r, err := jobuser.ParseRange(o.jobUIDs)
			if err != nil {
				return fmt.Errorf("--job-uid-range: %w", err)
			}
			o.JobUIDs = r
			o.SnapshotLimits = archive.Limits{MaxBytes: o.snapshotMiB << 20, MaxEntries: o.snapshotFiles}
			o.ArtifactLimits = archive.Limits{MaxBytes: o.artifactMiB << 20}
			if o.cpuProfile != "" {
				f, err := os.Create(o.cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if o.Database == "" {
				o.Database = os.Getenv(daemon.EnvDatabaseURL)
			}
			// The URL may hold a password: no child process (node agent,
			// job) inherits it.
			os.Unsetenv(daemon.EnvDatabaseURL)
			return daemon.Run(ctx, o.Options)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", "127.0.0.1:8443", "address to listen on, HOST:PORT")
	f.StringVar(&o.DataDir, "data-dir", ".kumo-data", "directory for the database and certificates")
	f.StringVar(&o.Database, "database", "", "PostgreSQL URL (postgres://USER:PASSWORD@HOST/DB) to keep the state in instead of the SQLite file in the data directory (default: $"+daemon.EnvDatabaseURL+", else SQLite)")
	f.StringVar(&o.WorkDir, "work-dir", "", `directory for the jobs' working directories, outside the data directory (default: the data directory's path with "-jobs" appended)`)
	f.StringVar(&o.jobUIDs, "job-uid-range", jobuser.DefaultRange.String(), "uids jobs run as, START-END, when kumo runs as root: one per cluster node and one per running job of compute local")
	f.StringVar(&o.localCompute, "local-compute", "on", `"off" refuses jobs on the built-in compute local, which runs them on this host`)
	f.StringVar(&o.FilesDir, "files-dir", "", "directory for code snapshots, job logs and artifacts; replicas of one control plane share one on shared storage (default: files in the data directory)")
	f.StringVar(&o.Replica, "replica", "", "name of this replica among those sharing the database (default: host name, pid and a random suffix)")
	f.StringVar(&o.AdvertiseURL, "advertise-url", "", "URL other replicas reach this one at, https://HOST:PORT (default: the listen address; 127.0.0.1 for a wildcard bind)")
	f.StringSliceVar(&o.AgentURLs, "agent-url", nil, "control-plane URL given to node agents, tried in turn; repeat it or separate with commas for every replica, or give a load balancer's (default: this replica's own URL)")
	f.StringVar(&o.TLS, "tls", daemon.TLSAuto, `"auto" serves HTTPS with a self-signed certificate kept in the data directory; "off" serves plain HTTP (loopback only)`)
	f.StringVar(&o.CertFile, "tls-cert", "", "PEM certificate to serve instead of the self-signed one")
	f.StringVar(&o.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&o.RegionsFile, "regions", "", "YAML file of the regions served and their node providers (see docs/providers.md); region local is served unless the file defines it")
	f.Float64Var(&o.CPUOvercommit, "cpu-overcommit", daemon.DefaultCPUOvercommit, "node vCPUs offered per host core in region local")
	f.Float64Var(&o.MemoryOvercommit, "memory-overcommit", daemon.DefaultMemoryOvercommit, "node memory offered per byte of host memory in region local")
	f.IntVar(&o.pollMS, "poll-interval-ms", 500, "Retry-After-Ms sent to clients polling long-running operations")
	f.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the control plane to this file (for performance work)")
	_ = f.MarkHidden("cpu-profile")
	f.DurationVar(&o.HeartbeatInterval, "heartbeat-interval", 5*time.Second, "how often node agents report")
	f.DurationVar(&o.HeartbeatTimeout, "heartbeat-timeout", 30*time.Second, "how long a silent node stays usable before it is replaced")
	f.DurationVar(&o.BootTimeout, "boot-timeout", 2*time.Minute, "how long a new node may take to register")
	f.Int64Var(&o.MaxJobLogBytes, "max-job-log-bytes", daemon.DefaultMaxJobLogBytes, "bytes of stdout and stderr together kept per job, on the control plane and on its node; later output is cut and the job warned (-1: no limit)")
	f.DurationVar(&o.SnapshotGrace, "snapshot-grace", daemon.DefaultSnapshotGrace, "how long an uploaded code snapshot that no unfinished job uses is kept before it is removed")
	f.DurationVar(&o.EvictionLead, "eviction-lead-time", 30*time.Second, "how long before an evicted LowPriority node of a local-provider region is taken its job gets notice (SIGTERM and $KUMO_EVICTION_NOTICE_FILE)")
	f.DurationVar(&o.MeanTimeBetweenEvictions, "eviction-mean-interval", 0, "evict a random LowPriority node of each local-provider region this often on average, to rehearse (0: only with kumo compute simulate-eviction)")
	f.Float64Var(&o.Limits.RateLimit, "rate-limit", 0, "requests per second each API token may make on average (0: 1000; negative: no limit)")
	f.IntVar(&o.Limits.RateBurst, "rate-burst", 0, "requests an API token may make at once (0: 2000)")
	f.IntVar(&o.Limits.MaxUnauthConnsPerAddr, "max-unauth-conns-per-addr", 0, "connections one client IP may hold before authenticating; past it the oldest is closed (0: 128)")
	f.Int64Var(&o.snapshotMiB, "snapshot-limit-mib", archive.DefaultLimits.MaxBytes>>20, "largest code snapshot accepted, in MiB of file content")
	f.IntVar(&o.snapshotFiles, "snapshot-limit-files", archive.DefaultLimits.MaxEntries, "most files and directories a code snapshot may hold")
	f.Int64Var(&o.artifactMiB, "artifact-limit-mib", archive.ArtifactLimits.MaxBytes>>20, "largest artifacts (outputs/ and logs/) of one job accepted, in MiB")
	return cmd
}
