// Package cli implements the kumo command line, in the style of the GitHub
// CLI: one file per command, each built by a NewCmdX(f, runF) constructor
// that fills an XOptions struct and calls runF (a test hook) or the real
// run function. Commands talk to the server only through kumo/client and
// take their input and output streams from the Factory, so tests run them
// against an httptest server with buffers.
package cli
