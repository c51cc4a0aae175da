// Package storecopy moves a team's whole state from a SQLite store to a
// PostgreSQL one (kumo admin migrate). It copies rows table by table, not
// through the Store interface: every column of every table the schema has
// goes across, including those no Store method lists in full (operations,
// events, usage records).
//
// The copy is all or nothing: it reads SQLite in one read transaction (one
// consistent snapshot, even of a store in use) and writes PostgreSQL in
// one transaction, which it commits only when every table is copied. It
// refuses a target that holds any row, so it never merges two teams'
// state. Both schemas are first brought up to date by opening them with
// their stores, and must then name the same tables and columns.
package storecopy

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"kumo/internal/store/postgres"
	"kumo/internal/store/sqlite"
)

// Table is how many rows of one table were copied.
type Table struct {
	Name string
	Rows int64
}

// SQLiteToPostgres copies every row of the SQLite database at sqlitePath
// into the PostgreSQL database at pgURL, which must hold none, and returns
// the rows copied per table, in the order copied. Errors never include the
// database password.
func SQLiteToPostgres(ctx context.Context, sqlitePath, pgURL string) ([]Table, error) {
	// Opening each store applies its migrations, so both schemas are this
	// binary's.
	src, err := sqlite.Open(ctx, sqlitePath)
	if err != nil {
		return nil, err
	}
	src.Close()
	dst, err := postgres.Open(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer dst.Close()

	db, err := sql.Open("sqlite", sqlitePath+"?_busy_timeout=10000")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", sqlitePath, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// A read transaction in WAL mode sees one snapshot throughout.
	rtx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read sqlite %s: %w", sqlitePath, err)
	}
	defer rtx.Rollback()

	var copied []Table
	err = pgx.BeginFunc(ctx, dst.Pool(), func(wtx pgx.Tx) error {
		tables, err := pgTables(ctx, wtx)
		if err != nil {
			return err
		}
		if err := sameTables(ctx, rtx, tables); err != nil {
			return err
		}
		for _, t := range tables {
			if counters[t] {
				continue
			}
			var n int64
			if err := wtx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
				return fmt.Errorf("count %s: %w", t, err)
			}
			if n > 0 {
				return fmt.Errorf("the target database is not empty: table %s has %d rows; migrate into a new database", t, n)
			}
		}
		for _, t := range tables {
			if counters[t] {
				if _, err := wtx.Exec(ctx, `DELETE FROM `+pgx.Identifier{t}.Sanitize()); err != nil {
					return fmt.Errorf("copy %s: %w", t, err)
				}
			}
			n, err := copyTable(ctx, rtx, wtx, t)
			if err != nil {
				return fmt.Errorf("copy %s: %w", t, err)
			}
			copied = append(copied, Table{Name: t, Rows: n})
		}
		// The next event gets a number after every copied one.
		_, err = wtx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('events', 'seq'), coalesce(max(seq), 0) + 1, false) FROM events`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("migrate to %s: %w", postgres.Redact(pgURL), err)
	}
	return copied, nil
}

// pgTables returns the target's tables, but schema_migrations, parents
// first (workspaces before the tables that reference it).
func pgTables(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'
		AND table_name NOT IN `+transientList+` ORDER BY table_name`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	slices.SortStableFunc(tables, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "workspaces":
			return -1
		case b == "workspaces":
			return 1
		}
		return 0
	})
	return tables, nil
}

// counters are the tables that hold a counter row from their creation
// (job_seq, the last job Seq handed out): the source's row replaces the
// target's.
var counters = map[string]bool{"job_seq": true}

// derivedList names, as an SQL list, the SQLite tables that are derived
// from others and kept by triggers (job_counts counts the jobs): they are
// not copied, since the target keeps its own.
const derivedList = "('job_counts')"

// transientList names, as an SQL list, the tables that hold the running
// replicas' state rather than the team's, not copied on either side: which
// replica holds which node and messages on their way to nodes (the
// replicas write them afresh once they run on the target), and leases
// (who leads, on which clock: the target's replicas elect a leader), and
// the replicas registered (each registers itself as it starts).
const transientList = "('node_presence', 'node_messages', 'leases', 'replicas')"

// sameTables returns an error unless the SQLite schema has exactly the
// target's tables.
func sameTables(ctx context.Context, rtx *sql.Tx, want []string) error {
	rows, err := rtx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' AND name NOT IN `+derivedList+`
		AND name NOT IN `+transientList+` ORDER BY name`)
	if err != nil {
		return fmt.Errorf("list sqlite tables: %w", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		return fmt.Errorf("the schemas differ: sqlite has tables %v, postgres %v", got, w)
	}
	return nil
}

// column is one column of a target table.
type column struct {
	name, typ string // typ is information_schema's data_type
}

// copyTable copies every row of table from SQLite (rtx) to PostgreSQL
// (wtx) and returns how many it copied.
func copyTable(ctx context.Context, rtx *sql.Tx, wtx pgx.Tx, table string) (int64, error) {
	rows, err := wtx.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table)
	if err != nil {
		return 0, err
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.name, &c.typ)
		return c, err
	})
	if err != nil {
		return 0, err
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	// A column missing on the SQLite side fails here, naming it.
	src, err := rtx.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+table)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	return wtx.CopyFrom(ctx, pgx.Identifier{table}, names, &sqliteRows{rows: src, cols: cols})
}

// sqliteRows feeds SQLite rows to CopyFrom, converting each value to the
// target column's type where the two differ (SQLite keeps flags as 0/1).
type sqliteRows struct {
	rows *sql.Rows
	cols []column
	vals []any
	err  error
}

func (r *sqliteRows) Next() bool {
	if !r.rows.Next() {
		return false
	}
	vals := make([]any, len(r.cols))
	ptrs := make([]any, len(r.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := r.rows.Scan(ptrs...); err != nil {
		r.err = err
		return false
	}
	for i, c := range r.cols {
		v, err := convert(vals[i], c.typ)
		if err != nil {
			r.err = fmt.Errorf("column %s: %w", c.name, err)
			return false
		}
		vals[i] = v
	}
	r.vals = vals
	return true
}

func (r *sqliteRows) Values() ([]any, error) { return r.vals, r.err }

func (r *sqliteRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}

// convert turns a value SQLite returned into one for a PostgreSQL column
// of type typ.
func convert(v any, typ string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "boolean":
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want an integer flag, got %T", v)
		}
		return n != 0, nil
	case "double precision":
		switch n := v.(type) {
		case int64:
			return float64(n), nil
		case float64:
			return n, nil
		}
		return nil, fmt.Errorf("want a number, got %T", v)
	case "text":
		switch s := v.(type) {
		case string:
			return s, nil
		case []byte:
			return string(s), nil
		}
		return nil, fmt.Errorf("want text, got %T", v)
	}
	return v, nil
}
