package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"kumo/internal/agentproto"
)

// gangEnv returns the environment of node nodeID's part of a distributed
// job, the same for all its processes (AML's node-level variables), and
// the command that starts its processes. Each process gets RANK and
// LOCAL_RANK (and the Mpi or TensorFlow variants) and writes its output
// to user_logs/std_log_node_<NODE_RANK>_process_<LOCAL_RANK>.txt as well
// as to the node's log. The command exits 0 when every process did, and
// otherwise with the first failing process's code.
func gangEnv(g *agentproto.GangSpec, nodeID, command string) (map[string]string, string, error) {
	rank := slices.Index(g.NodeIDs, nodeID)
	if rank < 0 || len(g.Addresses) != len(g.NodeIDs) {
		return nil, "", fmt.Errorf("node %s is not one of the job's nodes %q", nodeID, g.NodeIDs)
	}
	procs := max(g.ProcessesPerNode, 1)
	world := procs * len(g.NodeIDs)
	master := g.Addresses[0]
	port := strconv.Itoa(g.MasterPort)
	env := map[string]string{
		"MASTER_ADDR": master, "MASTER_PORT": port, "WORLD_SIZE": strconv.Itoa(world),
		"NODE_RANK": strconv.Itoa(rank), "KUMO_PROCESSES_PER_NODE": strconv.Itoa(procs),
	}
	perProc := make([]map[string]string, procs)
	for p := range procs {
		global := rank*procs + p
		v := map[string]string{"RANK": strconv.Itoa(global), "LOCAL_RANK": strconv.Itoa(p)}
		switch g.Distribution {
		case "Mpi":
			v["OMPI_COMM_WORLD_RANK"] = strconv.Itoa(global)
			v["OMPI_COMM_WORLD_SIZE"] = strconv.Itoa(world)
			v["OMPI_COMM_WORLD_LOCAL_RANK"] = strconv.Itoa(p)
			v["OMPI_COMM_WORLD_LOCAL_SIZE"] = strconv.Itoa(procs)
			v["AZ_BATCH_MASTER_NODE"] = net.JoinHostPort(master, port)
		case "TensorFlow":
			tf, err := tfConfig(g, procs, global)
			if err != nil {
				return nil, "", err
			}
			v["TF_CONFIG"] = tf
		}
		perProc[p] = v
	}
	return env, launcher(command, rank, perProc), nil
}

// tfConfig is TF_CONFIG for task global of a TensorFlow job: its first
// g.Workers tasks are workers, the rest parameter servers, each listening
// on MasterPort+1+its global index on its node's address.
func tfConfig(g *agentproto.GangSpec, procs, global int) (string, error) {
	var workers, ps []string
	for t := range procs * len(g.NodeIDs) {
		addr := net.JoinHostPort(g.Addresses[t/procs], strconv.Itoa(g.MasterPort+1+t))
		if t < g.Workers {
			workers = append(workers, addr)
		} else {
			ps = append(ps, addr)
		}
	}
	task := map[string]any{"type": "worker", "index": global}
	if global >= g.Workers {
		task = map[string]any{"type": "ps", "index": global - g.Workers}
	}
	cluster := map[string][]string{"worker": workers}
	if len(ps) > 0 {
		cluster["ps"] = ps
	}
	b, err := json.Marshal(map[string]any{"cluster": cluster, "task": task})
	return string(b), err
}

// launcher is a /bin/sh script that starts command once per process with
// that process's variables, tees each one's output to its log file, and
// waits for all, or, when one fails, stops the others and exits with its
// code. The process group gets the node's signals (cancel, eviction
// notice), so every process does.
func launcher(command string, nodeRank int, perProc []map[string]string) string {
	var b strings.Builder
	b.WriteString("mkdir -p user_logs .kumo_rc && rm -f .kumo_rc/*\n")
	for p, vars := range perProc {
		keys := make([]string, 0, len(vars))
		for k := range vars {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var exports []string
		for _, k := range keys {
			exports = append(exports, k+"="+shellQuote(vars[k]))
		}
		log := fmt.Sprintf("user_logs/std_log_node_%d_process_%d.txt", nodeRank, p)
		fmt.Fprintf(&b, "( ( export %s; /bin/sh -c %s; echo $? > .kumo_rc/%d.w && mv .kumo_rc/%d.w .kumo_rc/%d ) 2>&1 | tee %s ) &\n",
			strings.Join(exports, " "), shellQuote(command), p, p, p, log)
	}
	// A code is written aside and renamed, so the loop below never reads
	// a half-written one.
	// Wait until every process has ended or one has failed; then stop the
	// others (a distributed job's ranks would wait for the failed one for
	// ever) with SIGTERM, which the launcher alone ignores.
	fmt.Fprintf(&b, "while :; do n=0; rc=0; for p in $(seq 0 %d); do if [ -f .kumo_rc/$p ]; then n=$((n+1)); c=$(cat .kumo_rc/$p); ", len(perProc)-1)
	b.WriteString("if [ \"$c\" != 0 ] && [ $rc = 0 ]; then rc=$c; echo \"kumo: process $p exited with code $c\" >&2; fi; fi; done; ")
	fmt.Fprintf(&b, "if [ $rc != 0 ] || [ $n = %d ]; then break; fi; sleep 0.2; done\n", len(perProc))
	b.WriteString("if [ $rc != 0 ]; then trap '' TERM; kill -TERM 0 2>/dev/null; fi\n")
	b.WriteString("wait\nrm -rf .kumo_rc\nexit $rc\n")
	return b.String()
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
