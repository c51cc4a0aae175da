package servercmd

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"kumo/internal/cli"
	"kumo/internal/daemon"
	"kumo/internal/model"
)

// TestCommandsJoinRoot: the server-side commands, handed to the root
// command as cmd/kumo does, are found under their names, and ssh-helper
// stays out of the help.
func TestCommandsJoinRoot(t *testing.T) {
	root := cli.NewRootCmd(Commands()...)
	tests := []struct {
		args   []string
		want   string // the found command's path
		hidden bool
	}{
		{args: []string{"up"}, want: "kumo up"},
		{args: []string{"agent"}, want: "kumo agent"},
		{args: []string{"ssh-helper"}, want: "kumo ssh-helper", hidden: true},
		{args: []string{"admin"}, want: "kumo admin"},
		{args: []string{"admin", "backup"}, want: "kumo admin backup"},
		{args: []string{"admin", "restore"}, want: "kumo admin restore"},
		{args: []string{"admin", "migrate"}, want: "kumo admin migrate"},
		{args: []string{"admin", "leader"}, want: "kumo admin leader"},
	}
	for _, tt := range tests {
		cmd, _, err := root.Find(tt.args)
		if err != nil || cmd.CommandPath() != tt.want {
			t.Errorf("Find(%q) = %v, %v; want %s", tt.args, cmd, err, tt.want)
			continue
		}
		if cmd.Hidden != tt.hidden {
			t.Errorf("%s hidden = %v, want %v", tt.want, cmd.Hidden, tt.hidden)
		}
	}
}

// TestBadFlagsChangeNothing: a server-side command given a bad flag value
// fails with a message naming the flag, before it starts anything or
// creates its data directory.
func TestBadFlagsChangeNothing(t *testing.T) {
	// kumo agent sets GOMAXPROCS to 1 unless the environment sets it.
	t.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
	t.Setenv("KUMO_AGENT_CREDENTIAL", "node-credential")
	t.Setenv("KUMO_AGENT_CA", "")
	t.Setenv(daemon.EnvDatabaseURL, "")
	tests := []struct {
		name    string
		args    []string // DIR is replaced by a directory that must stay absent
		wantErr string
	}{
		{name: "up local compute", args: []string{"up", "--data-dir", "DIR", "--local-compute", "maybe"}, wantErr: `--local-compute "maybe": want on or off`},
		{name: "up uid range", args: []string{"up", "--data-dir", "DIR", "--job-uid-range", "9-1"}, wantErr: "--job-uid-range"},
		{name: "up advertise url", args: []string{"up", "--data-dir", "DIR", "--advertise-url", "kumo1:8443"}, wantErr: `--advertise-url "kumo1:8443": want https://HOST:PORT`},
		{name: "up extra argument", args: []string{"up", "--data-dir", "DIR", "now"}, wantErr: `unknown command "now" for "kumo up"`},
		{name: "agent without url", args: []string{"agent", "--node-id", "n1", "--work-dir", "DIR"}, wantErr: `required flag(s) "url" not set`},
		{name: "agent low uid", args: []string{"agent", "--node-id", "n1", "--work-dir", "DIR", "--url", "https://127.0.0.1:1", "--job-uid", "5"}, wantErr: `--job-uid "5": want a uid of at least 1000`},
		{name: "migrate without to", args: []string{"admin", "migrate", "--from", "sqlite:DIR"}, wantErr: "both --from and --to are needed"},
		{name: "restore without file", args: []string{"admin", "restore", "--data-dir", "DIR"}, wantErr: "accepts 1 arg(s), received 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "absent")
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "DIR", dir)
			}
			root := cli.NewRootCmd(Commands()...)
			var out, errOut bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs(args)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("kumo %s: error %v, want one containing %q", strings.Join(args, " "), err, tt.wantErr)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s exists after a refused command (stat: %v)", dir, err)
			}
			if out.Len() > 0 {
				t.Errorf("stdout = %q, want nothing", out.String())
			}
		})
	}
}

// TestPrintLease: kumo admin leader shows who holds the lease, marks a
// released or expired one, and escapes control characters read from the
// store.
func TestPrintLease(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	held := model.Lease{
		Name: "controller", Holder: "r1", Address: "10.0.0.1:8443", Term: 3,
		AcquiredAt: now.Add(-time.Minute), RenewedAt: now.Add(-2 * time.Second), ExpiresAt: now.Add(13 * time.Second),
	}
	released := held
	released.Holder, released.ExpiresAt = "", now.Add(-time.Second)
	expired := held
	expired.ExpiresAt = now.Add(-1500 * time.Millisecond)
	hostile := held
	hostile.Holder, hostile.Address = "r1\x1b[2J", "\n10.0.0.9:1"
	tests := []struct {
		name  string
		lease model.Lease
		want  string
	}{
		{name: "held", lease: held, want: `Lease:        controller
Holder:       r1
Address:      10.0.0.1:8443
Term:         3
Acquired:     2026-01-02T03:03:05Z (1m0s ago)
Last renewed: 2026-01-02T03:04:03Z (2s ago)
Expires:      2026-01-02T03:04:18Z (in 13s)
`},
		{name: "released", lease: released, want: `Lease:        controller
Holder:       none (released)
Address:      -
Term:         3
Acquired:     2026-01-02T03:03:05Z (1m0s ago)
Last renewed: 2026-01-02T03:04:03Z (2s ago)
Expires:      2026-01-02T03:04:04Z (1s ago), expired
`},
		{name: "expired", lease: expired, want: `Lease:        controller
Holder:       r1
Address:      10.0.0.1:8443
Term:         3
Acquired:     2026-01-02T03:03:05Z (1m0s ago)
Last renewed: 2026-01-02T03:04:03Z (2s ago)
Expires:      2026-01-02T03:04:03.5Z (1.5s ago), expired
`},
		{name: "control characters", lease: hostile, want: `Lease:        controller
Holder:       r1\x1b[2J
Address:      \n10.0.0.9:1
Term:         3
Acquired:     2026-01-02T03:03:05Z (1m0s ago)
Last renewed: 2026-01-02T03:04:03Z (2s ago)
Expires:      2026-01-02T03:04:18Z (in 13s)
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printLease(&b, tt.lease, now); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("printLease:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
