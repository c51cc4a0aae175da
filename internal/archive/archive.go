// Package archive is kumo's one tar reader and one tar writer. Every tar
// the control plane or an agent reads or writes goes through it: code
// snapshots (checked on upload, extracted on the node) and job artifacts
// (written by the agent, stored and served by the control plane).
//
// Tars come from people kumo does not trust: a teammate's snapshot, or a
// job that planted links in its outputs/. So the reader takes only regular
// files, directories and symbolic links that resolve inside the tree; it
// bounds what it writes by [Limits] before writing a byte; it never writes
// through a link; and a refused archive leaves nothing behind. The writer
// never reads through a link either: a link that points outside the tree is
// left out with a warning, so one bad link does not cost a job its other
// outputs.
package archive

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
)

// Limits bound what one archive may expand to. A zero field means the
// field of [DefaultLimits].
type Limits struct {
	// MaxBytes bounds the total size of the files' contents, in bytes.
	MaxBytes int64
	// MaxEntries bounds the number of entries (files, directories, links).
	MaxEntries int
	// MaxEntryBytes bounds the size of one file, in bytes.
	MaxEntryBytes int64
	// MaxNameBytes bounds the length of an entry's name and of a link's
	// target, in bytes.
	MaxNameBytes int
}

// DefaultLimits are the limits of a code snapshot: 100 MiB of content
// (the SDK refuses a larger snapshot before sending it), 20,000 entries
// (AML itself stops at 2,000 files), and names of up to 1,024 bytes.
var DefaultLimits = Limits{MaxBytes: 100 << 20, MaxEntries: 20_000, MaxEntryBytes: 100 << 20, MaxNameBytes: 1024}

// ArtifactLimits are the default limits of a job's artifacts: 1 GiB of
// content in up to 100,000 entries.
var ArtifactLimits = Limits{MaxBytes: 1 << 30, MaxEntries: 100_000, MaxEntryBytes: 1 << 30, MaxNameBytes: 1024}

// NodeLimits bound a code snapshot extracted on a node. The control plane
// checked the snapshot against its own, configured limits when it was
// uploaded; the node's are a generous ceiling kept in case it was not.
var NodeLimits = Limits{MaxBytes: 16 << 30, MaxEntries: 1_000_000, MaxEntryBytes: 16 << 30, MaxNameBytes: 4096}

// StreamBytes is the longest tar stream l allows: the content plus 2 KiB
// of headers per entry (a header block and a PAX record or long name),
// for a server to bound a request body by. Zero fields count as
// DefaultLimits'.
func (l Limits) StreamBytes() int64 {
	l = l.orDefault()
	return l.MaxBytes + int64(l.MaxEntries)*2048 + 1<<20
}

// orDefault returns l with its zero fields taken from DefaultLimits.
func (l Limits) orDefault() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultLimits.MaxEntries
	}
	if l.MaxEntryBytes <= 0 {
		l.MaxEntryBytes = DefaultLimits.MaxEntryBytes
	}
	if l.MaxNameBytes <= 0 {
		l.MaxNameBytes = DefaultLimits.MaxNameBytes
	}
	return l
}

// Limit names one of the limits of [Limits].
type Limit string

// The limits a [LimitError] may name.
const (
	LimitBytes      Limit = "total size"  // Limits.MaxBytes
	LimitEntries    Limit = "entry count" // Limits.MaxEntries
	LimitEntryBytes Limit = "file size"   // Limits.MaxEntryBytes
	LimitNameBytes  Limit = "name length" // Limits.MaxNameBytes
)

// LimitError is the error of an archive that exceeds one of its [Limits].
// A server answers it with 413.
type LimitError struct {
	Limit Limit
	Max   int64  // the limit's value, in bytes or entries
	Name  string // the entry that crossed it; "" for none
}

func (e *LimitError) Error() string {
	unit := " bytes"
	if e.Limit == LimitEntries {
		unit = " entries"
	}
	s := fmt.Sprintf("archive exceeds the %s limit of %d%s", e.Limit, e.Max, unit)
	if e.Name != "" {
		s += " at " + quote(e.Name)
	}
	return s
}

// ErrUnsafe is wrapped by the error of an entry the reader refuses: a
// name that leaves the tree, a link that resolves outside it, a device,
// a hard link, a sparse file, a duplicate. A server answers it with 400.
var ErrUnsafe = errors.New("unsafe tar entry")

// ErrMalformed is wrapped by the error of a stream that is not a valid tar.
// A server answers it with 400.
var ErrMalformed = errors.New("malformed tar stream")

// unsafef returns an error wrapping ErrUnsafe about entry name.
func unsafef(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrUnsafe, quote(name), fmt.Sprintf(format, args...))
}

// quote quotes a name for a message, escaping control characters and
// cutting a long one short.
func quote(name string) string {
	if len(name) > 200 {
		name = name[:200] + "..."
	}
	return fmt.Sprintf("%+q", name)
}

// cleanName checks an entry name and returns it cleaned, without a
// trailing slash; "." is the tree's root.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", unsafef(name, "empty name")
	case path.IsAbs(name) || strings.HasPrefix(name, `\`):
		return "", unsafef(name, "absolute name")
	case strings.ContainsRune(name, 0):
		return "", unsafef(name, "NUL in name")
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", unsafef(name, "name with \"..\"")
		}
	}
	return path.Clean(name), nil
}

// maxHops bounds the links followed while resolving one link, as the
// kernel's ELOOP does.
const maxHops = 40

// linkReader reports whether the slash-separated path p (relative to the
// tree's root) is a symbolic link and, if so, its target.
type linkReader func(p string) (target string, isLink bool)

// resolvesInside reports whether the link at name, pointing at target,
// resolves to a place inside the tree, following links (as readLink tells
// them) the way the kernel does: ".." after a link leaves the link's
// target, not the link. A path part that does not exist is taken as a
// plain directory. It returns an error wrapping ErrUnsafe when the link
// leaves the tree or a chain of links is too long or loops.
func resolvesInside(name, target string, readLink linkReader) error {
	if target == "" {
		return unsafef(name, "link with an empty target")
	}
	if path.IsAbs(target) {
		return unsafef(name, "link to the absolute path %s", quote(target))
	}
	var stack []string
	if d := path.Dir(name); d != "." {
		stack = strings.Split(d, "/")
	}
	pending := strings.Split(target, "/")
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return unsafef(name, "link to %s leaves the directory", quote(target))
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		t, isLink := readLink(strings.Join(stack, "/"))
		if !isLink {
			continue
		}
		if hops++; hops > maxHops {
			return unsafef(name, "link to %s: too many links in a chain, or a loop", quote(target))
		}
		if path.IsAbs(t) || t == "" {
			return unsafef(name, "link to %s leads through a link to %s", quote(target), quote(t))
		}
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(t, "/"), pending...)
	}
	return nil
}

// HTTPStatus returns the status a server answers a refused archive with:
// 413 for a *LimitError or an *http.MaxBytesError, 400 for an error
// wrapping ErrUnsafe or ErrMalformed, and 0 for any other error (the
// server's own failure) or nil.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(*LimitError)), errors.As(err, new(*http.MaxBytesError)):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnsafe), errors.Is(err, ErrMalformed):
		return http.StatusBadRequest
	}
	return 0
}
