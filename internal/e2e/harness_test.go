// Package e2e tests a real kumo binary: it builds cmd/kumo once, starts it
// as an OS process over HTTPS with its own data directory, and drives it
// with the official Azure SDK for Go, the kumo CLI and the Go SDK.
package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binDir string // holds the kumo binary built by TestMain
	kumo   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kumo-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, kumo = dir, filepath.Join(dir, "kumo")
	out, err := exec.Command("go", "build", "-o", kumo, "kumo/cmd/kumo").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build kumo: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	// Every test removes what it started; anything left is a leak.
	if left := procsOf(kumo); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: kumo processes %v outlived the tests\n", left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		code = 1
	}
	if left := leftCgroups(cgroupPrefix); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: cgroups %v outlived the tests\n", left)
		for _, d := range left {
			removeTree(d)
		}
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// clientConfig is .kumo/config.json as kumo up writes it.
type clientConfig struct {
	Endpoint       string `json:"endpoint"`
	SubscriptionID string `json:"subscription_id"`
	ResourceGroup  string `json:"resource_group"`
	WorkspaceName  string `json:"workspace_name"`
	Token          string `json:"token"`
	CAFile         string `json:"ca_file"`
}

// server is a running `kumo up` process.
type server struct {
	t    testing.TB
	dir  string // working directory: holds .kumo/ and the data dir
	cmd  *exec.Cmd
	base string
	out  *syncBuffer
	done chan error
	cfg  clientConfig
	http *http.Client
	own  *owner // what the test started
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingRE = regexp.MustCompile(`serving on (https?://\S+)`)

// startServer runs kumo up in dir (a fresh temp dir when "") on a free
// port and waits until /healthz answers.
func startServer(t testing.TB, dir string, extra ...string) *server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	reachable(t, dir)
	if !slices.Contains(extra, "--job-uid-range") {
		extra = append(slices.Clip(extra), ownUIDs()...)
	}
	if os.Getenv(envE2EPostgres) != "" && !slices.Contains(extra, "--database") {
		extra = append(slices.Clip(extra), "--database", postgresFor(t, dir))
	}
	args := append([]string{"up", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--poll-interval-ms", "50"}, extra...)
	cmd := exec.Command(kumo, args...)
	cmd.Dir = dir
	s := &server{t: t, dir: dir, cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1), own: ownerOf(t)}
	s.own.addDir(dir)
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(pw, s.out)
	cmd.Stderr = s.out
	if err := s.own.start(cmd); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait(); pw.Close() }()
	// Nodes run in their own sessions and outlive the control plane by
	// design; the test's owner stops them after this.
	t.Cleanup(s.kill)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case s.base = <-found:
	case err := <-s.done:
		t.Fatalf("kumo up exited: %v\n%s", err, s.out)
	case <-time.After(30 * time.Second):
		t.Fatalf("kumo up did not start in 30s:\n%s", s.out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ".kumo", "config.json"))
	if err != nil {
		t.Fatalf("client config: %v", err)
	}
	if err := json.Unmarshal(raw, &s.cfg); err != nil {
		t.Fatal(err)
	}
	s.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool()}}, Timeout: 30 * time.Second}
	resp, err := s.http.Get(s.base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz over HTTPS with the config's CA: %v %v", resp, err)
	}
	resp.Body.Close()
	return s
}

// reachable lets jobs, which run as users of their own when kumo runs as
// root, pass through dir and its parent (t.TempDir makes both 0700) to the
// work directory kumo makes in dir.
func reachable(t testing.TB, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *server) caPool() *x509.CertPool {
	s.t.Helper()
	pool := x509.NewCertPool()
	if s.cfg.CAFile == "" {
		return pool
	}
	pem, err := os.ReadFile(filepath.Join(s.dir, ".kumo", s.cfg.CAFile))
	if err != nil {
		s.t.Fatalf("read CA: %v", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		s.t.Fatal("CA file holds no certificate")
	}
	return pool
}

// kill sends SIGKILL and waits for the process to go.
func (s *server) kill() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// stop sends SIGINT (Ctrl-C) and returns kumo's exit error.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		s.t.Fatal("kumo did not stop within 20s of Ctrl-C")
	}
	return nil
}

// request sends a JSON request with the config's token.
func (s *server) request(ctx context.Context, method, path string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	if !strings.HasPrefix(path, "http") {
		path = s.base + path
	}
	if !strings.Contains(path, "api-version=") {
		path += map[bool]string{true: "&", false: "?"}[strings.Contains(path, "?")] + "api-version=2024-04-01"
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// run runs the kumo CLI in dir and returns its combined output.
func run(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kumo, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

const workspacePath = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.MachineLearningServices/workspaces/default"

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// ownUIDs are kumo up flags giving a test's jobs uids that no other kumo on
// the machine uses by default: a job's end kills every process of its uid,
// so servers started at once (by other tests or other checkouts) must not
// share them. startServer adds them unless a test names its own range.
func ownUIDs() []string {
	start := 1_000_000 + rand.IntN(1000)*100
	return []string{"--job-uid-range", fmt.Sprintf("%d-%d", start, start+99)}
}
