package client

import (
	"fmt"
	"strconv"
	"strings"
)

// formatISODuration writes seconds as an ISO-8601 duration such as "PT30M"
// or "PT1H1M5S", the form ARM's nodeIdleTimeBeforeScaleDown takes.
func formatISODuration(seconds int) string {
	if seconds <= 0 {
		return "PT0S"
	}
	h, m, s := seconds/3600, seconds/60%60, seconds%60
	var b strings.Builder
	b.WriteString("PT")
	if h > 0 {
		fmt.Fprintf(&b, "%dH", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dM", m)
	}
	if s > 0 {
		fmt.Fprintf(&b, "%dS", s)
	}
	return b.String()
}

// ParseISODuration reads an ISO-8601 duration such as a cluster's
// nodeIdleTimeBeforeScaleDown ("PT40M") into whole seconds, the unit the
// SDK's and the CLI's idle-time settings take. See parseISODuration.
func ParseISODuration(s string) (int, error) { return parseISODuration(s) }

// parseISODuration reads an ISO-8601 duration of days, hours, minutes and
// seconds ("P1DT2H", "PT30M", "PT1800S", "PT1.5S") into whole seconds.
// Years, months and weeks are refused: their length in seconds is not fixed.
func parseISODuration(s string) (int, error) {
	rest, ok := strings.CutPrefix(strings.ToUpper(strings.TrimSpace(s)), "P")
	if !ok || rest == "" {
		return 0, fmt.Errorf("bad ISO-8601 duration %q", s)
	}
	var total float64
	inTime, parts := false, 0
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return 0, fmt.Errorf("bad ISO-8601 duration %q", s)
			}
			inTime = true
			rest = rest[1:]
			continue
		}
		i := strings.IndexAny(rest, "DHMS")
		if i <= 0 {
			return 0, fmt.Errorf("bad ISO-8601 duration %q", s)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad ISO-8601 duration %q", s)
		}
		unit := rest[i]
		switch {
		case unit == 'D' && !inTime:
			total += n * 86400
		case unit == 'H' && inTime:
			total += n * 3600
		case unit == 'M' && inTime:
			total += n * 60
		case unit == 'S' && inTime:
			total += n
		default:
			return 0, fmt.Errorf("bad ISO-8601 duration %q", s)
		}
		rest = rest[i+1:]
		parts++
	}
	if parts == 0 {
		return 0, fmt.Errorf("bad ISO-8601 duration %q", s)
	}
	return int(total), nil
}
