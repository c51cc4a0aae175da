package studio

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
)

func TestNewBar(t *testing.T) {
	tests := []struct {
		name   string
		counts *api.NodeStateCounts
		want   bar
	}{
		{"none", nil, bar{Label: "no nodes"}},
		{"idle and running", &api.NodeStateCounts{IdleNodeCount: 1, RunningNodeCount: 3},
			bar{Total: 4, Label: "1 idle, 3 running", Segs: []seg{{State: "idle", Count: 1, X: 0, W: 25}, {State: "running", Count: 3, X: 25, W: 75}}}},
		{"preempted only", &api.NodeStateCounts{PreemptedNodeCount: 2},
			bar{Total: 2, Label: "2 preempted", Segs: []seg{{State: "preempted", Count: 2, W: 100}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, newBar(tt.counts)); diff != "" {
				t.Errorf("newBar (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdleSeconds(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"PT2M", "120"}, {"PT1H1M1S", "3661"}, {"PT0S", "0"}, {"P1D", "P1D"}, {"PTxS", "PTxS"},
	} {
		if got := idleSeconds(tt.in); got != tt.want {
			t.Errorf("idleSeconds(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/studio/jobs?status=Queued", "/studio/jobs?status=Queued"},
		{"", "/studio/computes"},
		{"https://evil.example/studio/", "/studio/computes"},
		{"//evil.example/studio/", "/studio/computes"},
		{`/studio/\evil`, "/studio/computes"},
		{"/subscriptions/x", "/studio/computes"},
	} {
		if got := safeNext(tt.in); got != tt.want {
			t.Errorf("safeNext(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFieldErrors(t *testing.T) {
	for _, tt := range []struct {
		target string
		want   map[string]string
	}{
		{"properties.properties.vmSize", map[string]string{"vmSize": "m"}},
		{"properties.properties.scaleSettings.maxNodeCount", map[string]string{"maxNodes": "m"}},
		{"name", map[string]string{"name": "m"}},
		{"", map[string]string{"": "m (C)"}},
		{"properties.somethingElse", map[string]string{"": "m (C)"}},
	} {
		got := fieldErrors(&apiError{Status: 400, ErrorDetail: api.ErrorDetail{Code: "C", Message: "m", Target: tt.target}})
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("fieldErrors(target %q) (-want +got):\n%s", tt.target, diff)
		}
	}
}
