package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeTour runs the README's tour with the kumo CLI against a live
// server, from a subdirectory (the config is found by walking up).
func TestReadmeTour(t *testing.T) {
	s := startServer(t, "")
	dir := filepath.Join(s.dir, "project", "src")
	if err := mkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		want []string
	}{
		{[]string{"compute", "list-sizes"}, []string{"Standard_D2_v2", "CPU", "0.146"}},
		{[]string{"compute", "create", "--name", "cpu-cluster", "--size", "STANDARD_D2_V2", "--max-instances", "4", "--idle-time-before-scale-down", "2400"},
			[]string{`Provisioning operation finished, operation "Succeeded"`, "Minimum number of nodes requested have been provisioned"}},
		{[]string{"compute", "list"}, []string{"cpu-cluster", "Succeeded", "Standard_D2_v2", "PT40M"}},
		{[]string{"compute", "show", "--name", "cpu-cluster", "-o", "json"}, []string{`"provisioningState": "Succeeded"`, `"maxNodeCount": 4`}},
		{[]string{"compute", "update", "--name", "cpu-cluster", "--max-instances", "8"}, nil},
		{[]string{"compute", "show", "--name", "cpu-cluster", "-o", "json"}, []string{`"maxNodeCount": 8`}},
		{[]string{"compute", "list-usage"}, []string{"Standard Dv2 Family vCPUs", "100"}},
		{[]string{"compute", "list-nodes", "--name", "cpu-cluster"}, nil},
		{[]string{"compute", "delete", "--name", "cpu-cluster", "--yes"}, nil},
	}
	for _, st := range steps {
		out, err := run(t, dir, st.args...)
		if err != nil {
			t.Fatalf("kumo %s: %v\n%s", strings.Join(st.args, " "), err, out)
		}
		for _, w := range st.want {
			if !strings.Contains(out, w) {
				t.Errorf("kumo %s: output lacks %q:\n%s", strings.Join(st.args, " "), w, out)
			}
		}
	}
	out, err := run(t, dir, "compute", "show", "--name", "cpu-cluster")
	if err == nil || !strings.Contains(out, "ResourceNotFound") {
		t.Errorf("show after delete: err %v, output %q; want a non-zero exit with ResourceNotFound", err, out)
	}
	out, err = run(t, dir, "compute", "create", "--name", "x", "--size", "STANDARD_D2_V2", "--max-instances", "1")
	if err == nil || !strings.Contains(out, "Error: InvalidComputeName:") {
		t.Errorf("bad name: err %v, output %q", err, out)
	}

	// A reader token can look but not touch.
	secret, err := run(t, dir, "token", "create", "--name", "bob", "--role", "reader")
	if err != nil {
		t.Fatalf("token create: %v %s", err, secret)
	}
	reader := strings.TrimSpace(lastLine(secret))
	rdir := t.TempDir()
	if out, err := run(t, rdir, "login", "--endpoint", s.base, "--token", reader, "--ca-file", filepath.Join(s.dir, ".kumo", "ca.pem")); err != nil {
		t.Fatalf("login: %v %s", err, out)
	}
	if out, err := run(t, rdir, "compute", "list"); err != nil {
		t.Errorf("reader list: %v %s", err, out)
	}
	out, err = run(t, rdir, "compute", "create", "--name", "nope", "--size", "Standard_D2_v2", "--max-instances", "1", "--no-wait")
	if err == nil || !strings.Contains(out, "AuthorizationFailed") {
		t.Errorf("reader create: err %v, output %q; want AuthorizationFailed", err, out)
	}
}

// TestGetOrCreateExample runs examples/get-or-create twice against a live
// server: first it creates the cluster, then it finds it.
func TestGetOrCreateExample(t *testing.T) {
	s := startServer(t, "")
	bin := filepath.Join(binDir, "get-or-create")
	if out, err := exec.Command("go", "build", "-o", bin, "kumo/examples/get-or-create").CombinedOutput(); err != nil {
		t.Fatalf("build example: %v\n%s", err, out)
	}
	for i, want := range []string{"Minimum number of nodes requested have been provisioned", "Found existing cluster, use it."} {
		cmd := exec.Command(bin)
		cmd.Dir = s.dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("run %d output lacks %q:\n%s", i, want, out)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
