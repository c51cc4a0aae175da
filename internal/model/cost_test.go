package model

import (
	"testing"
	"time"
)

// Costs of a known run match the catalog prices to the cent.
func TestCostToTheCent(t *testing.T) {
	d2, _ := Region{Sizes: Catalog}.Size("Standard_D2_v2")    // 0.146 $/h dedicated, 0.0292 low priority
	nc6, _ := Region{Sizes: Catalog}.Size("Standard_NC6s_v3") // a GPU size
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	usages := []NodeUsage{
		{NodeID: "a", VMSize: d2.Name, Priority: PriorityDedicated, PricePerHour: d2.Price(PriorityDedicated),
			StartedAt: start, EndedAt: start.Add(10 * time.Hour)},
		{NodeID: "b", VMSize: d2.Name, Priority: PriorityLowPriority, PricePerHour: d2.Price(PriorityLowPriority),
			StartedAt: start.Add(time.Hour), EndedAt: start.Add(3*time.Hour + 30*time.Minute)},
		{NodeID: "c", VMSize: nc6.Name, Priority: PriorityDedicated, PricePerHour: nc6.Price(PriorityDedicated),
			StartedAt: start.Add(2 * time.Hour)}, // still running
	}
	now := start.Add(5 * time.Hour)
	tests := []struct {
		name     string
		u        NodeUsage
		from, to time.Time
		want     float64
	}{
		{"dedicated 10h", usages[0], time.Time{}, now.Add(10 * time.Hour), Cents(10 * 0.146)},
		{"dedicated, first 5h", usages[0], time.Time{}, now, 0.73},
		{"low priority 2.5h", usages[1], time.Time{}, now, 0.07}, // 2.5 × 0.0292 = 0.073
		{"running GPU node, 3h so far", usages[2], time.Time{}, now, Cents(3 * nc6.PriceDedicated)},
		{"window 3h-4h of the dedicated node", usages[0], start.Add(3 * time.Hour), start.Add(4 * time.Hour), 0.15},
		{"window before its start", usages[2], start, start.Add(time.Hour), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Cents(tt.u.Cost(tt.from, tt.to)); got != tt.want {
				t.Errorf("cost = %.4f, want %.2f", got, tt.want)
			}
		})
	}
	if d2.Price(PriorityLowPriority) != 0.0292 {
		t.Fatalf("low-priority price of %s = %v, want 0.0292 (20%% of 0.146)", d2.Name, d2.Price(PriorityLowPriority))
	}

	// A job evicted from b after 30 min and finished on a after 1h:
	j := Job{History: []Attempt{
		{Number: 1, NodeID: "b", StartedAt: start.Add(time.Hour), EndedAt: start.Add(90 * time.Minute)},
		{Number: 2, NodeID: "a", StartedAt: start.Add(2 * time.Hour), EndedAt: start.Add(3 * time.Hour)},
		{Number: 3, NodeID: "", StartedAt: start, EndedAt: start.Add(time.Hour)}, // local: no node, no cost
	}}
	prices := map[string]float64{"a": 0.146, "b": 0.0292}
	hours, cost := JobUsage(j, prices, time.Time{}, now)
	if hours != 1.5 || Cents(cost) != 0.16 { // 0.5 × 0.0292 + 1 × 0.146 = 0.1606
		t.Errorf("job usage = %v node-hours, $%.4f; want 1.5, $0.16", hours, cost)
	}
}
