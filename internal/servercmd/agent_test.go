package servercmd

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAgentSecretsFromEnv: without --credential-file and --ca-file, the
// agent takes its credential and CA from the environment (the Kubernetes
// provider's Secret), the CA written to a 0600 file in the work directory.
func TestAgentSecretsFromEnv(t *testing.T) {
	dir := t.TempDir()
	credFile := filepath.Join(dir, "credential")
	if err := os.WriteFile(credFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		credFile, ca   string
		envCred, envCA string
		wantCred       string
		wantCAFile     string // "" means none; "work" means work/ca.pem
		wantErr        bool
	}{
		{name: "file wins", credFile: credFile, envCred: "from-env", wantCred: "from-file\n"},
		{name: "env", envCred: "from-env", envCA: "PEM", wantCred: "from-env", wantCAFile: "work"},
		{name: "ca flag wins", envCred: "from-env", envCA: "PEM", ca: "/etc/ca.pem", wantCred: "from-env", wantCAFile: "/etc/ca.pem"},
		{name: "none", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUMO_AGENT_CREDENTIAL", tt.envCred)
			t.Setenv("KUMO_AGENT_CA", tt.envCA)
			work := filepath.Join(t.TempDir(), "work")
			o := &agentOptions{credentialFile: tt.credFile, caFile: tt.ca, workDir: work}
			cred, err := o.credential()
			if (err != nil) != tt.wantErr {
				t.Fatalf("credential() = %q, %v; want error %v", cred, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if string(cred) != tt.wantCred {
				t.Errorf("credential() = %q, want %q", cred, tt.wantCred)
			}
			if err := o.caFromEnv(); err != nil {
				t.Fatal(err)
			}
			want := tt.wantCAFile
			if want == "work" {
				want = filepath.Join(work, "ca.pem")
				b, err := os.ReadFile(want)
				fi, _ := os.Stat(want)
				if err != nil || string(b) != tt.envCA || fi.Mode().Perm() != 0o600 {
					t.Errorf("CA file: %q, %v, mode %v; want %q, mode 0600", b, err, fi.Mode(), tt.envCA)
				}
			}
			if o.caFile != want {
				t.Errorf("ca file = %q, want %q", o.caFile, want)
			}
		})
	}
}
