// Package archtest holds no code, only tests that keep kumo's architecture
// true as it grows, in the manner of Tailscale's pkgdoc_test.go and import
// tests: every package in the module carries a package doc comment, and the
// import boundaries of kumo's layout hold (dependencies point one way:
// cmd → cli/server/agent/controller → store/provider → model).
//
// The rules it checks:
//
//   - api and client import only the standard library (client also kumo/api),
//     so the public SDK stays free of kumo's internals and of dependencies;
//   - internal/model imports only the standard library;
//   - internal/store and its backends never import internal/server,
//     internal/cli or internal/controller: dependencies point one way;
//   - only cmd/kumo imports internal/cli.
//
// The tests read the module's packages with "go list -json", so they need
// the go command on PATH. A broken rule fails with the package and import
// that broke it; fix the import, not the rule.
package archtest
