package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, path, ws string) {
	t.Helper()
	cfg := Config{Endpoint: "https://127.0.0.1:8443", SubscriptionID: "s", ResourceGroup: "rg", WorkspaceName: ws, Token: "t"}
	if err := cfg.Write(path); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func TestFromConfigLookupOrder(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // path under root -> workspace name written there
		start string            // under root; "" is root
		want  string            // workspace name found
	}{
		{"dot kumo in start", map[string]string{".kumo/config.json": "a"}, "", "a"},
		{"plain config in start", map[string]string{"config.json": "b"}, "", "b"},
		{"dot kumo wins over plain", map[string]string{".kumo/config.json": "a", "config.json": "b"}, "", "a"},
		{"parent dot kumo", map[string]string{".kumo/config.json": "p"}, "x/y", "p"},
		{"nearest dir wins", map[string]string{".kumo/config.json": "p", "x/config.json": "near"}, "x/y", "near"},
		{"explicit file", map[string]string{"other/my.json": "f", ".kumo/config.json": "a"}, "other/my.json", "f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, ws := range tt.files {
				writeConfig(t, filepath.Join(root, p), ws)
			}
			start := filepath.Join(root, tt.start)
			if err := os.MkdirAll(start, 0o700); err != nil && !strings.HasSuffix(tt.start, ".json") {
				t.Fatal(err)
			}
			w, err := FromConfig(start)
			if err != nil {
				t.Fatalf("FromConfig(%s): %v", tt.start, err)
			}
			if got := w.Name(); got != tt.want {
				t.Errorf("workspace = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFromConfigNotFound(t *testing.T) {
	start := filepath.Join(t.TempDir(), "proj")
	if err := os.Mkdir(start, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := FromConfig(start)
	if err == nil {
		t.Fatal("FromConfig: got nil error, want not found")
	}
	for _, want := range []string{start, ".kumo", "parent directories", "config.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestConfigWriteAndCAFile(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "new", ".kumo", "config.json")
	cfg := Config{Endpoint: "https://h:1", SubscriptionID: "s", ResourceGroup: "r", WorkspaceName: "w", Token: "t", CAFile: "ca.pem"}
	if err := cfg.Write(path); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %o, want %o", p, got, want)
		}
	}
	got, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if want := filepath.Join(root, "new", ".kumo", "ca.pem"); got.CAFile != want {
		t.Errorf("CAFile = %q, want %q", got.CAFile, want)
	}
	got.CAFile = cfg.CAFile
	if got != cfg {
		t.Errorf("LoadConfig = %+v, want %+v", got, cfg)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{Endpoint: "https://h:1", SubscriptionID: "s", ResourceGroup: "r", WorkspaceName: "w"}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "endpoint is required"},
		{"not http", func(c *Config) { c.Endpoint = "ftp://h" }, "not an http(s) URL"},
		{"no workspace", func(c *Config) { c.WorkspaceName = "" }, "workspace_name is required"},
		{"missing CA file", func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }, "ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
