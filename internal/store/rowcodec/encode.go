package rowcodec

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

// Fold is the case-folded form stored in *_key columns.
func Fold(s string) string { return strings.ToLower(s) }

// EncTime renders t in UTC with nanoseconds.
func EncTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// EncOptTime is EncTime, with NULL for the zero time.
func EncOptTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: EncTime(t), Valid: true}
}

// EncJSON renders v as JSON, with NULL when v is empty (n == 0).
func EncJSON(v any, n int) (sql.NullString, error) {
	if n == 0 {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// EncTags renders tags; nil and empty both become NULL.
func EncTags(tags map[string]string) (sql.NullString, error) { return EncJSON(tags, len(tags)) }

// EncErrors renders errs; nil and empty both become NULL.
func EncErrors(errs []model.Error) (sql.NullString, error) { return EncJSON(errs, len(errs)) }

// Decoder decodes column values, keeping the first error; its zero value
// is ready to use.
type Decoder struct {
	err error
}

// Err returns the first error met, naming its column, or nil.
func (d *Decoder) Err() error { return d.err }

// fail records err against column unless an error is already kept.
func (d *Decoder) fail(column string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("column %s: %w", column, err)
	}
}

// Time decodes a timestamp written by EncTime.
func (d *Decoder) Time(column, s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d.fail(column, err)
	}
	return t
}

// OptTime is Time, with the zero time for NULL.
func (d *Decoder) OptTime(column string, s sql.NullString) time.Time {
	if !s.Valid {
		return time.Time{}
	}
	return d.Time(column, s.String)
}

// Tags decodes tags written by EncTags; NULL and empty become nil.
func (d *Decoder) Tags(column string, s sql.NullString) map[string]string {
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

// Errors decodes errors written by EncErrors; NULL and empty become nil.
func (d *Decoder) Errors(column string, s sql.NullString) []model.Error {
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

// Strings decodes a JSON string list; NULL and empty become nil.
func (d *Decoder) Strings(column string, s sql.NullString) []string {
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
