package model

import (
	"testing"
	"time"
)

func TestLeaseHeld(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		l    Lease
		want bool
	}{
		{"held", Lease{Holder: "a", ExpiresAt: now.Add(time.Nanosecond)}, true},
		{"expires now", Lease{Holder: "a", ExpiresAt: now}, false},
		{"expired", Lease{Holder: "a", ExpiresAt: now.Add(-time.Second)}, false},
		{"released", Lease{Holder: "", ExpiresAt: now.Add(time.Hour)}, false},
	}
	for _, tt := range tests {
		if got := tt.l.Held(now); got != tt.want {
			t.Errorf("%s: Held = %v, want %v", tt.name, got, tt.want)
		}
	}
}
