#!/usr/bin/env bash
# Prints kumo's performance figures, as recorded in BENCHMARKS.md. Run it on
# an otherwise idle machine; it takes about fifteen minutes.
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
# Queued job → process started on a new node: local provider, (as root,
# with ip and sshd) the SSH-hosts provider, and (with KUMO_KUBE_APISERVER
# and etcd) the Kubernetes provider.
run -bench 'BenchmarkLocalNodeReady$|BenchmarkSSHHostsNodeReady$|BenchmarkKubernetesNodeReady$' -benchtime 20x ./internal/e2e
# Trivial jobs completed per second through an 8-node local cluster, with
# CPU ms per job of the control plane, the agents and the job processes;
# then this host's ceiling, bare process spawns, measured in the same run,
# and kumo's share of it.
tput=$(run -bench 'BenchmarkThroughput8Nodes$' -benchtime 3000x ./internal/e2e)
echo "$tput"
spawn=$(run -bench 'BenchmarkSpawnShell$' -benchtime 5000x ./internal/runner)
echo "$spawn"
awk -v t="$tput" -v s="$spawn" 'BEGIN {
	n = split(t, a, /[ \t]+/); for (i = 2; i <= n; i++) if (a[i] == "jobs/s") jobs = a[i-1]
	n = split(s, b, /[ \t]+/); for (i = 2; i <= n; i++) if (b[i] == "ns/op") ns = b[i-1]
	if (jobs > 0 && ns > 0) printf "kumo %.0f jobs/s = %.0f%% of %.0f bare spawns/s\n", jobs, 100 * jobs * ns / 1e9, 1e9 / ns
}'
# One job through the runner (fresh directory, removed after), as the
# agent runs it, and as a job user of its own with its leftovers swept.
run -bench 'BenchmarkRunTrivial$|BenchmarkRunTrivialAsUser$' -benchtime 2000x ./internal/runner
# SSH through the control plane's tunnel beside a direct connection (needs
# Debian's openssh-client): 100 `ssh node true`, and scp of 100 MB.
run -bench 'BenchmarkSSHRoundTrip$' -benchtime 100x ./internal/e2e
run -bench 'BenchmarkSCPThroughput$' -benchtime 3x ./internal/e2e
