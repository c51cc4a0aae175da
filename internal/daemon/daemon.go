// Package daemon runs kumo's control plane in one process: it opens the
// store in the data directory (applying migrations), bootstraps the default
// workspace and owner token on first start, prepares TLS, writes the client
// config, serves the HTTP API, and runs the reconcile loops until its
// context ends.
//
// The data directory (mode 0700, its files 0600) holds every secret: the
// database, the CA key, node credentials. Jobs never run in it: their
// working directories are under the work directory (Options.WorkDir, mode
// 0711), nodes/<id>/ for cluster nodes and local/ for compute "local". When
// kumo runs as root, jobs run as uids of their own (see package jobuser),
// which cannot enter the data directory at all.
package daemon

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"kumo/client"
	"kumo/internal/archive"
	"kumo/internal/controller/snapshotgc"
	"kumo/internal/jobfiles"
	"kumo/internal/jobuser"
	"kumo/internal/model"
	"kumo/internal/server"
	"kumo/internal/server/connlimit"
	"kumo/internal/store"
	"kumo/internal/studio"
)

// The default workspace that a fresh control plane creates.
const (
	DefaultSubscription  = "00000000-0000-0000-0000-000000000000"
	DefaultResourceGroup = "default"
	DefaultWorkspace     = "default"
	DefaultRegion        = "local"
)

// TLS modes.
const (
	TLSAuto = "auto" // generate and keep a self-signed CA and server certificate
	TLSOff  = "off"  // plain HTTP; only allowed on loopback addresses
)

// Options configures Run.
type Options struct {
	Addr    string // listen address, HOST:PORT; "" means 127.0.0.1:8443
	DataDir string // holds the database and certificates; "" means ./.kumo-data
	// Database is a PostgreSQL URL (postgres://...) to keep the store in
	// instead of the SQLite file in DataDir; "" means SQLite. The data
	// directory still holds the CA, the certificates and the lock.
	Database string
	// FilesDir holds code snapshots, job logs and artifacts; "" means the
	// folder files in DataDir. Replicas of one control plane share one
	// (on shared storage), as any of them may serve a job's files.
	FilesDir string
	// Replica names this control plane among the replicas that share its
	// database (in the controller lease and node presence); "" means the
	// host name, the pid and a random suffix.
	Replica string
	// AdvertiseURL is the URL other replicas reach this one at (to relay
	// SSH streams) and kumo admin leader shows; "" means the listen
	// address (127.0.0.1 for a wildcard bind).
	AdvertiseURL string
	// AgentURLs are the control-plane URLs node agents are given, tried
	// in turn: every replica's, or a load balancer's. None means this
	// replica's own URL.
	AgentURLs []string
	// WorkDir holds the jobs' working directories; "" means DataDir with
	// "-jobs" appended. It must not be inside DataDir.
	WorkDir string
	// JobUIDs are the uids jobs run as when kumo runs as root; the zero
	// Range means jobuser.DefaultRange. Ignored when kumo is not root.
	JobUIDs jobuser.Range
	// LocalComputeOff disables the built-in compute "local": jobs
	// submitted to it are refused.
	LocalComputeOff bool
	// TLS is TLSAuto, TLSOff, or "" for TLSAuto. CertFile and KeyFile,
	// when both set, are served instead of a self-signed certificate.
	TLS      string
	CertFile string
	KeyFile  string
	// ConfigDir is where .kumo/config.json is written unless it exists;
	// "" means the working directory; "-" means write none.
	ConfigDir string
	// CPUOvercommit multiplies the host's cores to bound the vCPUs of the
	// sizes region local offers; zero means DefaultCPUOvercommit.
	CPUOvercommit float64
	// MemoryOvercommit multiplies the host's memory likewise; zero means
	// DefaultMemoryOvercommit.
	MemoryOvercommit float64
	// RegionsFile is a regions document (see LoadRegions) naming the
	// regions served and their providers; "" means region local only.
	// Region local is served in any case, with the settings above, unless
	// the file defines it.
	RegionsFile string
	// PollInterval is the Retry-After-Ms sent on long-running operations.
	PollInterval time.Duration
	// HeartbeatInterval is how often node agents report; zero means 5s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long a silent node stays usable; zero means
	// 30s.
	HeartbeatTimeout time.Duration
	// BootTimeout is how long a new node may take to register; zero means
	// 2m.
	BootTimeout time.Duration
	// MaxJobLogBytes is how many bytes of stdout and stderr together a
	// job's log keeps, on the control plane and on its node; the rest is
	// cut and the job warned. Zero means DefaultMaxJobLogBytes; negative
	// means no limit.
	MaxJobLogBytes int64
	// SnapshotGrace is how long an uploaded code snapshot that no
	// unfinished job uses is kept; zero means DefaultSnapshotGrace.
	SnapshotGrace time.Duration
	// EvictionLead is how long before an evicted LowPriority node of
	// a local-provider region is taken its job gets notice (SIGTERM and the notice
	// file); zero means 30s.
	EvictionLead time.Duration
	// MeanTimeBetweenEvictions, if set, makes each local-provider region evict a random
	// LowPriority node this long apart on average; zero means only on
	// request (kumo compute simulate-eviction).
	MeanTimeBetweenEvictions time.Duration
	// SnapshotLimits bound an uploaded code snapshot; zero fields mean
	// archive.DefaultLimits'. A snapshot over them is refused with 413.
	SnapshotLimits archive.Limits
	// ArtifactLimits bound the artifacts of one job; zero fields mean
	// archive.ArtifactLimits'.
	ArtifactLimits archive.Limits
	// Out receives the messages meant for the person who started kumo.
	Out io.Writer
	// Log receives operational logs; nil means slog.Default().
	Log *slog.Logger
	// Ready, if not nil, is called with the base URL once the API serves.
	Ready func(baseURL string)
	// Limits bounds the API listener's connections and requests; zero
	// fields take the defaults documented on Limits.
	Limits Limits
}

