// Package sshhosts is a [provider.Provider] whose capacity is a list of
// existing machines reached over SSH: each node is a `kumo agent` process
// on one of them.
//
// Creating a node picks the host with the most free vCPUs among those it
// fits on, copies the running kumo executable to <dir>/bin/kumo there when
// that file is missing or its SHA-256 differs, writes the node credential
// (mode 0600, sent on the SSH session's stdin, never on a command line) and
// the control plane's CA certificate, and starts the agent detached from
// the session (setsid, output to agent.log), so it outlives the SSH
// connection and the control plane. Files on a host, under [Host.Dir]:
//
//	bin/kumo              the agent executable, replaced atomically when outdated
//	nodes/<id>/credential the node credential (0600)
//	nodes/<id>/env        the agent's environment (NAME='value' lines, 0600)
//	nodes/<id>/ca.pem     the CA the agent trusts for the control plane's certificate
//	nodes/<id>/pid        the agent's pid; it leads its own session
//	nodes/<id>/agent.log  the agent's output
//	nodes/<id>/work/      the node's work directory
//
// The provider keeps its own record of each node (host, size, GPUs,
// creation time) under [Config.Dir], so a new provider value after a
// restart lists and deletes what an old one created. It keeps one SSH
// connection per host between calls (the goroutines of those connections
// are its own until [Provider.Close]) and runs one session per command.
//
// Host keys are pinned: a host whose key differs from its configured
// HostKey is refused. A host that does not answer (dial, handshake or
// command failure) has its nodes listed as Stopped with the reason, which
// makes them unusable to the control plane; it is tried again after a
// backoff (1s doubling to 1m), and until then calls do not wait on it.
// Deleting a node of such a host forgets it at once, but it keeps its share
// of the host until the host answers again, when its agent is stopped and
// its files removed.
//
// The agent runs as the SSH user, and so do its jobs: give each host a
// user of its own for kumo.
package sshhosts

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"kumo/internal/provider"
)

var (
	_ provider.Provider         = (*Provider)(nil)
	_ provider.CapacityReporter = (*Provider)(nil)
	_ provider.Offerer          = (*Provider)(nil)
	_ provider.HostReporter     = (*Provider)(nil)
)

// Defaults for zero fields of [Config] and [Host].
const (
	DefaultDir            = ".kumo-agent"
	DefaultConnectTimeout = 5 * time.Second
	DefaultGrace          = 10 * time.Second
	backoffBase           = time.Second
	backoffMax            = time.Minute
	copyTimeout           = 5 * time.Minute // to copy the executable to a host
)

// Host is one machine of the region.
type Host struct {
	Name    string `json:"name"`     // shown in records and reasons; "" means Address
	Address string `json:"address"`  // HOST or HOST:PORT (port 22 when absent); required
	User    string `json:"user"`     // SSH user; required
	KeyFile string `json:"key_file"` // private key file (OpenSSH or PEM, unencrypted); required
	// HostKey pins the host's key: an authorized_keys line ("ssh-ed25519
	// AAAA...") or a known_hosts line ("10.0.0.5 ssh-ed25519 AAAA...");
	// required.
	HostKey string `json:"host_key"`
	// Dir is where kumo keeps its files on the host; relative paths are
	// under the user's home; "" means DefaultDir.
	Dir string `json:"dir,omitempty"`

	// Capacity. VCPUs and MemoryGB are what nodes may take together; GPUs
	// are handed out whole, by index, through CUDA_VISIBLE_DEVICES. If
	// Sizes is set, only sizes of these names run on the host; with Sizes
	// set and VCPUs zero, the host runs one node at a time, of any of them.
	VCPUs    int      `json:"vcpus,omitempty"`
	MemoryGB float64  `json:"memory_gb,omitempty"`
	GPUs     int      `json:"gpus,omitempty"`
	Sizes    []string `json:"sizes,omitempty"`
}

// Config configures a [Provider].
type Config struct {
	Dir   string // local directory for the node records; required; made mode 0700
	Hosts []Host // the machines; at least one; names unique

	// ControlPlaneURL is the URL agents on the hosts connect to; "" means
	// the URL each instance's AgentConfig carries (which must then be
	// reachable from the hosts).
	ControlPlaneURL string
	// Executable is the local kumo executable copied to the hosts; ""
	// means this process's own.
	Executable     string
	ConnectTimeout time.Duration // per host, for dial and handshake; 0 means DefaultConnectTimeout
	Grace          time.Duration // SIGTERM to SIGKILL on Delete; 0 means DefaultGrace
}

