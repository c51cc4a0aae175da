package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

const (
	sshUser     = "azureuser"
	sshPassword = "Kumo-ssh-Pa55word!"
)

// sshEnv is a running kumo with a cluster whose admin account has a
// password and a key, and what the OpenSSH client needs to reach it.
type sshEnv struct {
	s       *server
	dir     string
	cfgPath string // the client config
	key     string // the admin's private key
	other   string // a key the cluster does not know
	sshCfg  string // kumo compute ssh-config's output
}

// needSSH skips when the OpenSSH client is missing (.ci/run installs it).
func needSSH(t testing.TB) {
	t.Helper()
	for _, p := range []string{"ssh", "scp", "ssh-keygen"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian's openssh-client; .ci/run installs it)", p)
		}
	}
	// Sessions run as the node's job user, which must reach the kumo
	// binary for sftp and port forwards.
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func keygen(t testing.TB, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

// createSSHCluster creates a cluster with the admin account of sshEnv;
// publicAccess, when given, is its remoteLoginPortPublicAccess.
func createSSHCluster(t testing.TB, s *server, name string, min, max int, idle, pubKey string, publicAccess ...string) {
	t.Helper()
	props := map[string]any{
		"vmSize": "Standard_D2_v2", "scaleSettings": map[string]any{"minNodeCount": min, "maxNodeCount": max, "nodeIdleTimeBeforeScaleDown": idle},
	}
	if len(publicAccess) > 0 {
		props["remoteLoginPortPublicAccess"] = publicAccess[0]
	}
	if pubKey != "" {
		props["userAccountCredentials"] = map[string]any{"adminUserName": sshUser, "adminUserPassword": sshPassword, "adminUserSshPublicKey": pubKey}
	}
	body := map[string]any{"properties": map[string]any{"computeType": "AmlCompute", "properties": props}}
	if status, raw := s.request(context.Background(), "PUT", workspacePath+"/computes/"+name, body); status != 201 {
		t.Fatalf("create cluster: %d %s", status, raw)
	}
}

func listNodes(t testing.TB, s *server, name string) []api.NodeInformation {
	t.Helper()
	status, raw := s.request(context.Background(), "POST", workspacePath+"/computes/"+name+"/listNodes", nil)
	if status != 200 {
		t.Fatalf("listNodes: %d %s", status, raw)
	}
	var l api.NodeList
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatal(err)
	}
	return l.Nodes
}

// waitSSHNode waits until a node of the cluster publishes its host key.
func waitSSHNode(t testing.TB, s *server, name string) api.NodeInformation {
	t.Helper()
	var node api.NodeInformation
	waitFor(t, 60*time.Second, "a node of "+name+" serving SSH", func() (bool, string) {
		for _, n := range listNodes(t, s, name) {
			if n.SSHHostKey != "" && (n.NodeState == api.NodeIdle || n.NodeState == api.NodeRunning) {
				node = n
				return true, ""
			}
		}
		return false, "no node"
	})
	return node
}

