package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"kumo/internal/agentproto"
	"kumo/internal/secret"
)

const testPassword = "right-Passw0rd"

// newTestServer returns a Server accepting user "admin" with
// testPassword, with quick limits, and the reports it made.
func newTestServer(t *testing.T) (*Server, *reports) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	r := &reports{}
	s, err := New(Config{HostKey: signer, Dir: t.TempDir, Report: r.add,
		Limits: Limits{SlowAfter: 3, RefuseAfter: 10, Delay: time.Millisecond, Window: time.Hour, Block: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := secret.HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLogin(&agentproto.SSHSettings{User: "admin", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, r
}

// tcpPair returns both ends of a loopback TCP connection (net.Pipe does
// not do: both sides of SSH write their version line at once).
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return cli, srv
}

type reports struct {
	mu   sync.Mutex
	msgs []string
}

func (r *reports) add(source, user, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, source+"|"+user+"|"+msg)
}

func (r *reports) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// tryLogin tries one password login from source and runs "exit 3".
func tryLogin(t *testing.T, s *Server, source, user, pw string) error {
	t.Helper()
	cli, srv := tcpPair(t)
	done := make(chan struct{})
	go func() {
		s.ServeConn(srv, source)
		close(done)
	}()
	defer func() {
		cli.Close()
		<-done
	}()
	conf := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	c, chans, reqs, err := ssh.NewClientConn(cli, "node", conf)
	if err != nil {
		return err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer sess.Close()
	err = sess.Run("exit 3")
	if ee, ok := err.(*ssh.ExitError); !ok || ee.ExitStatus() != 3 {
		t.Fatalf("run exit 3: %v, want exit status 3", err)
	}
	return nil
}

// TestWrongPasswordsRefusedBeforeTheHash: 50 wrong passwords in a row from
// one source are refused, and past the limit no hash is computed; the
// admin still logs in from another source, and not from the refused one.
func TestWrongPasswordsRefusedBeforeTheHash(t *testing.T) {
	s, r := newTestServer(t)
	for i := range 50 {
		if err := tryLogin(t, s, "10.0.0.66", "admin", "wrong"); err == nil {
			t.Fatalf("wrong password %d accepted", i)
		}
	}
	if got, limit := s.hashes.Load(), int64(10); got > limit {
		t.Errorf("%d hash checks for 50 wrong passwords, want at most %d (the limit)", got, limit)
	}
	before := s.hashes.Load()
	if err := tryLogin(t, s, "10.0.0.66", "admin", testPassword); err == nil {
		t.Errorf("the refused source logged in during its block")
	}
	if got := s.hashes.Load(); got != before {
		t.Errorf("a refused source's login computed %d hashes, want none", got-before)
	}
	if err := tryLogin(t, s, "10.0.0.7", "admin", testPassword); err != nil {
		t.Fatalf("admin from another source: %v", err)
	}
	msgs := r.all()
	var refused, blocked int
	for _, m := range msgs {
		if strings.Contains(m, testPassword) || strings.Contains(m, "|wrong|") {
			t.Errorf("a report holds a password: %q", m)
		}
		if strings.HasPrefix(m, "10.0.0.66|admin|") {
			refused++
		}
		if strings.HasPrefix(m, "10.0.0.66||too many") {
			blocked++
		}
	}
	if refused != 10 || blocked != 1 {
		t.Errorf("reports: %d refusals and %d blocks, want 10 and 1:\n%s", refused, blocked, strings.Join(msgs, "\n"))
	}
}

// TestLogin checks the credentials table: only the admin user with the
// password gets in.
func TestLogin(t *testing.T) {
	tests := []struct {
		name, user, pw string
		ok             bool
	}{
		{"admin and password", "admin", testPassword, true},
		{"wrong password", "admin", testPassword + "x", false},
		{"wrong user", "root", testPassword, false},
		{"empty password", "admin", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t)
			err := tryLogin(t, s, "src", tt.user, tt.pw)
			if (err == nil) != tt.ok {
				t.Errorf("login(%q, %q) error = %v, want ok %v", tt.user, tt.pw, err, tt.ok)
			}
			if s.Open() != 0 {
				t.Errorf("Open() = %d after the connection ended, want 0", s.Open())
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	lm := newLimiter(Limits{SlowAfter: 2, RefuseAfter: 4, Delay: time.Second, Window: time.Minute, Block: 5 * time.Minute}, func() time.Time { return now })
	type step struct {
		advance   time.Duration
		fail      bool // record a failure before checking
		wantDelay time.Duration
		wantRef   bool
	}
	steps := []step{
		{0, false, 0, false},
		{0, true, 0, false},
		{0, true, time.Second, false}, // slowed from the second failure
		{0, true, time.Second, false},
		{0, true, 0, true},                 // refused at the fourth
		{4 * time.Minute, false, 0, true},  // still refused
		{2 * time.Minute, false, 0, false}, // the block is over
		{0, true, 0, false},                // counting starts again
		{2 * time.Minute, true, 0, false},  // an old window is forgotten
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		if st.fail {
			lm.fail("a")
		}
		d, ref := lm.check("a")
		if d != st.wantDelay || ref != st.wantRef {
			t.Errorf("step %d: check = %s, %v; want %s, %v", i, d, ref, st.wantDelay, st.wantRef)
		}
		if d, ref := lm.check("b"); d != 0 || ref {
			t.Errorf("step %d: another source is limited: %s, %v", i, d, ref)
		}
	}
}