// Provider runs nodes on SSH hosts. Its methods are safe for concurrent use;
// they are serialized.
type Provider struct {
	cfg   Config
	hosts []*host

	mu      sync.Mutex
	exeHash string // SHA-256 of cfg.Executable, hex; computed on first use
}

// host is a configured Host with its SSH settings and health.
type host struct {
	Host
	addr   string // HOST:PORT
	client *ssh.ClientConfig
	ip     string // the address reported for its nodes

	failures int         // consecutive failures to answer
	retryAt  time.Time   // no dial before this while failures > 0
	lastErr  error       // the last failure; nil once it answers
	exeOK    bool        // bin/kumo was checked since the host last failed
	conn     *ssh.Client // nil when not connected
}

// New checks cfg and returns a Provider. It reads the key files but dials
// no host.
func New(cfg Config) (*Provider, error) {
	if cfg.Dir == "" {
		return nil, errors.New("sshhosts provider: no directory")
	}
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("hosts: at least one host is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sshhosts provider: %w", err)
	}
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sshhosts provider: %w", err)
		}
		cfg.Executable = exe
	}
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout)
	cfg.Grace = cmp.Or(cfg.Grace, DefaultGrace)
	p := &Provider{cfg: cfg}
	names := map[string]bool{}
	for i, hc := range cfg.Hosts {
		h, err := newHost(hc, cfg.ConnectTimeout)
		if err != nil {
			return nil, fmt.Errorf("hosts[%d].%w", i, err)
		}
		if names[h.Name] {
			return nil, fmt.Errorf("hosts[%d].name: %q is used twice", i, h.Name)
		}
		names[h.Name] = true
		p.hosts = append(p.hosts, h)
	}
	return p, nil
}

func newHost(hc Host, timeout time.Duration) (*host, error) {
	switch {
	case hc.Address == "":
		return nil, errors.New("address: required")
	case hc.User == "":
		return nil, errors.New("user: required")
	case hc.KeyFile == "":
		return nil, errors.New("key_file: required")
	case hc.HostKey == "":
		return nil, errors.New("host_key: required (pin the host's key)")
	case hc.VCPUs < 0 || hc.MemoryGB < 0 || hc.GPUs < 0:
		return nil, errors.New("vcpus: vcpus, memory_gb and gpus must not be negative")
	case hc.VCPUs == 0 && len(hc.Sizes) == 0:
		return nil, errors.New("vcpus: give vcpus and memory_gb, or sizes")
	case hc.VCPUs > 0 && hc.MemoryGB == 0:
		return nil, errors.New("memory_gb: required with vcpus")
	}
	h := &host{Host: hc, addr: hc.Address}
	if _, _, err := net.SplitHostPort(hc.Address); err != nil {
		h.addr = net.JoinHostPort(hc.Address, "22")
	}
	h.ip, _, _ = net.SplitHostPort(h.addr)
	h.Name = cmp.Or(h.Name, hc.Address)
	h.Dir = cmp.Or(h.Dir, DefaultDir)
	pem, err := os.ReadFile(hc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	pinned, err := parseHostKey(hc.HostKey)
	if err != nil {
		return nil, fmt.Errorf("host_key: %w", err)
	}
	h.client = &ssh.ClientConfig{User: hc.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(pinned), HostKeyAlgorithms: []string{pinned.Type()}, Timeout: timeout}
	return h, nil
}

// parseHostKey reads an authorized_keys or known_hosts line.
func parseHostKey(s string) (ssh.PublicKey, error) {
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err == nil {
		return k, nil
	}
	_, _, k, _, _, err := ssh.ParseKnownHosts([]byte(s))
	if err != nil {
		return nil, errors.New("not an authorized_keys or known_hosts line")
	}
	return k, nil
}

// Factory builds a Provider from params: DataDir is Config.Dir; settings
// are "hosts" (a JSON array of [Host] objects), "control_plane_url",
// "executable", "connect_timeout" and "grace" (Go durations).
func Factory(p provider.Params) (provider.Provider, error) {
	cfg := Config{Dir: p.DataDir}
	for k, v := range p.Settings {
		var err error
		switch k {
		case "hosts":
			dec := json.NewDecoder(strings.NewReader(v))
			dec.DisallowUnknownFields()
			err = dec.Decode(&cfg.Hosts)
		case "control_plane_url":
			cfg.ControlPlaneURL = v
		case "executable":
			cfg.Executable = v
		case "connect_timeout":
			cfg.ConnectTimeout, err = time.ParseDuration(v)
		case "grace":
			cfg.Grace, err = time.ParseDuration(v)
		default:
			err = errors.New("unknown setting")
		}
		if err != nil {
			return nil, fmt.Errorf("setting %s: %w", k, err)
		}
	}
	return New(cfg)
}

// record is a node's local record, <Config.Dir>/<id>.json.
type record struct {
	Instance provider.Instance `json:"instance"` // Agent.Credential is blanked
	Host     string            `json:"host"`     // Host.Name
	GPUs     []int             `json:"gpus,omitempty"`
	Created  time.Time         `json:"created"`
	// Deleting marks a node deleted while its host did not answer: it is
	// no longer listed, still holds its share of the host, and is stopped
	// and forgotten once the host answers.
	Deleting bool `json:"deleting,omitempty"`
}

func (p *Provider) load() (map[string]*record, error) {
	ents, err := os.ReadDir(p.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sshhosts provider: %w", err)
	}
	recs := map[string]*record{}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.cfg.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("sshhosts provider: %w", err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("sshhosts provider: record %s: %w", id, err)
		}
		recs[r.Instance.ID] = &r
	}
	return recs, nil
}

