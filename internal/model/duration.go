package model

import (
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// MaxDurationLength bounds an ISO-8601 duration's text. The longest useful
// one ("P3W6DT23H59M59.999999999S") has 26 characters; without a bound, a
// megabyte of digits costs seconds of big-number arithmetic.
const MaxDurationLength = 64

// ParseDuration parses an ISO-8601 duration of weeks, days, hours, minutes
// and seconds ("PT2M", "PT1800S", "P1DT2H", "PT0.5S", "P1W"), in any case.
// Units must appear at most once each, largest first. Years and months are
// refused: their length is not fixed. Fractions are exact to the nanosecond
// (truncated below it); a total beyond time.Duration's range is refused.
// A string longer than MaxDurationLength is refused before it is parsed.
func ParseDuration(s string) (time.Duration, error) {
	if len(s) > MaxDurationLength {
		return 0, fmt.Errorf("is longer than %d characters", MaxDurationLength)
	}
	if len(s) < 2 || (s[0] != 'P' && s[0] != 'p') {
		return 0, fmt.Errorf("must start with 'P'")
	}
	rest := strings.ToUpper(s[1:])
	total := new(big.Rat) // nanoseconds
	maxNanos := new(big.Rat).SetInt64(math.MaxInt64)
	inTime := false
	seen := false
	last := 0 // rank of the last unit read; units must come largest first
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
		num, ok := parseDecimal(strings.ReplaceAll(rest[:i], ",", "."))
		if !ok {
			return 0, fmt.Errorf("bad number %q", rest[:i])
		}
		var unit int64 // seconds
		var rank int
		switch u := rest[i]; {
		case !inTime && u == 'W':
			unit, rank = 7*86400, 1
		case !inTime && u == 'D':
			unit, rank = 86400, 2
		case !inTime && (u == 'Y' || u == 'M'):
			return 0, fmt.Errorf("years and months are not supported; use days")
		case inTime && u == 'H':
			unit, rank = 3600, 3
		case inTime && u == 'M':
			unit, rank = 60, 4
		case inTime && u == 'S':
			unit, rank = 1, 5
		default:
			return 0, fmt.Errorf("unexpected unit %q", string(u))
		}
		if rank <= last {
			return 0, fmt.Errorf("unit %q is repeated or out of order", string(rest[i]))
		}
		last = rank
		total.Add(total, num.Mul(num, new(big.Rat).SetInt64(unit*int64(time.Second))))
		if total.Cmp(maxNanos) > 0 {
			return 0, fmt.Errorf("too long")
		}
		seen = true
		rest = rest[i+1:]
	}
	if !seen {
		return 0, fmt.Errorf("has no value")
	}
	// Truncate to whole nanoseconds; total is non-negative and in range.
	return time.Duration(new(big.Int).Quo(total.Num(), total.Denom()).Int64()), nil
}

// parseDecimal parses digits with at most one '.', and at least one digit
// ("5", "0.5", "5.", ".5"), exactly.
func parseDecimal(s string) (*big.Rat, bool) {
	if strings.Count(s, ".") > 1 || strings.Trim(s, ".") == "" {
		return nil, false
	}
	whole, frac, _ := strings.Cut(s, ".")
	n, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return nil, false
	}
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	return new(big.Rat).SetFrac(n, den), true
}

// FormatDuration writes d as an ISO-8601 duration ("PT2M", "PT1H30M",
// "P7D", "PT0.5S", "PT0S"), the inverse of ParseDuration for every
// positive duration. Zero and negative durations are written "PT0S".
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
			fmt.Fprintf(&b, "%d.%sS", s, strings.TrimRight(fmt.Sprintf("%09d", int64(frac)), "0"))
		} else {
			fmt.Fprintf(&b, "%dS", s)
		}
	}
	return b.String()
}