// DefaultMaxJobLogBytes is the per-job log limit when Options leave it
// zero: 256 MiB of stdout and stderr together.
const DefaultMaxJobLogBytes = jobfiles.DefaultLogLimit

// DefaultSnapshotGrace is how long an unused code snapshot is kept when
// Options leave it zero.
const DefaultSnapshotGrace = snapshotgc.DefaultGrace

// DefaultCPUOvercommit is how many vCPUs of node sizes region local offers
// per host core: nodes share cores, as jobs rarely keep every vCPU busy.
const DefaultCPUOvercommit = 4.0

// DefaultMemoryOvercommit is how much node memory region local offers per
// byte of host memory: none beyond the host's, as memory cannot be shared
// the way cores are.
const DefaultMemoryOvercommit = 1.0

// Run starts the control plane and blocks until ctx ends, then shuts down
// cleanly: it stops accepting requests, lets running ones finish, stops the
// reconcile loops and closes the store.
func Run(ctx context.Context, o Options) error {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8443"
	}
	if o.DataDir == "" {
		o.DataDir = ".kumo-data"
	}
	// Node agents run in their own directories; every path handed to them
	// must be absolute.
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("data directory %q: %w", o.DataDir, err)
	}
	o.DataDir = dataDir
	if o.WorkDir == "" {
		o.WorkDir = defaultWorkDir(dataDir)
	}
	if o.WorkDir, err = filepath.Abs(o.WorkDir); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	if within(o.DataDir, o.WorkDir) {
		return fmt.Errorf("work directory %s is inside the data directory %s: jobs must not reach the data directory", o.WorkDir, o.DataDir)
	}
	if o.FilesDir == "" {
		o.FilesDir = filepath.Join(o.DataDir, "files")
	}
	if o.FilesDir, err = filepath.Abs(o.FilesDir); err != nil {
		return fmt.Errorf("files directory: %w", err)
	}
	if within(o.WorkDir, o.FilesDir) {
		return fmt.Errorf("files directory %s is inside the work directory %s: jobs must not reach other jobs' files", o.FilesDir, o.WorkDir)
	}
	if o.Replica == "" {
		o.Replica = defaultReplica()
	}
	if o.AdvertiseURL != "" {
		if u, err := url.Parse(o.AdvertiseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--advertise-url %q: want https://HOST:PORT", o.AdvertiseURL)
		}
	}
	if o.JobUIDs == (jobuser.Range{}) {
		o.JobUIDs = jobuser.DefaultRange
	}
	if err := o.JobUIDs.Check(); err != nil {
		return err
	}
	if o.TLS == "" {
		o.TLS = TLSAuto
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", o.Addr, err)
	}
	useTLS := o.TLS != TLSOff || (o.CertFile != "" && o.KeyFile != "")
	if o.TLS != TLSOff && o.TLS != TLSAuto {
		return fmt.Errorf("--tls %q is invalid: use %q or %q", o.TLS, TLSAuto, TLSOff)
	}
	if o.EvictionLead < 0 || o.MeanTimeBetweenEvictions < 0 {
		return fmt.Errorf("--eviction-lead-time and --eviction-mean-interval must not be negative")
	}
	if !useTLS && !isLoopback(host) {
		return fmt.Errorf("refusing to serve plain HTTP on %s: bearer tokens would cross the network unencrypted; use TLS (--tls auto, or --tls-cert and --tls-key) or listen on 127.0.0.1", o.Addr)
	}
	if o.RegionsFile != "" {
		// A bad file stops kumo before it touches anything.
		if _, err := LoadRegions(o.RegionsFile); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	lock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer lock.release()
	lim := o.Limits.withDefaults(raiseNofile())
	if err := makeWorkDir(o.WorkDir); err != nil {
		return err
	}
	if err := secureDataDir(o.DataDir); err != nil {
		return err
	}
	reportDataDir(o.Out, o.DataDir, o.WorkDir)
	st, err := openStore(ctx, o, o.Out)
	if err != nil {
		return err
	}
	defer st.Close()

	now := time.Now()
	wsID := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.MachineLearningServices/workspaces/%s", DefaultSubscription, DefaultResourceGroup, DefaultWorkspace)
	owner, err := server.Bootstrap(ctx, st, model.Workspace{ID: wsID, Subscription: DefaultSubscription, ResourceGroup: DefaultResourceGroup,
		Name: DefaultWorkspace, Location: DefaultRegion, Description: "default workspace"}, now)
	if err != nil {
		return err
	}

	var tlsCfg *tls.Config
	var caPEM []byte
	if useTLS {
		var cert tls.Certificate
		if o.CertFile != "" && o.KeyFile != "" {
			cert, err = tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		} else {
			hosts := certHosts(host)
			if u, err := url.Parse(o.AdvertiseURL); err == nil && u.Hostname() != "" && !slices.Contains(hosts, u.Hostname()) {
				hosts = append(hosts, u.Hostname()) // other replicas verify it
			}
			cert, caPEM, err = selfSigned(o.DataDir, hosts, now)
		}
		if err != nil {
			return fmt.Errorf("prepare TLS: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	tcp, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The connection caps apply below TLS, so that a handshake never
	// finished holds a place like any other unauthenticated connection.
	var ln net.Listener = connlimit.Wrap(tcp, connlimit.Config{PerAddr: lim.MaxUnauthConnsPerAddr,
		Unauthenticated: lim.MaxUnauthConns, Total: lim.MaxConns})
	scheme := "http"
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	base := scheme + "://" + clientHost(ln.Addr().String(), host)
	if err := lock.describe("serving on " + base); err != nil {
		ln.Close()
		return err
	}

	cpuOver := o.CPUOvercommit
	if cpuOver <= 0 {
		cpuOver = DefaultCPUOvercommit
	}
	if o.MemoryOvercommit <= 0 {
		o.MemoryOvercommit = DefaultMemoryOvercommit
	}
	o.CPUOvercommit = cpuOver
	advertise := base
	if o.AdvertiseURL != "" {
		advertise = o.AdvertiseURL
	}
	rt, err := newRuntime(o, st, base, advertise)
	if err != nil {
		ln.Close()
		return err
	}
	srv := server.New(server.Config{Store: st, Regions: rt.regions, Hosts: rt.hostReporters(), Provisioner: rt, PollInterval: o.PollInterval, Log: o.Log,
		Files: rt.files, Changed: rt.changed, Agents: rt.hub.Routes(), Tunnel: rt.hub, LocalDisabled: o.LocalComputeOff,
		RateLimit: lim.RateLimit, RateBurst: lim.RateBurst, TransferTimeout: lim.TransferTimeout, Evicter: rt})
	pages := studio.New(studio.Config{API: srv, Subscription: DefaultSubscription, ResourceGroup: DefaultResourceGroup,
		Workspace: DefaultWorkspace, Location: DefaultRegion, Log: o.Log})
	srv.Handle(studio.Prefix, pages)
	srv.Handle(studio.Prefix+"/", pages)
	// Requests run under serveCtx, which ends when shutdown starts, so
	// that long-lived ones (log followers) end instead of holding it up.
	serveCtx, endRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer endRequests()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: lim.ReadHeaderTimeout, ReadTimeout: lim.ReadTimeout,
		WriteTimeout: lim.WriteTimeout, IdleTimeout: lim.IdleTimeout, MaxHeaderBytes: lim.MaxHeaderBytes,
		ErrorLog:    slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return serveCtx }, ConnContext: connlimit.ConnContext}

	if owner != nil {
		fmt.Fprintf(o.Out, "Created the owner API token (shown only once; kumo keeps only its hash):\n  %s\n", owner.Secret)
	}
	if o.ConfigDir != "-" {
		if err := writeClientConfig(ctx, o, st, base, owner, caPEM, now); err != nil {
			ln.Close()
			return err
		}
	}

	if err := secureDataDir(o.DataDir); err != nil {
		ln.Close()
		return err
	}
	printIsolation(o)
	if o.RegionsFile != "" {
		printRegions(o.Out, rt.regions)
	}

	if err := rt.startReplica(ctx); err != nil {
		ln.Close()
		return err
	}
	defer rt.stop()
	leading, err := rt.runLeadership(ctx, advertise)
	if err != nil {
		ln.Close()
		return err
	}
	defer leading.stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	fmt.Fprintf(o.Out, "kumo control plane serving on %s (data in %s)\n", base, o.DataDir)
	fmt.Fprintf(o.Out, "Studio (web UI): %s%s/ (sign in with an API token; 'kumo studio' opens it)\n", base, studio.Prefix)
	if o.Ready != nil {
		o.Ready(base)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	endRequests()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	fmt.Fprintln(o.Out, "kumo stopped")
	return nil
}

// writeClientConfig writes .kumo/config.json (and the CA beside it) in
// o.ConfigDir unless a config is already there. When the owner token was
// not just created, a new owner token is made for the config: whoever can
// start kumo on this data directory already holds its database.
func writeClientConfig(ctx context.Context, o Options, st store.Store, base string, owner *server.NewToken, caPEM []byte, now time.Time) error {
	dir := o.ConfigDir
	if dir == "" {
		dir = "."
	}
	kdir := filepath.Join(dir, ".kumo")
	path := filepath.Join(kdir, "config.json")
	if _, err := os.Stat(path); err == nil {
		fmt.Fprintf(o.Out, "Client config %s exists; left unchanged\n", path)
		return nil
	}
	if owner == nil {
		t, err := server.CreateOwnerToken(ctx, st, "owner ("+path+")", now)
		if err != nil {
			return err
		}
		owner = &t
	}
	cfg := client.Config{Endpoint: base, SubscriptionID: DefaultSubscription, ResourceGroup: DefaultResourceGroup,
		WorkspaceName: DefaultWorkspace, Token: owner.Secret}
	if caPEM != nil {
		if err := os.MkdirAll(kdir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", kdir, err)
		}
		if err := os.WriteFile(filepath.Join(kdir, "ca.pem"), caPEM, 0o644); err != nil {
			return fmt.Errorf("write CA for clients: %w", err)
		}
		cfg.CAFile = "ca.pem"
	}
	if err := cfg.Write(path); err != nil {
		return fmt.Errorf("write client config: %w", err)
	}
	fmt.Fprintf(o.Out, "Wrote client config %s (mode 0600)\n", path)
	return nil
}

// defaultWorkDir is the work directory used when none is given: beside
// the data directory (its path plus "-jobs"), unless jobs run as users of
// their own and cannot pass through the directories above it (a checkout
// in root's home, say); then a directory of kumo's own under /var/lib,
// named for the data directory so two control planes never share one.
func defaultWorkDir(dataDir string) string {
	dir := dataDir + "-jobs"
	if !jobuser.Enabled() || jobuser.CheckReachable(filepath.Dir(dir)) == nil {
		return dir
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join("/var/lib/kumo", "jobs-"+hex.EncodeToString(sum[:6]))
}

// makeWorkDir creates the work directory, mode 0711: jobs pass through it
// to their own directories but cannot list it. When jobs run as their own
// users, every directory above it must let them pass.
func makeWorkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	if jobuser.Enabled() {
		if err := jobuser.CheckReachable(dir); err != nil {
			return fmt.Errorf("work directory: %w (--work-dir)", err)
		}
	}
	return nil
}

// secureDataDir makes the data directory mode 0700 and what it holds at
// its top level 0600 (files) or 0700 (directories), for data directories
// made before kumo set these modes.
func secureDataDir(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	for _, e := range ents {
		mode := os.FileMode(0o600)
		switch {
		case e.IsDir():
			mode = 0o700
		case !e.Type().IsRegular():
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Mode().Perm() == mode {
			continue
		}
		if err := os.Chmod(filepath.Join(dir, e.Name()), mode); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	return nil
}

// printIsolation tells the person who started kumo how jobs are kept from
// kumo and each other, and what running a job on compute "local" means.
func printIsolation(o Options) {
	if jobuser.Enabled() {
		fmt.Fprintf(o.Out, "Jobs run as unprivileged users of their own (uids %s, no supplementary groups) in %s, with a clean environment; they cannot read the data directory, credentials or other jobs' files\n", o.JobUIDs, o.WorkDir)
	} else {
		fmt.Fprintf(o.Out, "WARNING: kumo is not running as root, so jobs run as your user (uid %d) and can read every file you can, including the data directory %s and .kumo/config.json with its token. They get only a clean environment and their own directory in %s. Run kumo as root to give jobs users of their own.\n", os.Getuid(), o.DataDir, o.WorkDir)
	}
	if o.LocalComputeOff {
		fmt.Fprintln(o.Out, `Compute "local" is disabled (--local-compute=off): jobs submitted to it are refused`)
	} else {
		fmt.Fprintln(o.Out, `Compute "local" is enabled: its jobs run on this host, the control plane's, isolated as above (turn it off with --local-compute=off)`)
	}
}

// within reports whether path is dir or inside it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// clientHost is the host:port clients should use for a listener bound to
// addr (a wildcard bind becomes 127.0.0.1).
func clientHost(addr, host string) string {
	_, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// hostCapacity measures this host for region local: cores × cpuOvercommit,
// total memory × memOvercommit, and NVIDIA GPUs visible through /proc/driver/nvidia.
func hostCapacity(cpuOvercommit, memOvercommit float64) model.Host {
	h := model.Host{VCPUs: float64(runtime.NumCPU()) * cpuOvercommit, MemoryGB: memTotalGB() * memOvercommit}
	if entries, err := os.ReadDir("/proc/driver/nvidia/gpus"); err == nil {
		h.GPUs = len(entries)
	}
	return h
}

func memTotalGB() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err == nil {
				return kb / (1024 * 1024)
			}
		}
	}
	return 0
}
