// Package scalebench holds the control plane's scale benchmarks: the
// dispatcher, the autoscaler and the node health checker running against a
// real SQLite store and the fake provider, with thousands of nodes and a
// long queue. It has no code of its own; see scale_test.go and
// BENCHMARKS.md.
package scalebench
