package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Config is the content of a kumo configuration file (.kumo/config.json),
// the counterpart of AML's config.json.
type Config struct {
	// Endpoint is the base URL of the kumo server, such as
	// "https://127.0.0.1:8443". Required.
	Endpoint string `json:"endpoint"`
	// SubscriptionID, ResourceGroup and WorkspaceName address the workspace.
	SubscriptionID string `json:"subscription_id"`
	ResourceGroup  string `json:"resource_group"`
	WorkspaceName  string `json:"workspace_name"`
	// Token is the bearer token sent with every request. Empty sends none.
	Token string `json:"token,omitempty"`
	// CAFile is a PEM file holding the CA certificate that signed the
	// server's certificate. Empty uses the system roots. LoadConfig
	// resolves a relative path against the configuration file's directory.
	CAFile string `json:"ca_file,omitempty"`
}

// Configuration file names that FromConfig looks for.
const (
	// ConfigDir is the directory, inside a project directory, that holds
	// the configuration file.
	ConfigDir = ".kumo"
	// ConfigFileName is the configuration file's name.
	ConfigFileName = "config.json"
)

// LoadConfig reads the configuration file at path. A relative CAFile is
// made absolute against the file's directory.
func LoadConfig(path string) (Config, error) {
	var cfg Config
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("parse config %s: %w", path, err)
	}
	if cfg.CAFile != "" && !filepath.IsAbs(cfg.CAFile) {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(path), cfg.CAFile))
		if err != nil {
			return cfg, fmt.Errorf("resolve ca_file: %w", err)
		}
		cfg.CAFile = abs
	}
	return cfg, nil
}

// Write writes c to path as indented JSON with mode 0600, creating missing
// directories with mode 0700. The file holds the token, so only its owner
// may read it.
func (c Config) Write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	b = append(b, '\n')
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	// WriteFile keeps the mode of an existing file; tighten it.
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// FindConfig returns the path of the configuration file for path, as
// FromConfig chooses it: path itself when it is a file; otherwise, starting
// at the directory path ("" means "."), the first of <dir>/.kumo/config.json
// and <dir>/config.json that exists, walking up through the parent
// directories.
func FindConfig(path string) (string, error) {
	if path == "" {
		path = "."
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("find config: %w", err)
	}
	if !fi.IsDir() {
		return path, nil
	}
	start, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("find config: %w", err)
	}
	for dir := start; ; {
		for _, p := range []string{
			filepath.Join(dir, ConfigDir, ConfigFileName),
			filepath.Join(dir, ConfigFileName),
		} {
			fi, err := os.Stat(p)
			if err == nil && !fi.IsDir() {
				return p, nil
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("find config: %w", err)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("the workspace configuration file %s could not be found in %s/%s, %s or its parent directories; run \"kumo login\" or pass the file's path",
		ConfigFileName, start, ConfigDir, start)
}

// FromConfig finds the configuration file for path (see FindConfig), loads
// it and returns a Workspace for it, like AML's Workspace.from_config. It
// makes no request.
func FromConfig(path string, opts ...Option) (*Workspace, error) {
	p, err := FindConfig(path)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts...)
}
