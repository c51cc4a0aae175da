package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// modulePath is the module these tests guard.
const modulePath = "kumo"

// pkg is the part of "go list -json" output the tests read.
type pkg struct {
	ImportPath   string
	Name         string
	Dir          string
	Doc          string
	GoFiles      []string
	CgoFiles     []string
	TestGoFiles  []string
	XTestGoFiles []string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

var (
	listOnce sync.Once
	listPkgs []pkg
	listErr  error
)

// modulePackages lists every package of the module, once per test binary.
func modulePackages(t *testing.T) []pkg {
	t.Helper()
	listOnce.Do(func() { listPkgs, listErr = goList() })
	if listErr != nil {
		t.Fatal(listErr)
	}
	return listPkgs
}

func goList() ([]pkg, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(gobin, "list", "-e", "-json", modulePath+"/...")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, errors.New("go list: " + err.Error() + ": " + stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&stdout)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, errors.New("decode go list output: " + err.Error())
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return nil, errors.New("go list found no packages")
	}
	return pkgs, nil
}

func TestGoListSeesModule(t *testing.T) {
	pkgs := modulePackages(t)
	for _, want := range []string{"kumo/api", "kumo/client", "kumo/cmd/kumo", "kumo/internal/model", "kumo/internal/store", "kumo/internal/archtest"} {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == want }) {
			t.Errorf("go list did not report %s; the rules below would check nothing", want)
		}
	}
	for _, p := range pkgs {
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
	}
}

// TestPackageDocs checks that every package has a package doc comment in
// one of its files (test-only packages in a test file), starting "Package
// <name>" or, for commands, "Command ".
func TestPackageDocs(t *testing.T) {
	for _, p := range modulePackages(t) {
		doc := p.Doc
		if doc == "" {
			doc = fileDoc(t, p)
		}
		switch {
		case doc == "":
			t.Errorf("%s has no package doc comment; add one (in doc.go if it is long)", p.ImportPath)
		case p.Name == "main" && !strings.HasPrefix(doc, "Command "):
			t.Errorf("%s: package doc %q should start \"Command <name>\"", p.ImportPath, firstLine(doc))
		case p.Name != "main" && !strings.HasPrefix(doc, "Package "+p.Name+" "):
			t.Errorf("%s: package doc %q should start \"Package %s\"", p.ImportPath, firstLine(doc), p.Name)
		}
	}
}

// fileDoc returns the first package doc comment found in p's files, test
// files included: go list reports Doc only from non-test files.
func fileDoc(t *testing.T, p pkg) string {
	t.Helper()
	files := slices.Concat(p.GoFiles, p.CgoFiles, p.TestGoFiles, p.XTestGoFiles)
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Errorf("parse %s: %v", name, err)
			continue
		}
		if f.Doc != nil {
			return f.Doc.Text()
		}
	}
	return ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// isStd reports whether an import path is in the standard library: its
// first element has no dot (as the go command decides) and it is not in
// this module.
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") && !within(path, modulePath) && path != "C"
}

// within reports whether path is root or a package below it.
func within(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+"/")
}

// rule is one import boundary.
type rule struct {
	name string
	// applies selects the packages the rule constrains.
	applies func(p pkg) bool
	// imports selects what to check of such a package: its direct imports,
	// its transitive dependencies, its test imports...
	imports func(p pkg) []string
	// allowed reports whether the package may import path.
	allowed func(path string) bool
}

func direct(p pkg) []string { return p.Imports }

// everything is the package's transitive dependencies and its tests'
// direct imports.
func everything(p pkg) []string { return slices.Concat(p.Deps, p.TestImports, p.XTestImports) }

// allDirect is the package's and its tests' direct imports.
func allDirect(p pkg) []string { return slices.Concat(p.Imports, p.TestImports, p.XTestImports) }

func is(paths ...string) func(p pkg) bool {
	return func(p pkg) bool { return slices.Contains(paths, p.ImportPath) }
}