func (p *Provider) save(r *record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(p.cfg.Dir, r.Instance.ID+".json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(p.cfg.Dir, r.Instance.ID+".json"))
}

func (p *Provider) host(name string) *host {
	for _, h := range p.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// offers reports whether size runs on h at all, ignoring what h holds.
func (h *host) offers(s provider.Size) bool {
	if h.Sizes != nil && !slices.ContainsFunc(h.Sizes, func(n string) bool { return strings.EqualFold(n, s.Name) }) {
		return false
	}
	if h.VCPUs == 0 {
		return s.GPUs <= h.GPUs
	}
	return s.VCPUs <= h.VCPUs && s.MemoryMB <= h.memMB() && s.GPUs <= h.GPUs
}

func (h *host) memMB() int64 { return int64(h.MemoryGB * 1024) }

// room returns how many more instances of s fit on h next to held, and
// the GPU indexes the first of them would get.
func (h *host) room(s provider.Size, held []*record) (int, []int) {
	if !h.offers(s) {
		return 0, nil
	}
	usedGPU := map[int]bool{}
	var cpu, mem int64
	for _, r := range held {
		cpu += int64(r.Instance.Size.VCPUs)
		mem += r.Instance.Size.MemoryMB
		for _, g := range r.GPUs {
			usedGPU[g] = true
		}
	}
	var free []int
	for g := range h.GPUs {
		if !usedGPU[g] {
			free = append(free, g)
		}
	}
	n := 1 << 30
	if h.VCPUs == 0 {
		n = 1 - min(len(held), 1)
	} else {
		for _, r := range []struct{ free, need int64 }{{int64(h.VCPUs) - cpu, int64(s.VCPUs)}, {h.memMB() - mem, s.MemoryMB}} {
			if r.need > 0 {
				n = min(n, int(max(r.free, 0)/r.need))
			}
		}
	}
	if s.GPUs > 0 {
		n = min(n, len(free)/s.GPUs)
	}
	if n <= 0 {
		return 0, nil
	}
	return n, free[:s.GPUs]
}

func (h *host) free(held []*record) int64 {
	var cpu int64
	for _, r := range held {
		cpu += int64(r.Instance.Size.VCPUs)
	}
	return int64(h.VCPUs) - cpu
}

func byHost(recs map[string]*record) map[string][]*record {
	out := map[string][]*record{}
	for _, r := range recs {
		out[r.Host] = append(out[r.Host], r)
	}
	return out
}

// Offers reports whether one instance of size fits on some host.
func (p *Provider) Offers(size provider.Size) bool {
	return slices.ContainsFunc(p.hosts, func(h *host) bool { return h.offers(size) })
}

// Total returns the hosts' vCPUs, memory and GPUs together.
func (p *Provider) Total() provider.Size {
	var t provider.Size
	for _, h := range p.hosts {
		t.VCPUs += h.VCPUs
		t.MemoryMB += h.memMB()
		t.GPUs += h.GPUs
	}
	return t
}

// Capacity returns how many more instances of size fit on the hosts that
// are not backing off after a failure.
func (p *Provider) Capacity(ctx context.Context, size provider.Size) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return 0, err
	}
	held := byHost(recs)
	n := 0
	for _, h := range p.hosts {
		if h.failures == 0 {
			k, _ := h.room(size, held[h.Name])
			n += k
		}
	}
	return n, nil
}

