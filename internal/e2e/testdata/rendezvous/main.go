// Command rendezvous is a distributed job for kumo's end-to-end tests: it
// reads the variables AML sets for each process of a PyTorch job, and
// every process meets rank 0 over TCP on MASTER_ADDR:MASTER_PORT. Rank 0
// checks that each rank of WORLD_SIZE came exactly once, with a
// consistent NODE_RANK and LOCAL_RANK, and answers "ok"; then every
// process holds for -hold and exits 0. Any mismatch exits 1.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	hold := flag.Duration("hold", 0, "how long to run after the rendezvous")
	flag.Parse()
	if err := run(*hold); err != nil {
		fmt.Fprintln(os.Stderr, "rendezvous:", err)
		os.Exit(1)
	}
}

func env(name string) (int, error) {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", name, os.Getenv(name), err)
	}
	return n, nil
}

func run(hold time.Duration) error {
	var v [5]int
	for i, name := range []string{"WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "KUMO_PROCESSES_PER_NODE"} {
		n, err := env(name)
		if err != nil {
			return err
		}
		v[i] = n
	}
	world, rank, local, node, per := v[0], v[1], v[2], v[3], v[4]
	if rank != node*per+local || rank >= world {
		return fmt.Errorf("rank %d is not node %d × %d + local %d, or not below world %d", rank, node, per, local, world)
	}
	addr := net.JoinHostPort(os.Getenv("MASTER_ADDR"), os.Getenv("MASTER_PORT"))
	me := fmt.Sprintf("%d %d %d %d", rank, world, node, local)
	if rank == 0 {
		if err := serve(addr, world, per); err != nil {
			return err
		}
		fmt.Printf("rendezvous ok: %d ranks met at %s\n", world, addr)
	} else {
		if err := join(addr, me); err != nil {
			return err
		}
		fmt.Printf("rank %d joined %s\n", rank, addr)
	}
	time.Sleep(hold)
	return nil
}

// serve accepts world-1 ranks and checks each.
func serve(addr string, world, per int) error {
	_, port, _ := net.SplitHostPort(addr)
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	defer l.Close()
	seen := map[int]bool{}
	var conns []net.Conn
	for len(seen) < world-1 {
		l.(*net.TCPListener).SetDeadline(time.Now().Add(60 * time.Second))
		c, err := l.Accept()
		if err != nil {
			return fmt.Errorf("accept (have %d of %d ranks): %w", len(seen), world-1, err)
		}
		conns = append(conns, c)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		var r, w, n, lr int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "%d %d %d %d", &r, &w, &n, &lr); err != nil {
			return fmt.Errorf("bad hello %q: %w", line, err)
		}
		if w != world || r <= 0 || r >= world || seen[r] || n != r/per || lr != r%per {
			return fmt.Errorf("bad or repeated rank: %q (world %d)", line, world)
		}
		seen[r] = true
	}
	for _, c := range conns {
		fmt.Fprintln(c, "ok")
		c.Close()
	}
	return nil
}

// join dials rank 0 until it listens, says who it is, and waits for "ok".
func join(addr, me string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		defer c.Close()
		fmt.Fprintln(c, me)
		c.SetReadDeadline(time.Now().Add(90 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ok" {
			return fmt.Errorf("rank 0 answered %q: %v", line, err)
		}
		return nil
	}
}
