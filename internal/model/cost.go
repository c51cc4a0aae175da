package model

import (
	"math"
	"time"
)

// NodeUsage is the billing record of one node: what it costs per hour and
// from when until when it accrued. It outlives the node.
type NodeUsage struct {
	NodeID       string
	ComputeID    string   // the cluster's ARM ID
	WorkspaceID  string   // the cluster's workspace's ARM ID
	VMSize       string   // the size's canonical name
	Priority     Priority // Dedicated or LowPriority
	PricePerHour float64  // USD per hour for its size and priority, from the region's catalog
	StartedAt    time.Time
	// EndedAt is when the node left service (became unusable, preempted
	// or leaving, then was removed); zero while it is in service.
	EndedAt time.Time
}

// Price returns the size's hourly price (USD) for priority p.
func (s VMSize) Price(p Priority) float64 {
	if p == PriorityLowPriority {
		return s.PriceLowPriority
	}
	return s.PriceDedicated
}

// Span is how long u accrued within [from, to); a node still in service
// accrues until to. A zero from means since its start.
func (u NodeUsage) Span(from, to time.Time) time.Duration {
	start, end := u.StartedAt, to
	if !u.EndedAt.IsZero() && u.EndedAt.Before(end) {
		end = u.EndedAt
	}
	if from.After(start) {
		start = from
	}
	if !end.After(start) {
		return 0
	}
	return end.Sub(start)
}

// Cost is what u accrued within [from, to), in USD, unrounded.
func (u NodeUsage) Cost(from, to time.Time) float64 {
	return u.Span(from, to).Hours() * u.PricePerHour
}

// Cents rounds a USD amount to whole cents (half away from zero), as
// figures are shown.
func Cents(usd float64) float64 { return math.Round(usd*100) / 100 }

// JobUsage is what a job's attempts used within [from, to): node-hours
// and cost in USD (unrounded), each attempt charged at its node's price
// (prices by node ID). An attempt still running counts until to; attempts
// on nodes without a price (the local compute) add hours but no cost.
func JobUsage(j Job, prices map[string]float64, from, to time.Time) (nodeHours, cost float64) {
	for _, a := range j.History {
		if a.NodeID == "" {
			continue
		}
		u := NodeUsage{StartedAt: a.StartedAt, EndedAt: a.EndedAt, PricePerHour: prices[a.NodeID]}
		h := u.Span(from, to).Hours()
		nodeHours += h
		cost += h * u.PricePerHour
	}
	return nodeHours, cost
}
