package client

import (
	"path"
	"strings"
)

// ignoreRules are the patterns of a .amlignore or .gitignore file, in
// gitignore syntax: "#" comments, "*", "?" and "[...]" globs within a path
// part, "**" across parts, "!" to take a path back, a trailing "/" for
// directories only, and a "/" at the start or inside anchoring the pattern
// to the snapshot's root (else it matches a name at any depth).
type ignoreRules []ignoreRule

type ignoreRule struct {
	parts   []string // the pattern split at "/"; a leading "**" when not anchored
	negate  bool     // "!": a match takes the path back
	dirOnly bool     // trailing "/": matches directories only
}

// parseIgnore parses the text of an ignore file.
func parseIgnore(text string) ignoreRules {
	var rules ignoreRules
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		// Trailing spaces go, unless escaped with a backslash.
		for strings.HasSuffix(line, " ") && !strings.HasSuffix(line, `\ `) {
			line = line[:len(line)-1]
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var r ignoreRule
		switch {
		case strings.HasPrefix(line, "!"):
			r.negate, line = true, line[1:]
		case strings.HasPrefix(line, `\!`), strings.HasPrefix(line, `\#`):
			line = line[1:]
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly, line = true, strings.TrimRight(line, "/")
		}
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		if line == "" {
			continue
		}
		r.parts = strings.Split(line, "/")
		for i, p := range r.parts {
			// gitignore writes a negated class [!a]; path.Match [^a].
			r.parts[i] = strings.ReplaceAll(p, "[!", "[^")
		}
		if !anchored {
			r.parts = append([]string{"**"}, r.parts...)
		}
		rules = append(rules, r)
	}
	return rules
}

// ignored reports whether the slash-separated path name, relative to the
// snapshot's root, is ignored: the last rule that matches decides.
func (rules ignoreRules) ignored(name string, isDir bool) bool {
	parts := strings.Split(name, "/")
	ignored := false
	for _, r := range rules {
		if r.dirOnly && !isDir {
			continue
		}
		if matchParts(r.parts, parts) {
			ignored = !r.negate
		}
	}
	return ignored
}

// matchParts matches path parts against pattern parts, where "**" matches
// any number of parts, and a trailing "**" at least one.
func matchParts(pat, parts []string) bool {
	if len(pat) == 0 {
		return len(parts) == 0
	}
	if pat[0] == "**" {
		if len(pat) == 1 {
			return len(parts) > 0
		}
		for i := 0; i <= len(parts); i++ {
			if matchParts(pat[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], parts[0])
	return ok && err == nil && matchParts(pat[1:], parts[1:])
}
