// Package sshdtest runs a real OpenSSH sshd for tests of the sshhosts
// provider: a host key and a client key of its own, one allowed user, on an
// address of the test's choosing, optionally inside a network namespace.
package sshdtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Path is where Debian's openssh-server installs sshd.
const Path = "/usr/sbin/sshd"

// SSHD is a running sshd.
type SSHD struct {
	Addr    string // HOST:PORT it listens on
	User    string // the user it lets in
	KeyFile string // the user's private key (OpenSSH format, 0600)
	HostKey string // its host key as an authorized_keys line, to pin
	dir     string // holds its keys and configuration
	cmd     *exec.Cmd
	done    chan struct{}
}

// Options say where sshd listens and whom it lets in.
type Options struct {
	Listen string // HOST:PORT; port 0 picks a free one (not with NetNS)
	User   string // the one user allowed in; "" means the current user
	NetNS  string // run inside this network namespace (ip netns exec); "" means the current one
	// HostKeyFrom, if set, is an earlier SSHD whose host key and user key
	// this one keeps (a host's sshd restarted); nil means new keys.
	HostKeyFrom *SSHD
}

// Start starts sshd, waits until it accepts connections (checked with the
// pinned host key) and stops it at the test's cleanup. It skips the test
// when sshd is not installed.
func Start(t testing.TB, o Options) *SSHD {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		t.Skipf("sshd not installed (%s): install openssh-server", Path)
	}
	if o.User == "" {
		o.User = currentUser(t)
	}
	var dir string
	var hostPub ssh.PublicKey
	if o.HostKeyFrom != nil {
		dir = o.HostKeyFrom.dir
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o.HostKeyFrom.HostKey))
		if err != nil {
			t.Fatal(err)
		}
		hostPub = k
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "kumo-sshd-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		os.Chmod(dir, 0o755) // sshd's children run as the user
		hostPub = writeKey(t, filepath.Join(dir, "host_key"))
		userPub := writeKey(t, filepath.Join(dir, "user_key"))
		if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(userPub), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if o.NetNS == "" && strings.HasSuffix(o.Listen, ":0") {
		ln, err := net.Listen("tcp", o.Listen)
		if err != nil {
			t.Fatal(err)
		}
		o.Listen = ln.Addr().String()
		ln.Close()
	}
	cfg := fmt.Sprintf(`ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers %s
LogLevel QUIET
`, o.Listen, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), o.User)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{Path, "-D", "-e", "-f", filepath.Join(dir, "sshd_config")}
	if o.NetNS != "" {
		args = append([]string{"ip", "netns", "exec", o.NetNS}, args...)
	}
	s := &SSHD{dir: dir, Addr: o.Listen, User: o.User, KeyFile: filepath.Join(dir, "user_key"),
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub))), done: make(chan struct{})}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Stderr = os.Stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	s.waitReady(t)
	return s
}

// waitReady dials until sshd answers with its host key, in the namespace
// when it runs in one (through the caller's routes otherwise).
func (s *SSHD) waitReady(t testing.TB) {
	t.Helper()
	signer := s.signer(t)
	hostKey, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(s.HostKey))
	cfg := &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := ssh.Dial("tcp", s.Addr, cfg)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-s.done:
			t.Fatalf("sshd on %s exited", s.Addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd on %s not answering: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond) // sshd gives no readiness signal
	}
}

func (s *SSHD) signer(t testing.TB) ssh.Signer {
	b, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// Stop kills the listening sshd and the sshd processes serving its
// connections, so clients see their connections end; what sessions started
// in sessions of their own (the agents) keeps running. Stopping twice is
// harmless.
func (s *SSHD) Stop() {
	pids := descendants(s.cmd.Process.Pid)
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	<-s.done
}

// killUID sends SIGKILL to every live process of uid and returns how many
// there were.
func killUID(uid int) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(rest); len(f) > 0 && f[0] == strconv.Itoa(uid) && !strings.Contains(string(b), "State:\tZ") {
					syscall.Kill(pid, syscall.SIGKILL)
					n++
				}
			}
		}
	}
	return n
}

// descendants returns the processes below pid whose command is sshd.
func descendants(pid int) []int {
	parent := map[int]int{}
	name := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 2 {
			continue
		}
		parent[p], _ = strconv.Atoi(f[1])
		name[p] = string(b[open+1 : end])
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				if name[p] == "sshd" {
					out = append(out, p)
				}
				break
			}
		}
	}
	return out
}

func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// NewUser returns a user for sshd to let in and a home directory it owns
// (mode 0755, so the test can read what it leaves there). As root it is a
// new user made with useradd (shell /bin/sh, login by key only), removed
// with its processes and home at the test's cleanup; otherwise it is the
// current user with a temporary directory.
func NewUser(t testing.TB) (name, home string) {
	t.Helper()
	home, err := os.MkdirTemp("", "kumo-sshuser-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o755)
	t.Cleanup(func() { os.RemoveAll(home) })
	if os.Geteuid() != 0 {
		return currentUser(t), home
	}
	var b [3]byte
	rand.Read(b[:])
	name = fmt.Sprintf("kumot%x", b)
	if out, err := exec.Command("useradd", "-M", "-d", home, "-s", "/bin/sh", "-U", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("id", "-u", name).Output(); err == nil {
			uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			for i := 0; i < 100 && killUID(uid) > 0; i++ {
				time.Sleep(20 * time.Millisecond) // SIGKILL is delivered asynchronously
			}
		}
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	// A locked account may not log in even by key; '*' unlocks it with no
	// password that could match.
	if out, err := exec.Command("usermod", "-p", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v: %s", err, out)
	}
	if out, err := exec.Command("chown", name+":"+name, home).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	return name, home
}

func currentUser(t testing.TB) string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatalf("id -un: %v", err)
	}
	return strings.TrimSpace(string(out))
}
