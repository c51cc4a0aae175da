package model

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"PT2M", 2 * time.Minute},
		{"PT1800S", 1800 * time.Second},
		{"P1DT2H", 26 * time.Hour},
		{"PT0.5S", 500 * time.Millisecond},
		{"PT0,5S", 500 * time.Millisecond},
		{"PT.5S", 500 * time.Millisecond},
		{"PT5.S", 5 * time.Second},
		{"P1W", 7 * 24 * time.Hour},
		{"P1W2D", 9 * 24 * time.Hour},
		{"P7D", 7 * 24 * time.Hour},
		{"PT0S", 0},
		{"P0D", 0},
		{"pt2m", 2 * time.Minute},
		{"p1dt2h30m", 26*time.Hour + 30*time.Minute},
		{"PT1H30M", 90 * time.Minute},
		{"PT1H2M3S", time.Hour + 2*time.Minute + 3*time.Second},
		{"PT010S", 10 * time.Second}, // leading zeros are decimal, not octal
		{"PT1.001S", 1001 * time.Millisecond},
		{"PT0.000000001S", time.Nanosecond},
		{"PT0.0000000019S", time.Nanosecond}, // truncated below a nanosecond
		{"PT0.5H", 30 * time.Minute},
		{"P1DT1H0.003S", 25*time.Hour + 3*time.Millisecond},
		{"PT9223372036.854775807S", time.Duration(math.MaxInt64)},
		{"P106751DT23H47M16.854775807S", time.Duration(math.MaxInt64)},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil {
			t.Errorf("ParseDuration(%q) error: %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // a substring of the error
	}{
		{"", "must start with 'P'"},
		{"P", "must start with 'P'"},
		{"PT", "'T' must be followed"},
		{"P1DT", "'T' must be followed"},
		{"2M", "must start with 'P'"},
		{"T2M", "must start with 'P'"},
		{"P1M", "years and months"},
		{"P1Y", "years and months"},
		{"p1y", "years and months"},
		{"PT1H2", "number followed by a unit"},
		{"PTT1S", "'T' appears twice"},
		{"PT1HT2M", "'T' appears twice"},
		{"-PT1M", "must start with 'P'"},
		{"PT-1M", "number followed by a unit"},
		{"P2H", "unexpected unit"},
		{"PT1D", "unexpected unit"},
		{"PT1W", "unexpected unit"},
		{"PT1X", "unexpected unit"},
		{"PTS", "number followed by a unit"},
		{"PT1.2.3S", "bad number"},
		{"PT.S", "bad number"},
		{"PT1e3S", "unexpected unit"},
		{"PT1S1H", "out of order"},
		{"PT1M1M", "repeated"},
		{"P1D1W", "out of order"},
		{"PT9223372036.854775808S", "too long"},
		{"PT99999999999999999999S", "too long"},
		{"P106752D", "too long"},
		{"P" + strings.Repeat("9", 400) + "W", "longer than 64 characters"},
		{"P1DT2562047H", "too long"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error containing %q", tt.in, got, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseDuration(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "PT0S"},
		{-time.Minute, "PT0S"},
		{time.Second, "PT1S"},
		{2 * time.Minute, "PT2M"},
		{90 * time.Minute, "PT1H30M"},
		{time.Hour + 2*time.Minute + 3*time.Second, "PT1H2M3S"},
		{24 * time.Hour, "P1D"},
		{7 * 24 * time.Hour, "P7D"},
		{26 * time.Hour, "P1DT2H"},
		{500 * time.Millisecond, "PT0.5S"},
		{time.Nanosecond, "PT0.000000001S"},
		{time.Minute + 1001*time.Millisecond, "PT1M1.001S"},
		{24*time.Hour + 1500*time.Millisecond, "P1DT1.5S"},
		{time.Duration(math.MaxInt64), "P106751DT23H47M16.854775807S"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestDurationRoundTrip checks FormatDuration(ParseDuration(x)) == x for
// canonical whole-second inputs, and ParseDuration(FormatDuration(d)) == d
// for every positive d, fractions included.
func TestDurationRoundTrip(t *testing.T) {
	for _, in := range []string{
		"PT0S", "PT1S", "PT59S", "PT1M", "PT2M", "PT30M", "PT1H", "PT1H30M", "PT23H59M59S",
		"P1D", "P1DT2H", "P7D", "P1DT1S", "P365DT1H1M1S", "P106751DT23H47M16S",
	} {
		d, err := ParseDuration(in)
		if err != nil {
			t.Errorf("ParseDuration(%q) error: %v", in, err)
			continue
		}
		if got := FormatDuration(d); got != in {
			t.Errorf("FormatDuration(ParseDuration(%q)) = %q, want %q", in, got, in)
		}
	}

	durations := []time.Duration{
		time.Nanosecond, 999 * time.Nanosecond, 1001 * time.Millisecond, 2300 * time.Millisecond,
		25*time.Hour + 3*time.Millisecond, 104*24*time.Hour + 7, time.Duration(math.MaxInt64),
	}
	for ms := time.Duration(0); ms < 5000; ms += 7 {
		durations = append(durations, ms*time.Millisecond+time.Millisecond, 25*time.Hour+ms*time.Millisecond+time.Millisecond)
	}
	for _, d := range durations {
		s := FormatDuration(d)
		got, err := ParseDuration(s)
		if err != nil {
			t.Errorf("ParseDuration(FormatDuration(%d) = %q) error: %v", int64(d), s, err)
			continue
		}
		if got != d {
			t.Errorf("ParseDuration(FormatDuration(%d) = %q) = %d, want %d", int64(d), s, int64(got), int64(d))
		}
	}
}

// A megabyte of digits is refused by its length, before any arithmetic
// (it used to cost seconds of CPU), and the error does not repeat it.
func TestParseDurationRefusesHugeInputUnparsed(t *testing.T) {
	huge := "PT" + strings.Repeat("9", 1<<20) + "S"
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := ParseDuration(huge); err == nil {
			t.Fatal("a 1 MB duration parsed")
		}
	})
	if allocs > 2 {
		t.Errorf("refusing a 1 MB duration made %v allocations; it must be refused before parsing", allocs)
	}
	_, err := ParseJobTimeout(huge)
	if err == nil {
		t.Fatal("ParseJobTimeout accepted a 1 MB duration")
	}
	if len(err.Error()) > 300 {
		t.Errorf("error is %d bytes long; it must quote only a short prefix of the input: %.300s", len(err.Error()), err)
	}
	if !strings.Contains(err.Error(), "bytes)") {
		t.Errorf("error = %q, want it to say the input's length", err)
	}
}
