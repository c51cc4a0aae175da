// Package rowcodec is the row encoding that the SQL store backends share:
// how model values become column arguments (case-folded keys, fixed-width
// UTC timestamps, JSON for tags, errors and lists, NULL for empty values)
// and how rows are scanned back into model values. Each backend keeps its
// own SQL text and transactions; the column lists it selects must follow
// the order each Scan function documents.
package rowcodec

// Scanner is one result row: *sql.Row and *sql.Rows of database/sql, and
// pgx.Row and pgx.Rows of pgx (which scan into database/sql's Scanner
// types such as sql.NullString), all satisfy it.
type Scanner interface {
	Scan(dest ...any) error
}