func stdOr(paths ...string) func(string) bool {
	return func(path string) bool { return isStd(path) || slices.Contains(paths, path) }
}

// notWithin allows any import except roots and the packages below them.
func notWithin(roots ...string) func(string) bool {
	return func(path string) bool {
		return !slices.ContainsFunc(roots, func(r string) bool { return within(path, r) })
	}
}

var rules = []rule{
	{
		name:    "api imports only the standard library",
		applies: is("kumo/api"),
		imports: direct,
		allowed: stdOr(),
	},
	{
		name:    "client imports only the standard library and kumo/api",
		applies: is("kumo/client"),
		imports: direct,
		allowed: stdOr("kumo/api"),
	},
	{
		name:    "internal/model imports only the standard library",
		applies: is("kumo/internal/model"),
		imports: direct,
		allowed: stdOr(),
	},
	{
		name:    "internal/store does not depend on server, cli or controller",
		applies: func(p pkg) bool { return within(p.ImportPath, "kumo/internal/store") },
		imports: everything,
		allowed: notWithin("kumo/internal/server", "kumo/internal/cli", "kumo/internal/controller"),
	},
	{
		name: "only cmd/kumo and internal/servercmd import internal/cli",
		applies: func(p pkg) bool {
			return p.ImportPath != "kumo/cmd/kumo" && !within(p.ImportPath, "kumo/internal/servercmd") && !within(p.ImportPath, "kumo/internal/cli")
		},
		imports: allDirect,
		allowed: notWithin("kumo/internal/cli"),
	},
	{
		name:    "internal/cli does not depend on daemon, agent, server or store",
		applies: func(p pkg) bool { return within(p.ImportPath, "kumo/internal/cli") },
		imports: everything,
		allowed: notWithin("kumo/internal/daemon", "kumo/internal/agent", "kumo/internal/server", "kumo/internal/store"),
	},
	{
		name: "only cmd/kumo and internal/servercmd import internal/daemon",
		applies: func(p pkg) bool {
			return p.ImportPath != "kumo/cmd/kumo" && !within(p.ImportPath, "kumo/internal/servercmd") && !within(p.ImportPath, "kumo/internal/daemon")
		},
		imports: allDirect,
		allowed: notWithin("kumo/internal/daemon"),
	},
}

