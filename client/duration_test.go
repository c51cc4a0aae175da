package client

import "testing"

func TestISODuration(t *testing.T) {
	for _, tt := range []struct {
		secs int
		iso  string
	}{{0, "PT0S"}, {120, "PT2M"}, {1800, "PT30M"}, {2400, "PT40M"}, {3665, "PT1H1M5S"}, {90, "PT1M30S"}} {
		if got := formatISODuration(tt.secs); got != tt.iso {
			t.Errorf("formatISODuration(%d) = %q, want %q", tt.secs, got, tt.iso)
		}
		if got, err := parseISODuration(tt.iso); err != nil || got != tt.secs {
			t.Errorf("parseISODuration(%q) = %d, %v, want %d", tt.iso, got, err, tt.secs)
		}
	}
	for in, want := range map[string]int{"PT1800S": 1800, "P1DT1S": 86401, "pt5m": 300, "PT1.5S": 1} {
		if got, err := parseISODuration(in); err != nil || got != want {
			t.Errorf("parseISODuration(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "P", "30M", "PT", "P1M", "PTxS", "PT-1S", "PTT1S"} {
		if _, err := parseISODuration(bad); err == nil {
			t.Errorf("parseISODuration(%q): got nil error", bad)
		}
	}
}