// Hosts reports each host's capacity, what nodes hold of it (nodes being
// deleted included) and why it last failed to answer.
func (p *Provider) Hosts(ctx context.Context) ([]provider.HostUsage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return nil, err
	}
	held := byHost(recs)
	out := make([]provider.HostUsage, 0, len(p.hosts))
	for _, h := range p.hosts {
		u := provider.HostUsage{Name: h.Name, Address: h.addr, VCPUs: h.VCPUs, MemoryMB: h.memMB(), GPUs: h.GPUs, Nodes: len(held[h.Name])}
		for _, r := range held[h.Name] {
			u.Used.VCPUs += r.Instance.Size.VCPUs
			u.Used.MemoryMB += r.Instance.Size.MemoryMB
			u.Used.GPUs += len(r.GPUs)
		}
		if h.lastErr != nil {
			u.Error = h.lastErr.Error()
		}
		out = append(out, u)
	}
	return out, nil
}

// errBackoff is returned for a host not tried again yet.
type errBackoff struct {
	host string
	last error
	at   time.Time
}

func (e *errBackoff) Error() string {
	return fmt.Sprintf("host %s not answering (%v); next try at %s", e.host, e.last, e.at.Format(time.TimeOnly))
}

// dial returns h's connection, dialing when there is none. A host backing
// off is not dialed.
func (p *Provider) dial(ctx context.Context, h *host) (*ssh.Client, error) {
	if h.conn != nil {
		return h.conn, nil
	}
	if h.failures > 0 && time.Now().Before(h.retryAt) {
		return nil, &errBackoff{host: h.Name, last: h.lastErr, at: h.retryAt}
	}
	d := net.Dialer{Timeout: p.cfg.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, p.failed(h, err)
	}
	conn.SetDeadline(time.Now().Add(p.cfg.ConnectTimeout))
	sc, chans, reqs, err := ssh.NewClientConn(conn, h.addr, h.client)
	if err != nil {
		conn.Close()
		return nil, p.failed(h, err)
	}
	conn.SetDeadline(time.Time{})
	h.conn = ssh.NewClient(sc, chans, reqs)
	return h.conn, nil
}

// drop closes h's connection.
func (h *host) drop() {
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

// Close closes the connections to the hosts; nodes keep running. The
// provider dials again if used after.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		h.drop()
	}
	return nil
}

// failed records that h did not answer and returns err with the host named.
func (p *Provider) failed(h *host, err error) error {
	h.failures++
	h.lastErr = err
	h.retryAt = time.Now().Add(min(backoffBase<<min(h.failures-1, 10), backoffMax))
	h.exeOK = false
	h.drop()
	return fmt.Errorf("host %s: %w", h.Name, err)
}

func (p *Provider) answered(h *host) { h.failures, h.lastErr = 0, nil }

