package postgres

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"kumo/internal/model"
)

// timeLayout is fixed width, so stored timestamps sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// fold is the case-folded form stored in *_key columns.
func fold(s string) string { return strings.ToLower(s) }

// encTime renders t in UTC with nanoseconds.
func encTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// encOptTime is encTime, with NULL for the zero time.
func encOptTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: encTime(t), Valid: true}
}

// encJSON renders v as JSON, with NULL when v is empty (n == 0).
func encJSON(v any, n int) (sql.NullString, error) {
	if n == 0 {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// encTags renders tags; nil and empty both become NULL.
func encTags(tags map[string]string) (sql.NullString, error) { return encJSON(tags, len(tags)) }

// encErrors renders errs; nil and empty both become NULL.
func encErrors(errs []model.Error) (sql.NullString, error) { return encJSON(errs, len(errs)) }

// decoder decodes column values, keeping the first error.
type decoder struct {
	err error
}

func (d *decoder) fail(column string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("column %s: %w", column, err)
	}
}

func (d *decoder) time(column, s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d.fail(column, err)
	}
	return t
}

func (d *decoder) optTime(column string, s sql.NullString) time.Time {
	if !s.Valid {
		return time.Time{}
	}
	return d.time(column, s.String)
}

func (d *decoder) tags(column string, s sql.NullString) map[string]string {
	if !s.Valid {
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s.String), &m); err != nil {
		d.fail(column, err)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func (d *decoder) errors(column string, s sql.NullString) []model.Error {
	if !s.Valid {
		return nil
	}
	var errs []model.Error
	if err := json.Unmarshal([]byte(s.String), &errs); err != nil {
		d.fail(column, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func (d *decoder) strings(column string, s sql.NullString) []string {
	if !s.Valid {
		return nil
	}
	var ss []string
	if err := json.Unmarshal([]byte(s.String), &ss); err != nil {
		d.fail(column, err)
	}
	if len(ss) == 0 {
		return nil
	}
	return ss
}
