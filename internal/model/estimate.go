package model

import (
	"slices"
	"time"
)

// DefaultBootEstimate is the boot time assumed for a cluster none of whose
// nodes has booted yet.
const DefaultBootEstimate = 30 * time.Second

// BootEstimate is a cluster's typical node boot time: the median of its
// nodes' boot times (ReadyAt - CreatedAt), or DefaultBootEstimate when none
// has booted.
func BootEstimate(nodes []Node) time.Duration {
	var ds []time.Duration
	for _, n := range nodes {
		if !n.ReadyAt.IsZero() && n.ReadyAt.After(n.CreatedAt) {
			ds = append(ds, n.ReadyAt.Sub(n.CreatedAt))
		}
	}
	if len(ds) == 0 {
		return DefaultBootEstimate
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// EstimateStart estimates when the queued job at place pos (from 0) of a
// cluster's queue starts, from its nodes and its maxNodes: at once when an
// idle node is there for it; when a booting node is expected to be ready;
// a boot time from now when the cluster can grow for it (blocked false:
// neither quota nor capacity stops it). ok is false when it must wait for
// running jobs to end, which kumo cannot foresee.
func EstimateStart(now time.Time, pos int, nodes []Node, maxNodes int, blocked bool) (at time.Time, ok bool) {
	boot := BootEstimate(nodes)
	idle, live := 0, 0
	var booting []time.Time // when each preparing node should be ready
	for _, n := range nodes {
		switch n.State {
		case NodeIdle:
			idle++
			live++
		case NodeRunning:
			live++
		case NodePreparing:
			live++
			booting = append(booting, latestTime(n.CreatedAt.Add(boot), now))
		}
	}
	if pos < idle {
		return now, true
	}
	pos -= idle
	slices.SortFunc(booting, func(a, b time.Time) int { return a.Compare(b) })
	if pos < len(booting) {
		return booting[pos], true
	}
	pos -= len(booting)
	if !blocked && pos < maxNodes-live {
		return now.Add(boot), true
	}
	return time.Time{}, false
}

func latestTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
