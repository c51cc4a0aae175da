package model

import (
	"testing"
	"time"
)

func TestEstimateStart(t *testing.T) {
	now := t0.Add(time.Hour)
	booted := func(id string, state NodeState, boot time.Duration) Node {
		return Node{ID: id, State: state, CreatedAt: t0, ReadyAt: t0.Add(boot)}
	}
	preparing := func(id string, age time.Duration) Node {
		return Node{ID: id, State: NodePreparing, CreatedAt: now.Add(-age)}
	}
	tests := []struct {
		name    string
		pos     int
		nodes   []Node
		max     int
		blocked bool
		want    time.Duration // from now; -1 for no estimate
	}{
		{"idle node", 0, []Node{booted("a", NodeIdle, 10*time.Second)}, 1, false, 0},
		{"booting node", 0, []Node{booted("a", NodeRunning, 10*time.Second), preparing("b", 4*time.Second)}, 2, false, 6 * time.Second},
		{"booting node overdue", 0, []Node{booted("a", NodeRunning, 10*time.Second), preparing("b", time.Minute)}, 2, false, 0},
		{"cluster grows", 1, []Node{booted("a", NodeIdle, 10*time.Second), booted("b", NodeRunning, 20*time.Second), booted("c", NodeRunning, 12*time.Second)}, 5, false, 12 * time.Second},
		{"fresh cluster", 0, nil, 2, false, DefaultBootEstimate},
		{"blocked by quota", 0, nil, 2, true, -1},
		{"max reached", 0, []Node{booted("a", NodeRunning, time.Second)}, 1, false, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, ok := EstimateStart(now, tt.pos, tt.nodes, tt.max, tt.blocked)
			if tt.want < 0 {
				if ok {
					t.Errorf("estimate %v, want none", at.Sub(now))
				}
				return
			}
			if !ok || !at.Equal(now.Add(tt.want)) {
				t.Errorf("estimate %v (ok %v), want %v", at.Sub(now), ok, tt.want)
			}
		})
	}
}
