#!/usr/bin/env bash
# Prints kumo's performance figures, as recorded in BENCHMARKS.md. Run it on
# an otherwise idle machine; it takes about two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
	echo "== $*"
	go test -run '^$' -timeout 30m "$@" | grep -E '^Benchmark'
}

# Submit → process started on an idle node (one node, 1,000 trivial jobs).
run -bench 'BenchmarkSubmitToStart$' -benchtime 1000x ./internal/e2e
# Queued job → the node provider's Create call (1,000 jobs).
run -bench 'BenchmarkQueuedToCreate$' -benchtime 1000x ./internal/controller/autoscale
# The control plane at scale: fake provider, real SQLite store, 100,000
# queued jobs, 1,000 nodes (about a minute) and 10,000 nodes (about five).
run -bench 'BenchmarkScale/nodes=1000$' -benchtime 1x ./internal/controller/scalebench
run -bench 'BenchmarkScale/nodes=10000$' -benchtime 1x ./internal/controller/scalebench
# Queued job → process started on a new node: local provider, and (as root,
# with ip and sshd) the SSH-hosts provider.
run -bench 'BenchmarkLocalNodeReady$|BenchmarkSSHHostsNodeReady$' -benchtime 20x ./internal/e2e
# Trivial jobs completed per second through an 8-node local cluster.
run -bench 'BenchmarkThroughput8Nodes$' -benchtime 3000x ./internal/e2e
# This host's ceiling: bare process spawns, and one job through the runner.
run -bench 'BenchmarkSpawnShell$|BenchmarkRunTrivial$' -benchtime 2000x ./internal/runner
# SSH through the control plane's tunnel beside a direct connection (needs
# Debian's openssh-client): 100 `ssh node true`, and scp of 100 MB.
run -bench 'BenchmarkSSHRoundTrip$' -benchtime 100x ./internal/e2e
run -bench 'BenchmarkSCPThroughput$' -benchtime 3x ./internal/e2e
