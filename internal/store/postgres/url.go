package postgres

import (
	"errors"
	"net/url"
	"strings"
)

// parseURL parses a postgres:// or postgresql:// URL.
func parseURL(s string) (*url.URL, error) {
	if !IsURL(s) {
		return nil, errors.New("not a postgres:// URL")
	}
	return url.Parse(s)
}

// redactURL masks u's password, in its user information or in a password
// parameter.
func redactURL(u *url.URL) string {
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// IsURL reports whether s is a PostgreSQL URL (postgres:// or
// postgresql://), as kumo up --database takes.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}
