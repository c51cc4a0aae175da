// Package sqlite is kumo's SQLite store backend, built on the pure-Go driver
// modernc.org/sqlite. It passes the conformance suite in store/storetest.
//
// The database runs in WAL mode with synchronous=NORMAL, foreign keys on and
// a busy timeout: a commit survives a crash of the process (kill -9), though
// not necessarily a power cut. SQLite allows one writer at a time, so a
// Store keeps two connection pools on the same file: a write pool of exactly
// one connection, which serializes every write inside the process and so
// never sees SQLITE_BUSY from its own writers, and a read-only pool whose
// connections read the last committed state concurrently with the writer.
//
// The schema lives in migrations/*.sql, numbered NNNN_name.sql. Open applies
// the ones not yet recorded in schema_migrations, in order, in one
// transaction. New tables (nodes, jobs...) come as new files; a shipped
// file is never edited.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"kumo/internal/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection (another process, or a checkpoint) before giving up.
const busyTimeoutMS = 10000

// Store is a store.Store kept in one SQLite file. It is safe for concurrent
// use.
type Store struct {
	w *sql.DB // writes: one connection, transactions begin IMMEDIATE
	r *sql.DB // reads: query_only connections
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path, a file
// name, and brings its schema up to date. In-memory databases are not
// supported: the read and write pools must share the file.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("open sqlite %q: path must be a plain file name", path)
	}
	params := url.Values{}
	params.Set("_busy_timeout", strconv.Itoa(busyTimeoutMS))
	params.Set("_foreign_keys", "on")
	params.Set("_journal_mode", "WAL")
	params.Set("_synchronous", "NORMAL")
	params.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	s := &Store{w: w}
	// The write connection opens first: it creates the file and switches
	// it to WAL before any read connection looks at it.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if _, err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	params.Del("_journal_mode") // set once, by the writer; it persists in the file
	params.Del("_txlock")
	params.Set("_query_only", "on")
	r, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	r.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	s.r = r
	return s, nil
}

// Close closes both connection pools.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// migration is one embedded schema file.
type migration struct {
	version int    // the file's numeric prefix
	name    string // the file name
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, path := range names {
		name := strings.TrimPrefix(path, "migrations/")
		prefix, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and '_'", name)
		}
		b, err := migrationFS.ReadFile(path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// migrate applies, in one transaction, every embedded migration not yet
// recorded in schema_migrations, and returns the versions it applied.
func (s *Store) migrate(ctx context.Context) ([]int, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	var applied []int
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			name    TEXT NOT NULL
		) STRICT`); err != nil {
			return err
		}
		done := map[int]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				return err
			}
			done[v] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		known := map[int]bool{}
		for _, m := range ms {
			known[m.version] = true
		}
		for v := range done {
			if !known[v] {
				return fmt.Errorf("schema version %d is newer than this binary", v)
			}
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.version, m.name); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it, or
// rolls it back when fn fails. It returns fn's error unwrapped.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// storeErr translates a constraint violation into the store's sentinel:
// a duplicate key into store.ErrConflict, a missing parent row into
// store.ErrNotFound. Other errors pass through unchanged.
func storeErr(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return store.ErrConflict
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return store.ErrNotFound
	}
	return err
}

// notFound turns sql.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// mustAffect returns store.ErrNotFound when res changed no row.
func mustAffect(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// limit turns a Page's limit into SQLite's LIMIT, where -1 means none.
func limit(p store.Page) int {
	if p.Limit <= 0 {
		return -1
	}
	return p.Limit
}