// violations returns "pkg imports path (rule)" for every import of pkgs
// that breaks rules.
func violations(pkgs []pkg, rules []rule) []string {
	var out []string
	for _, r := range rules {
		for _, p := range pkgs {
			if !r.applies(p) {
				continue
			}
			seen := map[string]bool{}
			for _, path := range r.imports(p) {
				if !seen[path] && !r.allowed(path) {
					out = append(out, p.ImportPath+" imports "+path+" ("+r.name+")")
				}
				seen[path] = true
			}
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	pkgs := modulePackages(t)
	for _, r := range rules {
		if !slices.ContainsFunc(pkgs, r.applies) {
			t.Errorf("rule %q applies to no package; update it to the module's layout", r.name)
		}
	}
	for _, v := range violations(pkgs, rules) {
		t.Error(v)
	}
}

// TestRulesCatch checks that each rule fails on a package that breaks it and
// passes the imports it allows, so that a rule cannot pass by matching
// nothing.
func TestRulesCatch(t *testing.T) {
	tests := []struct {
		name string
		pkgs []pkg
		want []string
	}{
		{
			name: "clean",
			pkgs: []pkg{
				{ImportPath: "kumo/api", Imports: []string{"encoding/json", "time"}},
				{ImportPath: "kumo/client", Imports: []string{"kumo/api", "net/http"}},
				{ImportPath: "kumo/internal/model", Imports: []string{"crypto/ecdh", "math/big"}},
				{ImportPath: "kumo/internal/store/sqlite", Deps: []string{"kumo/internal/model", "kumo/internal/store", "modernc.org/sqlite"}, TestImports: []string{"kumo/internal/store/storetest"}},
				{ImportPath: "kumo/cmd/kumo", Imports: []string{"kumo/internal/cli", "kumo/internal/servercmd"}},
				{ImportPath: "kumo/internal/cli", Imports: []string{"kumo/client"}, Deps: []string{"kumo/api", "kumo/client"}, XTestImports: []string{"kumo/internal/cli"}},
				{ImportPath: "kumo/internal/servercmd", Imports: []string{"kumo/internal/cli", "kumo/internal/daemon", "kumo/internal/agent"}},
				{ImportPath: "kumo/internal/daemon", Imports: []string{"kumo/internal/server", "kumo/internal/store"}, TestImports: []string{"kumo/internal/daemon"}},
			},
		},
		{
			name: "dirty",
			pkgs: []pkg{
				{ImportPath: "kumo/api", Imports: []string{"time", "github.com/google/uuid"}},
				{ImportPath: "kumo/client", Imports: []string{"kumo/api", "kumo/internal/model", "golang.org/x/net/http2"}},
				{ImportPath: "kumo/internal/model", Imports: []string{"kumo/internal/secret"}},
				{ImportPath: "kumo/internal/store", Deps: []string{"kumo/internal/controller/provision"}},
				{ImportPath: "kumo/internal/store/sqlite", Deps: []string{"kumo/internal/serverless"}, TestImports: []string{"kumo/internal/server"}},
				{ImportPath: "kumo/internal/server", Imports: []string{"kumo/internal/cli/cmdutil"}},
				{ImportPath: "kumo/internal/e2e", TestImports: []string{"kumo/internal/cli"}},
				{ImportPath: "kumo/internal/cli", Deps: []string{"kumo/client", "kumo/internal/daemon", "kumo/internal/agent/sshd", "kumo/internal/serverless"}, TestImports: []string{"kumo/internal/store/sqlite"}},
				{ImportPath: "kumo/internal/cli/cmdutil", Deps: []string{"kumo/internal/server"}},
				{ImportPath: "kumo/internal/controller", Imports: []string{"kumo/internal/daemon"}},
			},
			want: []string{
				"kumo/api imports github.com/google/uuid (api imports only the standard library)",
				"kumo/client imports kumo/internal/model (client imports only the standard library and kumo/api)",
				"kumo/client imports golang.org/x/net/http2 (client imports only the standard library and kumo/api)",
				"kumo/internal/model imports kumo/internal/secret (internal/model imports only the standard library)",
				"kumo/internal/store imports kumo/internal/controller/provision (internal/store does not depend on server, cli or controller)",
				"kumo/internal/store/sqlite imports kumo/internal/server (internal/store does not depend on server, cli or controller)",
				"kumo/internal/server imports kumo/internal/cli/cmdutil (only cmd/kumo and internal/servercmd import internal/cli)",
				"kumo/internal/e2e imports kumo/internal/cli (only cmd/kumo and internal/servercmd import internal/cli)",
				"kumo/internal/cli imports kumo/internal/daemon (internal/cli does not depend on daemon, agent, server or store)",
				"kumo/internal/cli imports kumo/internal/agent/sshd (internal/cli does not depend on daemon, agent, server or store)",
				"kumo/internal/cli imports kumo/internal/store/sqlite (internal/cli does not depend on daemon, agent, server or store)",
				"kumo/internal/cli/cmdutil imports kumo/internal/server (internal/cli does not depend on daemon, agent, server or store)",
				"kumo/internal/controller imports kumo/internal/daemon (only cmd/kumo and internal/servercmd import internal/daemon)",
			},
		},
	}
	for _, tt := range tests {
		got := violations(tt.pkgs, rules)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: violations mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestIsStd(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"fmt", true},
		{"net/http", true},
		{"crypto/ecdh", true},
		{"kumo", false},
		{"kumo/api", false},
		{"golang.org/x/crypto/ssh", false},
		{"github.com/google/go-cmp/cmp", false},
		{"C", false},
	}
	for _, tt := range tests {
		if got := isStd(tt.path); got != tt.want {
			t.Errorf("isStd(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}
