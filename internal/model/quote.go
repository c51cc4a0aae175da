package model

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxQuoted is how many bytes of a caller's input an error message
// repeats: enough to recognise the value, never the whole of a huge one.
const MaxQuoted = 64

// Quote returns s Go-quoted for an error message. A value longer than
// MaxQuoted bytes is cut at a character boundary and followed by its full
// length: Quote(strings.Repeat("x", 1<<20)) is "xxx…x"... (1048576 bytes).
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}
