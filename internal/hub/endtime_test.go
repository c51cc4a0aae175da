package hub

import (
	"testing"
	"time"
)

func TestEndTime(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	started := now.Add(-time.Hour)
	tests := []struct {
		name  string
		agent time.Time
		want  time.Time
	}{
		{name: "the agent's time, while the control plane was down", agent: now.Add(-30 * time.Minute), want: now.Add(-30 * time.Minute)},
		{name: "none sent", want: now},
		{name: "in the future (skewed clock)", agent: now.Add(time.Minute), want: now},
		{name: "before the start (skewed clock)", agent: started.Add(-time.Second), want: now},
		{name: "at the start", agent: started, want: started},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endTime(tt.agent, started, now); !got.Equal(tt.want) {
				t.Errorf("endTime = %v, want %v", got, tt.want)
			}
		})
	}
}
