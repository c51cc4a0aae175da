package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReadmeTour runs every shell command of the README's tour and job
// sections, in order, on a fresh data directory, as a reader would in the
// directory where kumo up runs: each sh block is one shell script run with
// -e, so every command in it must succeed. A yaml block is written to the
// file the text before it names (such as hello/job.yml). The test's
// directory is not a clone, so a "go" on the PATH builds the README's two
// Go programs from this module.
func TestReadmeTour(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, string(readme), "## A five-minute tour", "## How kumo differs from AML")
	s := startServer(t, "", fastNodes...)
	dir := s.dir
	shim := goShim(t)
	ran := 0
	var all strings.Builder
	for _, b := range blocks {
		switch b.lang {
		case "yaml":
			if b.file == "" {
				t.Fatalf("README: a yaml block is not preceded by the name of its file:\n%s", b.body)
			}
			path := filepath.Join(dir, b.file)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(b.body), 0o644); err != nil {
				t.Fatal(err)
			}
		case "sh":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			cmd := exec.CommandContext(ctx, "sh", "-e", "-x", "-c", b.body)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PATH="+shim+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("README block failed: %v\n--- block:\n%s\n--- output:\n%s", err, b.body, out)
			}
			all.Write(out)
			ran++
		}
	}
	if ran < 6 {
		t.Fatalf("ran %d sh blocks of the README; the tour and job sections have more", ran)
	}
	wantContains(t, "README tour output", all.String(),
		"Standard_D2_v2",
		"Minimum number of nodes requested have been provisioned",
		"already existed and was updated", "max_instances: 2 -> 3",
		"hello",
		"greeting=hello from=kumo",
		"done",
	)
	if strings.Contains(all.String(), "cpu-cluster already existed") {
		t.Errorf("the README's steps reconfigure cpu-cluster with create:\n%s", all.String())
	}
}

// readmeBlock is one fenced code block of the README.
type readmeBlock struct {
	lang, body string
	// file is the last `name.yml` the text before the block names.
	file string
}

var ymlName = regexp.MustCompile("`([\\w./-]+\\.ya?ml)`")

// readmeBlocks returns the fenced blocks between the headings from and to.
func readmeBlocks(t *testing.T, readme, from, to string) []readmeBlock {
	t.Helper()
	i, j := strings.Index(readme, "\n"+from+"\n"), strings.Index(readme, "\n"+to+"\n")
	if i < 0 || j < i {
		t.Fatalf("README has no section %q before %q", from, to)
	}
	var out []readmeBlock
	var text strings.Builder
	var cur *readmeBlock
	for _, line := range strings.Split(readme[i:j], "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(line, "```")}
			if m := ymlName.FindAllStringSubmatch(text.String(), -1); len(m) > 0 {
				cur.file = m[len(m)-1][1]
			}
			text.Reset()
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		default:
			text.WriteString(line + "\n")
		}
	}
	return out
}

// goShim returns a directory holding a "go" command that does what the
// README's go commands do in a clone of this module: build the kumo CLI
// into the current directory, and run the get-or-create example there.
func goShim(t *testing.T) string {
	t.Helper()
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
case "$*" in
"build -o kumo ./cmd/kumo") exec %[1]q -C %[2]q build -o "$PWD/kumo" ./cmd/kumo ;;
"run ./examples/get-or-create") %[1]q -C %[2]q build -o %[3]q ./examples/get-or-create && exec %[3]q ;;
esac
echo "the README tour test does not know: go $*" >&2
exit 2
`, realGo, repo, filepath.Join(dir, "get-or-create"))
	if err := os.WriteFile(filepath.Join(dir, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTourErrorsAndReader checks what the tour says about errors, and that
// a reader token can look but not touch.
func TestTourErrorsAndReader(t *testing.T) {
	s := startServer(t, "")
	dir := filepath.Join(s.dir, "project", "src")
	if err := mkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, dir, "compute", "show", "--name", "cpu-cluster")
	if err == nil || !strings.Contains(out, "ResourceNotFound") {
		t.Errorf("show of a missing cluster: err %v, output %q; want a non-zero exit with ResourceNotFound", err, out)
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