// run runs script on h with stdin, returning its stdout; it gives up after
// limit. A failure to reach the host (not the script's own exit status)
// counts against the host. A connection found broken is replaced once.
func (p *Provider) run(outer context.Context, h *host, limit time.Duration, script string, stdin io.Reader) (string, error) {
	ctx, cancel := context.WithTimeout(outer, limit)
	defer cancel()
	fresh := h.conn == nil
	c, err := p.dial(ctx, h)
	if err != nil {
		return "", err
	}
	s, err := c.NewSession()
	if err != nil {
		h.drop()
		if !fresh {
			return p.run(outer, h, limit, script, stdin)
		}
		return "", p.failed(h, err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdin, s.Stdout, s.Stderr = stdin, &out, &errb
	done := make(chan error, 1)
	go func() { done <- s.Run(script) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		h.drop()
		<-done
		if outer.Err() != nil {
			return "", outer.Err() // the caller gave up: not the host's fault
		}
		return "", p.failed(h, fmt.Errorf("no answer in %s", limit))
	}
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		p.answered(h)
		return out.String(), fmt.Errorf("host %s: %s", h.Name, strings.TrimSpace(cmp.Or(errb.String(), exit.Error())))
	case err != nil:
		h.drop()
		return "", p.failed(h, err)
	}
	p.answered(h)
	return out.String(), nil
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// base is a shell expression for h's directory.
func (h *host) base() string {
	if strings.HasPrefix(h.Dir, "/") {
		return shq(h.Dir)
	}
	return `"$HOME"/` + shq(h.Dir)
}

func (p *Provider) hash() (string, error) {
	if p.exeHash != "" {
		return p.exeHash, nil
	}
	f, err := os.Open(p.cfg.Executable)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", err
	}
	p.exeHash = hex.EncodeToString(sum.Sum(nil))
	return p.exeHash, nil
}

// ensureExe copies the executable to h unless bin/kumo there has its hash.
func (p *Provider) ensureExe(ctx context.Context, h *host) error {
	if h.exeOK {
		return nil
	}
	want, err := p.hash()
	if err != nil {
		return fmt.Errorf("hash executable: %w", err)
	}
	got, err := p.run(ctx, h, p.cfg.ConnectTimeout*2, `sha256sum `+h.base()+`/bin/kumo 2>/dev/null || true`, nil)
	if err != nil {
		return err
	}
	if f := strings.Fields(got); len(f) == 0 || f[0] != want {
		exe, err := os.Open(p.cfg.Executable)
		if err != nil {
			return err
		}
		defer exe.Close()
		b := h.base()
		script := `set -e; umask 077; mkdir -p ` + b + `/bin; t=` + b + `/bin/.kumo.$$; cat > "$t"; chmod 0755 "$t"; ` +
			`[ "$(sha256sum "$t" | cut -d" " -f1)" = ` + shq(want) + ` ] || { rm -f "$t"; echo "copy of kumo corrupted" >&2; exit 1; }; mv -f "$t" ` + b + `/bin/kumo`
		if _, err := p.run(ctx, h, copyTimeout, script, exe); err != nil {
			return fmt.Errorf("copy kumo: %w", err)
		}
	}
	h.exeOK = true
	return nil
}

// Create starts the instances that do not exist yet, each on the host with
// the most free vCPUs of those it fits on that answer. The agent gets
// --node-id, --work-dir, --url (Config.ControlPlaneURL or the instance's),
// --ca-file (a copy of the instance's CA file) and --credential-file, and
// the environment Agent.Env, KUMO_NODE_ID, KUMO_COMPUTE, KUMO_VM_SIZE,
// KUMO_VCPUS, KUMO_MEMORY_MB and CUDA_VISIBLE_DEVICES.
func (p *Provider) Create(ctx context.Context, instances []provider.Instance) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range instances {
		if _, ok := recs[in.ID]; ok {
			continue
		}
		err := ctx.Err()
		if err == nil && !provider.ValidID(in.ID) {
			err = errors.New("invalid instance ID")
		}
		if err == nil {
			var r *record
			r, err = p.place(ctx, in, recs)
			if err == nil {
				recs[in.ID] = r
			}
		}
		if err != nil {
			errs = append(errs, &provider.InstanceError{ID: in.ID, Err: err})
		}
	}
	return errors.Join(errs...)
}