func newSSHEnv(t testing.TB, compute string, min, max int, idle string, publicAccess ...string) *sshEnv {
	t.Helper()
	needSSH(t)
	s := startServer(t, "", fastNodes...)
	e := &sshEnv{s: s, dir: s.dir, cfgPath: filepath.Join(s.dir, ".kumo", "config.json"),
		key: filepath.Join(s.dir, "id"), other: filepath.Join(s.dir, "other")}
	keygen(t, e.key)
	keygen(t, e.other)
	pub, err := os.ReadFile(e.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	createSSHCluster(t, s, compute, min, max, idle, strings.TrimSpace(string(pub)), publicAccess...)
	return e
}

// writeSSHConfig runs kumo compute ssh-config and keeps its output.
func (e *sshEnv) writeSSHConfig(t testing.TB, compute string) {
	t.Helper()
	out, stderr, code := e.kumo(t, nil, "compute", "ssh-config", compute, "--known-hosts-file", filepath.Join(e.dir, "known_hosts"))
	if code != 0 {
		t.Fatalf("ssh-config: exit %d: %s", code, stderr)
	}
	e.sshCfg = filepath.Join(e.dir, "ssh_config")
	if err := os.WriteFile(e.sshCfg, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kumo runs the kumo CLI with the env's config; it returns stdout,
// stderr and the exit status.
func (e *sshEnv) kumo(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	return e.run(t, env, kumo, append([]string{"--config", e.cfgPath}, args...)...)
}

func (e *sshEnv) run(t testing.TB, env []string, prog string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader("")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", prog, args, err)
	}
	return out.String(), errb.String(), code
}

// ssh runs the OpenSSH client with the ssh-config entries and args.
func (e *sshEnv) ssh(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	return e.run(t, env, "ssh", append([]string{"-F", e.sshCfg, "-o", "ConnectTimeout=30"}, args...)...)
}

// withKey are ssh options to log in with the admin's key alone.
func (e *sshEnv) withKey(key string) []string {
	return []string{"-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no"}
}

// askpass returns the environment and options that make ssh log in with
// password pw, non-interactively.
func (e *sshEnv) askpass(t testing.TB, pw string) ([]string, []string) {
	t.Helper()
	script := filepath.Join(e.dir, "askpass-"+strconv.Itoa(len(pw))+"-"+randHex(4))
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' '"+pw+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return []string{"SSH_ASKPASS=" + script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0"},
		[]string{"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "NumberOfPasswordPrompts=1"}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// TestSSHLogin logs in to a node of a local cluster with Debian's OpenSSH
// client, through kumo compute connect-ssh and through the entries of
// kumo compute ssh-config, and checks what must be refused.
func TestSSHLogin(t *testing.T) {
	e := newSSHEnv(t, "sshc", 1, 1, "PT120S")
	node := waitSSHNode(t, e.s, "sshc")
	if !strings.HasPrefix(node.SSHHostKeyFingerprint, "SHA256:") {
		t.Fatalf("listNodes fingerprint = %q, want SHA256:...", node.SSHHostKeyFingerprint)
	}
	out, _, code := e.kumo(t, nil, "compute", "list-nodes", "sshc")
	if code != 0 || !strings.Contains(out, node.SSHHostKeyFingerprint) {
		t.Fatalf("list-nodes (exit %d) does not show the host key fingerprint %s:\n%s", code, node.SSHHostKeyFingerprint, out)
	}
	e.writeSSHConfig(t, "sshc")

	t.Run("connect-ssh with the key runs a command and returns its status", func(t *testing.T) {
		out, stderr, code := e.kumo(t, nil, "compute", "connect-ssh", "--name", "sshc", "--private-key-file-path", e.key,
			"--", `echo "node=$KUMO_NODE_ID uid=$(id -u) user=$USER"; exit 7`)
		if code != 7 {
			t.Fatalf("connect-ssh exit = %d, want 7 (the command's)\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if want := "node=" + node.NodeID; !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
		if !strings.Contains(out, "user="+sshUser) {
			t.Errorf("output %q lacks user=%s", out, sshUser)
		}
		t.Logf("session: %s", out)
		if os.Geteuid() == 0 && strings.Contains(out, "uid=0 ") {
			t.Errorf("session ran as root: %q", out)
		}
	})

	t.Run("ssh-config entry with the key, and environment variables", func(t *testing.T) {
		args := append(e.withKey(e.key), "-o", "SetEnv=KUMO_E2E=set-by-client", "sshc-0", "echo $KUMO_E2E; env | grep -c KUMO_E2E")
		out, stderr, code := e.ssh(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "set-by-client\n") {
			t.Fatalf("ssh sshc-0: exit %d, stdout %q, stderr %s", code, out, stderr)
		}
		if _, stderr, code := e.ssh(t, nil, append(e.withKey(e.key), "sshc-0", "exit 5")...); code != 5 {
			t.Errorf("ssh sshc-0 'exit 5': exit %d, want 5 (%s)", code, stderr)
		}
		// The agent's own environment never reaches a session.
		out, _, _ = e.ssh(t, nil, append(e.withKey(e.key), "sshc-"+node.NodeID, "env")...)
		for _, leak := range []string{"KUMO_TOKEN", "credential", "GOMAXPROCS"} {
			if strings.Contains(out, leak) {
				t.Errorf("session environment holds %q:\n%s", leak, out)
			}
		}
	})

	t.Run("password login", func(t *testing.T) {
		env, opts := e.askpass(t, sshPassword)
		out, stderr, code := e.ssh(t, env, append(opts, "sshc-0", "echo password-ok")...)
		if code != 0 || out != "password-ok\n" {
			t.Fatalf("password login: exit %d, stdout %q, stderr %s", code, out, stderr)
		}
	})

	t.Run("refused", func(t *testing.T) {
		wrongEnv, wrongOpts := e.askpass(t, "not-the-password")
		tests := []struct {
			name string
			env  []string
			args []string
		}{
			{"wrong key", nil, append(e.withKey(e.other), "sshc-0", "true")},
			{"wrong password", wrongEnv, append(wrongOpts, "sshc-0", "true")},
			{"wrong user name", nil, append(e.withKey(e.key), "-l", "root", "sshc-0", "true")},
		}
		for _, tt := range tests {
			_, stderr, code := e.ssh(t, tt.env, tt.args...)
			if code != 255 || !strings.Contains(stderr, "Permission denied") {
				t.Errorf("%s: exit %d, stderr %q; want 255 and Permission denied", tt.name, code, stderr)
			}
		}
		// Each refusal is a compute event naming its source (the token).
		waitFor(t, 10*time.Second, "SSHLoginRefused events", func() (bool, string) {
			n := 0
			for _, ev := range computeEvents(t, e.s, "sshc") {
				if ev.Kind == "SSHLoginRefused" && strings.Contains(ev.Message, "token ") {
					n++
				}
			}
			return n >= 3, fmt.Sprintf("%d events", n)
		})
		// A successful login clears the source's count.
		if _, stderr, code := e.ssh(t, nil, append(e.withKey(e.key), "sshc-0", "true")...); code != 0 {
			t.Fatalf("login after refusals: exit %d: %s", code, stderr)
		}
	})

	t.Run("compute without credentials", func(t *testing.T) {
		createSSHCluster(t, e.s, "nocreds", 0, 1, "PT120S", "")
		_, stderr, code := e.kumo(t, nil, "ssh-proxy", "--name", "nocreds", "--node-id", node.NodeID)
		if code == 0 || !strings.Contains(stderr, api.CodeSSHNotEnabled) {
			t.Fatalf("ssh-proxy to a compute without credentials: exit %d, stderr %q", code, stderr)
		}
		// Nor does another compute's node answer under this one's name.
		_, stderr, code = e.kumo(t, nil, "ssh-proxy", "--name", "nocreds-missing", "--node-id", node.NodeID)
		if code == 0 || !strings.Contains(stderr, "not found") {
			t.Fatalf("ssh-proxy to a missing compute: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("host key mismatch is detected", func(t *testing.T) {
		bad := filepath.Join(e.dir, "bad_known_hosts")
		other, _ := os.ReadFile(e.other + ".pub")
		alias := "kumo-sshc-" + node.NodeID
		if err := os.WriteFile(bad, []byte(alias+" "+strings.TrimSpace(string(other))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := e.ssh(t, nil, append(e.withKey(e.key), "-o", "UserKnownHostsFile="+bad, "sshc-0", "true")...)
		if code != 255 || !strings.Contains(stderr, "HOST IDENTIFICATION HAS CHANGED") {
			t.Fatalf("wrong known host key: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("reader token cannot open a tunnel", func(t *testing.T) {
		status, raw := e.s.request(context.Background(), "POST", "/kumo/v1/tokens", map[string]any{"name": "viewer", "role": "reader"})
		if status != 201 {
			t.Fatalf("create reader token: %d %s", status, raw)
		}
		var tok api.TokenCreated
		json.Unmarshal(raw, &tok)
		cfg := e.s.cfg
		cfg.Token = tok.Token
		b, _ := json.Marshal(cfg)
		path := filepath.Join(e.dir, ".kumo", "reader.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := e.run(t, nil, kumo, "--config", path, "ssh-proxy", "--name", "sshc", "--node-id", node.NodeID)
		if code == 0 || !strings.Contains(stderr, api.CodeAuthorizationFailed) {
			t.Fatalf("ssh-proxy with a reader token: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("scp copies a 10 MB file to the node and back", func(t *testing.T) {
		data := make([]byte, 10<<20)
		rand.Read(data)
		src, back := filepath.Join(e.dir, "up.bin"), filepath.Join(e.dir, "down.bin")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		remote := "/tmp/kumo-e2e-scp-" + randHex(6)
		scp := func(from, to string) {
			t.Helper()
			args := append([]string{"-F", e.sshCfg}, e.withKey(e.key)...)
			if _, stderr, code := e.run(t, nil, "scp", append(args, from, to)...); code != 0 {
				t.Fatalf("scp %s %s: exit %d: %s", from, to, code, stderr)
			}
		}
		scp(src, "sshc-0:"+remote)
		t.Cleanup(func() { e.ssh(t, nil, append(e.withKey(e.key), "sshc-0", "rm -f "+remote)...) })
		scp("sshc-0:"+remote, back)
		got, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("file came back different: %d bytes, want %d", len(got), len(data))
		}
		if os.Geteuid() == 0 {
			out, _, _ := e.ssh(t, nil, append(e.withKey(e.key), "sshc-0", "stat -c %u "+remote)...)
			if strings.TrimSpace(out) == "0" {
				t.Errorf("the copied file belongs to root: sftp did not run as the job user")
			}
		}
	})

	t.Run("ssh -L reaches a port a job opened, in the job's directory", func(t *testing.T) {
		port := freePort(t)
		submitJob(t, e.s, "listener", "sshc", fmt.Sprintf(
			`exec perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>"127.0.0.1:%d",Listen=>5,ReuseAddr=>1) or die "listen: $!"; while($c=$s->accept){print $c "hello from the job\n"; close $c}'`, port))
		t.Cleanup(func() { e.s.request(context.Background(), "POST", workspacePath+"/jobs/listener/cancel", nil) })
		waitFor(t, 60*time.Second, "job listener running", func() (bool, string) {
			st := getJob(t, e.s, "listener").Properties.Status
			return st == api.JobRunning, string(st)
		})
		out, stderr, code := e.ssh(t, nil, append(e.withKey(e.key), "sshc-0", "pwd")...)
		if code != 0 || !strings.Contains(out, "/jobs/") {
			t.Errorf("session directory while a job runs = %q (exit %d, %s), want the job's", out, code, stderr)
		}
		local := freePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fwd := exec.CommandContext(ctx, "ssh", append(append([]string{"-F", e.sshCfg}, e.withKey(e.key)...),
			"-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", local, port), "sshc-0")...)
		var fwdErr bytes.Buffer
		fwd.Stderr = &fwdErr
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); fwd.Wait() }()
		var got string
		waitFor(t, 30*time.Second, "the forwarded port to answer", func() (bool, string) {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), time.Second)
			if err != nil {
				return false, err.Error()
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			got = string(b)
			return got != "", "empty answer; ssh: " + fwdErr.String()
		})
		if got != "hello from the job\n" {
			t.Fatalf("through ssh -L: %q", got)
		}
	})

	t.Run("a session outlives the job it was opened during", func(t *testing.T) {
		waitFor(t, 30*time.Second, "the node idle", func() (bool, string) {
			n := listNodes(t, e.s, "sshc")
			return len(n) == 1 && n[0].NodeState == api.NodeIdle, fmt.Sprint(n)
		})
		submitJob(t, e.s, "short", "sshc", "sleep 2")
		waitFor(t, 60*time.Second, "job short running", func() (bool, string) {
			st := getJob(t, e.s, "short").Properties.Status
			return st == api.JobRunning, string(st)
		})
		done := make(chan struct{})
		var out, stderr string
		var code int
		go func() {
			defer close(done)
			out, stderr, code = e.ssh(t, nil, append(e.withKey(e.key), "sshc-0", "sleep 5; echo still-here")...)
		}()
		if j := waitJob(t, e.s, "short", 60*time.Second); j.Properties.Status != api.JobCompleted {
			t.Fatalf("job short ended %s", j.Properties.Status)
		}
		<-done
		if code != 0 || out != "still-here\n" {
			t.Fatalf("session across the job's end: exit %d, stdout %q, stderr %s", code, out, stderr)
		}
	})
}

func freePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddrs(t, 1)[0])
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func computeEvents(t testing.TB, s *server, name string) []api.ComputeEvent {
	t.Helper()
	status, raw := s.request(context.Background(), "GET", workspacePath+"/computes/"+name+"/events", nil)
	if status != 200 {
		t.Fatalf("events: %d %s", status, raw)
	}
	var l struct {
		Value []api.ComputeEvent `json:"value"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatal(err)
	}
	return l.Value
}

// TestSSHSessionKeepsNode: an idle node with an open SSH session is not
// scaled down after its idle time, and an event says why; once the
// session closes, it is removed within the idle time + 2 s.
func TestSSHSessionKeepsNode(t *testing.T) {
	e := newSSHEnv(t, "idle", 0, 1, "PT3S")
	submitJob(t, e.s, "warm", "idle", "true")
	waitJob(t, e.s, "warm", 60*time.Second)
	node := waitSSHNode(t, e.s, "idle")
	e.writeSSHConfig(t, "idle")

	// Hold a session open for well past the idle time.
	const hold = 8 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sess := exec.CommandContext(ctx, "ssh", append(append([]string{"-F", e.sshCfg}, e.withKey(e.key)...),
		"idle-0", "echo open; sleep "+strconv.Itoa(int(hold.Seconds())))...)
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 5)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "open\n" {
		t.Fatalf("session did not start: %q %v", line, err)
	}
	opened := time.Now()
	waitFor(t, 10*time.Second, "a NodeInUse event", func() (bool, string) {
		for _, ev := range computeEvents(t, e.s, "idle") {
			if ev.Kind == "NodeInUse" && strings.Contains(ev.Message, node.NodeID) {
				return true, ""
			}
		}
		return false, "none"
	})
	time.Sleep(time.Until(opened.Add(hold - time.Second))) // past the idle time, with the session still open
	if n := listNodes(t, e.s, "idle"); len(n) != 1 || n[0].NodeState == api.NodeLeaving {
		t.Fatalf("node removed while an SSH session was open: %+v", n)
	}
	if err := sess.Wait(); err != nil {
		t.Fatalf("session: %v", err)
	}
	closed := time.Now()
	waitFor(t, 3*time.Second+2*time.Second, "the node removed after the session closed", func() (bool, string) {
		n := listNodes(t, e.s, "idle")
		return len(n) == 0 || n[0].NodeState == api.NodeLeaving, fmt.Sprintf("%d nodes", len(n))
	})
	if d := time.Since(closed); d < 3*time.Second-500*time.Millisecond {
		t.Errorf("node removed %s after the session closed, before the idle time", d)
	}
}
