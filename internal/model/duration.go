package model

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses an ISO-8601 duration of days, hours, minutes and
// seconds ("PT2M", "PT1800S", "P1DT2H", "PT0.5S", "P1W"). Years and months
// are refused: their length is not fixed.
func ParseDuration(s string) (time.Duration, error) {
	if len(s) < 2 || (s[0] != 'P' && s[0] != 'p') {
		return 0, fmt.Errorf("must start with 'P'")
	}
	rest := strings.ToUpper(s[1:])
	var total float64
	inTime := false
	seen := false
	const maxSeconds = float64(1<<63-1) / float64(time.Second)
	for len(rest) > 0 {
		if rest[0] == 'T' {
			if inTime {
				return 0, fmt.Errorf("'T' appears twice")
			}
			inTime = true
			rest = rest[1:]
			if rest == "" {
				return 0, fmt.Errorf("'T' must be followed by a time part")
			}
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.' || rest[i] == ',') {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("expected a number followed by a unit")
		}
		num, err := strconv.ParseFloat(strings.ReplaceAll(rest[:i], ",", "."), 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", rest[:i])
		}
		var unit float64
		switch u := rest[i]; {
		case !inTime && u == 'W':
			unit = 7 * 86400
		case !inTime && u == 'D':
			unit = 86400
		case !inTime && (u == 'Y' || u == 'M'):
			return 0, fmt.Errorf("years and months are not supported; use days")
		case inTime && u == 'H':
			unit = 3600
		case inTime && u == 'M':
			unit = 60
		case inTime && u == 'S':
			unit = 1
		default:
			return 0, fmt.Errorf("unexpected unit %q", string(u))
		}
		total += num * unit
		if total > maxSeconds {
			return 0, fmt.Errorf("too long")
		}
		seen = true
		rest = rest[i+1:]
	}
	if !seen {
		return 0, fmt.Errorf("has no value")
	}
	return time.Duration(total * float64(time.Second)), nil
}

// FormatDuration writes d as an ISO-8601 duration ("PT2M", "PT1H30M",
// "P7D", "PT0S"), the inverse of ParseDuration for whole seconds.
func FormatDuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	var b strings.Builder
	b.WriteString("P")
	secs := int64(d / time.Second)
	frac := d % time.Second
	if days := secs / 86400; days > 0 {
		fmt.Fprintf(&b, "%dD", days)
		secs %= 86400
	}
	if secs == 0 && frac == 0 {
		return b.String()
	}
	b.WriteString("T")
	if h := secs / 3600; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
	}
	if m := secs % 3600 / 60; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
	}
	if s := secs % 60; s > 0 || frac > 0 {
		if frac > 0 {
			b.WriteString(strconv.FormatFloat(float64(s)+frac.Seconds(), 'f', -1, 64) + "S")
		} else {
			fmt.Fprintf(&b, "%dS", s)
		}
	}
	return b.String()
}