// place starts in on a host with room, trying hosts in order of free vCPUs.
func (p *Provider) place(ctx context.Context, in provider.Instance, recs map[string]*record) (*record, error) {
	held := byHost(recs)
	type cand struct {
		h    *host
		gpus []int
	}
	var cands []cand
	var capErr error = &provider.CapacityError{Size: in.Size, Resource: "instances", Need: 1}
	for _, h := range p.hosts {
		if n, gpus := h.room(in.Size, held[h.Name]); n > 0 {
			cands = append(cands, cand{h, gpus})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		return int(b.h.free(held[b.h.Name]) - a.h.free(held[a.h.Name]))
	})
	var errs []error
	for _, c := range cands {
		r, err := p.start(ctx, c.h, in, c.gpus)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return nil, capErr
}

func (p *Provider) start(ctx context.Context, h *host, in provider.Instance, gpus []int) (*record, error) {
	var ca []byte
	if in.Agent.CAFile != "" {
		var err error
		if ca, err = os.ReadFile(in.Agent.CAFile); err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
	}
	if err := p.ensureExe(ctx, h); err != nil {
		return nil, err
	}
	url := cmp.Or(p.cfg.ControlPlaneURL, in.Agent.URL)
	var gpuText []string
	for _, g := range gpus {
		gpuText = append(gpuText, strconv.Itoa(g))
	}
	env := map[string]string{}
	for k, v := range in.Agent.Env {
		env[k] = v
	}
	for k, v := range map[string]string{"KUMO_NODE_ID": in.ID, "KUMO_COMPUTE": in.Compute, "KUMO_VM_SIZE": in.Size.Name,
		"KUMO_VCPUS": strconv.Itoa(in.Size.VCPUs), "KUMO_MEMORY_MB": strconv.FormatInt(in.Size.MemoryMB, 10),
		"CUDA_VISIBLE_DEVICES": strings.Join(gpuText, ",")} {
		env[k] = v
	}
	// The credential and the environment travel on stdin, never on a
	// command line: the first len(credential) bytes go to credential, the
	// rest (NAME='value' lines) to env.
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var envFile strings.Builder
	for _, k := range keys {
		if !validEnvName(k) {
			return nil, fmt.Errorf("agent environment: invalid name %q", k)
		}
		envFile.WriteString(k + "=" + shq(env[k]) + "\n")
	}
	caFlag := ""
	if ca != nil {
		caFlag = ` --ca-file="$d"/ca.pem`
	}
	script := `set -e; umask 077; b=` + h.base() + `; d="$b"/nodes/` + shq(in.ID) + `; rm -rf "$d"; mkdir -p "$d"/work; ` +
		`head -c ` + strconv.Itoa(len(in.Agent.Credential)) + ` > "$d"/credential; cat > "$d"/env; ` +
		`printf %s ` + shq(string(ca)) + ` > "$d"/ca.pem; cd "$d"/work; set -a; . "$d"/env; set +a; ` +
		`setsid "$b"/bin/kumo agent --node-id=` + shq(in.ID) + ` --work-dir="$d"/work --url=` + shq(url) + caFlag +
		` --credential-file="$d"/credential </dev/null >>"$d"/agent.log 2>&1 & echo $! > "$d"/pid`
	if _, err := p.run(ctx, h, p.cfg.ConnectTimeout*2, script, strings.NewReader(in.Agent.Credential+envFile.String())); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	safe := in
	safe.Agent.Credential = ""
	r := &record{Instance: safe, Host: h.Name, GPUs: gpus, Created: time.Now().UTC()}
	if err := p.save(r); err != nil {
		p.stop(ctx, h, []string{in.ID})
		return nil, err
	}
	return r, nil
}

func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range []byte(k) {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// aliveFunc defines alive PID ID: whether PID is a live (not zombie)
// agent of node ID.
const aliveFunc = `alive() { [ -n "$1" ] && tr '\0' ' ' </proc/"$1"/cmdline 2>/dev/null | grep -q -- "--node-id=$2 "; }
`

// statusScript prints "<id> running" or "<id> stopped" for each node
// directory on a host: running while the recorded pid is a live agent of
// that node.
const statusScript = aliveFunc + `cd "$1"/nodes 2>/dev/null || exit 0
for d in */; do
	id=${d%/}; [ -d "$id" ] || continue; s=stopped
	p=$(cat "$id"/pid 2>/dev/null || true)
	if alive "$p" "$id"; then s=running; fi
	echo "$id $s"
done`

// List reports every recorded instance: Running while its agent process
// lives, Stopped once it has gone or while its host does not answer. On
// hosts that answer, it first finishes deletes that waited for them.
func (p *Provider) List(ctx context.Context) ([]provider.InstanceStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return nil, err
	}
	out := make([]provider.InstanceStatus, 0, len(recs))
	for name, held := range byHost(recs) {
		h := p.host(name)
		state, hostErr := map[string]string{}, error(nil)
		if h == nil {
			hostErr = fmt.Errorf("host %s is no longer configured", name)
		} else {
			hostErr = p.finishDeletes(ctx, h, held)
		}
		if hostErr == nil {
			text, err := p.run(ctx, h, p.cfg.ConnectTimeout*2, `sh -c `+shq(statusScript)+` sh `+h.base(), nil)
			hostErr = err
			for line := range strings.Lines(text) {
				if id, s, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
					state[id] = s
				}
			}
		}
		for _, r := range held {
			if r.Deleting {
				continue
			}
			st := provider.InstanceStatus{ID: r.Instance.ID, Compute: r.Instance.Compute, Size: r.Instance.Size,
				State: provider.StateRunning, Created: r.Created, Note: "on host " + name}
			if h != nil {
				st.Address = h.ip
			}
			switch {
			case hostErr != nil:
				st.State, st.Reason = provider.StateStopped, hostErr.Error()
			case state[r.Instance.ID] != "running":
				st.State, st.Reason = provider.StateStopped, "agent exited; see "+h.Dir+"/nodes/"+r.Instance.ID+"/agent.log on host "+name
			}
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b provider.InstanceStatus) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// finishDeletes stops and forgets the nodes of h deleted while h did not
// answer. It returns h's error if h still does not answer.
func (p *Provider) finishDeletes(ctx context.Context, h *host, held []*record) error {
	var ids []string
	for _, r := range held {
		if r.Deleting {
			ids = append(ids, r.Instance.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if err := p.stop(ctx, h, ids); err != nil {
		return err
	}
	for _, id := range ids {
		os.Remove(filepath.Join(p.cfg.Dir, id+".json"))
	}
	return nil
}

// stopScript stops the agents of the node IDs given as arguments (SIGTERM
// to their sessions, SIGKILL after the grace period in $1 tenths of a
// second) and removes their directories.
const stopScript = aliveFunc + `b=$1; g=$2; shift 2
for id; do
	d="$b"/nodes/"$id"; p=$(cat "$d"/pid 2>/dev/null || true)
	if alive "$p" "$id"; then
		kill -TERM -- -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
		i=0; while alive "$p" "$id" && [ $i -lt "$g" ]; do sleep 0.1; i=$((i+1)); done
		kill -KILL -- -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
		pkill -KILL -s "$p" 2>/dev/null || true
	fi
	rm -rf "$d"
done`

func (p *Provider) stop(ctx context.Context, h *host, ids []string) error {
	args := []string{h.base(), strconv.Itoa(int(p.cfg.Grace / (100 * time.Millisecond)))}
	for _, id := range ids {
		args = append(args, shq(id))
	}
	_, err := p.run(ctx, h, p.cfg.ConnectTimeout*2+p.cfg.Grace, `sh -c `+shq(stopScript)+` sh `+strings.Join(args, " "), nil)
	return err
}

// Delete stops the instances' agents and removes their files on their
// hosts, then their records. Instances of a host that does not answer are
// forgotten at once (the control plane has no use for them) but keep their
// share of the host until it answers again, when their agents are stopped
// and their files removed.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return err
	}
	doomed := map[string][]*record{}
	for _, id := range ids {
		if r, ok := recs[id]; ok && !slices.Contains(doomed[r.Host], r) {
			doomed[r.Host] = append(doomed[r.Host], r)
		}
	}
	var errs []error
	for name, rs := range doomed {
		var hostIDs []string
		for _, r := range rs {
			hostIDs = append(hostIDs, r.Instance.ID)
		}
		if h := p.host(name); h != nil {
			if err := p.stop(ctx, h, hostIDs); err != nil {
				for _, r := range rs {
					r.Deleting = true
					if err := p.save(r); err != nil {
						errs = append(errs, &provider.InstanceError{ID: r.Instance.ID, Err: err})
					}
				}
				continue
			}
		}
		for _, id := range hostIDs {
			if err := os.Remove(filepath.Join(p.cfg.Dir, id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, &provider.InstanceError{ID: id, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}
