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
// Each pool keeps its statements prepared, by query text, for the life of
// the Store, so a hot query is parsed once rather than on every call.
// In WAL mode a commit makes every other connection drop its page cache,
// so a read connection re-reads its pages after each write; the write
// connection's cache survives. Lookups of one row by its key (JobGet,
// NodeGet, ComputeGet...) therefore run on the write connection, where
// they cost microseconds, and scans run on the read pool. Memory-mapped
// I/O is off. Writes that arrive while a transaction commits share the
// next one, each in a savepoint of its own (group commit, see write): no
// write returns before the commit that holds it.
// A write whose context carries a fence (store.WithFence) first reads
// the lease by its key in its own savepoint of the same transaction, and
// fails alone, changing nothing, when the term is over (see fenced).
// A write whose context is done before it starts is not made; once
// started, it runs to its end whatever the context (a write is short, and
// one given up halfway leaves the caller not knowing whether it
// committed). Reads honour their context throughout.
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
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
	"kumo/internal/store/schema"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// writeCacheKiB is the size of the write connection's page cache; read
// connections keep SQLite's default (2 MiB), which each commit empties.
// It is an upper bound, filled only as pages are read. With 100,000 jobs
// queued (a store of about 177 MB) it holds the pages a batch of
// placements touches, which at 32 MiB were read again with pread(2) for
// about a quarter of a placement round's CPU: BenchmarkScale at 10,000
// nodes went from about 4,100 to 5,300 placements/s, with the process's
// peak RSS at about 180 MB.
const writeCacheKiB = 128 << 10

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection (another process, or a checkpoint) before giving up.
const busyTimeoutMS = 10000

// Store is a store.Store kept in one SQLite file. It is safe for concurrent
// use.
type Store struct {
	w  *sql.DB // writes: one connection, transactions begin IMMEDIATE
	r  *sql.DB // reads: query_only connections
	ws stmts   // statements prepared on w
	rs stmts   // statements prepared on r

	group group // writes waiting for a transaction (see write)

	feed store.Fanout // Publish and Subscribe: this process only
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
	// No memory-mapped reads: in WAL mode every commit makes the other
	// connections drop their page caches, and a page reached through the
	// map is parsed afresh on every visit, which cost more than reading
	// it through read(2) into the page cache (BenchmarkJobReadAfterWrite:
	// about half the time without the map). It also kept the whole file
	// mapped by every connection, which showed as resident memory.
	params.Add("_pragma", "mmap_size(0)")
	reader := params.Encode()
	// The write connection's cache outlives its own commits and serves
	// the lookups by key (see keyRow): it is given room for the hot part
	// of a large queue.
	params.Add("_pragma", fmt.Sprintf("cache_size(%d)", -writeCacheKiB))
	// Savepoints (one per member of a JobUpdateBatch) copy the pages they
	// change to a sub-journal, which past 64 KiB spills to a temporary
	// file: in memory, a batch of thousands of placements no longer
	// writes each page there with pwrite(2).
	params.Add("_pragma", "temp_store(memory)")
	w, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	s := &Store{w: w, ws: stmts{db: w}}
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

	params, _ = url.ParseQuery(reader)
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
	s.rs = stmts{db: r}
	return s, nil
}

// Close closes the prepared statements and both connection pools.
func (s *Store) Close() error {
	return errors.Join(s.rs.close(), s.ws.close(), s.r.Close(), s.w.Close())
}

// stmts caches the statements prepared on one pool, by query text. The
// query texts are constants or are built from a bounded set of shapes (an
// IN list per number of states), so the cache stays small.
//
// On the write pool a statement must be got before the transaction that
// uses it begins: preparing needs the pool's only connection, which the
// transaction holds. Inside the transaction, tx.StmtContext reuses the
// statement already prepared on that connection.
type stmts struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns the statement for q, preparing it on first use. It does not
// hold the lock while it prepares, which waits for a connection.
func (c *stmts) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[q]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[q]; ok { // prepared meanwhile by another caller
		st.Close()
		return prev, nil
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = st
	return st, nil
}

// close closes every cached statement.
func (c *stmts) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, q)
	}
	return errors.Join(errs...)
}

// exec runs the write statement q in a write transaction, its own or
// shared with other writes (see write). Once begun it runs to its end;
// see writeCtx.
func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx, err := writeCtx(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.ws.get(ctx, q)
	if err != nil {
		return nil, err
	}
	var res sql.Result
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		res, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		return err
	})
	return res, err
}

// queryRow runs the read statement q, expected to return at most one row.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.rs.get(ctx, q)
	if err != nil {
		// A *sql.Row cannot be built with an error; a failed prepare is
		// repeated, unprepared, so that Scan reports it.
		return s.r.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// keyRow runs the read statement q, a lookup of one row by its key, on
// the write connection. That connection's page cache stays valid across
// its own commits, while a commit makes every read connection drop its
// cache (WAL mode), so a point lookup right after a write costs several
// page reads and parses on a read connection and none here. Such a lookup
// takes microseconds, so it delays writes little; anything that scans
// goes to the read pool.
func (s *Store) keyRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.ws.get(ctx, q)
	if err != nil {
		return s.w.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// query runs the read statement q and scans every row with scan.
func query[T any](ctx context.Context, s *Store, scan func(rowcodec.Scanner) (T, error), q string, args ...any) ([]T, error) {
	return queryOn(ctx, &s.rs, scan, q, args...)
}

// queryOn is query on the pool of c: s.rs, or s.ws for the reads that
// keyRow's reasons send to the write connection.
func queryOn[T any](ctx context.Context, c *stmts, scan func(rowcodec.Scanner) (T, error), q string, args ...any) ([]T, error) {
	st, err := c.get(ctx, q)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, scan)
}

// migrate applies, in one transaction, every embedded migration not yet
// recorded in schema_migrations, and returns the versions it applied.
func (s *Store) migrate(ctx context.Context) ([]int, error) {
	ms, err := schema.Load(migrationFS)
	if err != nil {
		return nil, err
	}
	var applied []int
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
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
			known[m.Version] = true
		}
		for v := range done {
			if !known[v] {
				return fmt.Errorf("schema version %d is newer than this binary", v)
			}
		}
		for _, m := range ms {
			if done[m.Version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			applied = append(applied, m.Version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}

// writeCtx returns ctx's error when it is already done, else ctx without
// its cancellation, for a write to run to its end: a write is short, and a
// write given up halfway leaves its caller not knowing whether it
// committed. Besides, the driver watches a cancellable context with a
// goroutine per statement, which costs more than a small write itself.
func writeCtx(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it, or
// rolls it back when fn fails. It returns fn's error unwrapped. fn gets a
// context without ctx's cancellation (see writeCtx) and must use it.
//
// The transaction may hold other writes too (see write, group commit):
// fn's changes are rolled back alone when it fails, and it returns only
// once they are committed. fn must use tx only, never the Store's pools.
func (s *Store) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.write(ctx, fn)
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

// limit turns a Page's limit into SQLite's LIMIT, where -1 means none.
func limit(p store.Page) int {
	if p.Limit <= 0 {
		return -1
	}
	return p.Limit
}

// Ready returns nil when the database answers and its schema is the one
// this binary ships: every embedded migration applied, none unknown.
func (s *Store) Ready(ctx context.Context) error {
	ms, err := schema.Load(migrationFS)
	if err != nil {
		return err
	}
	done, err := query(ctx, s, func(sc rowcodec.Scanner) (int, error) {
		var v int
		err := sc.Scan(&v)
		return v, err
	}, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	have := map[int]bool{}
	for _, v := range done {
		have[v] = true
	}
	for _, m := range ms {
		if !have[m.Version] {
			return fmt.Errorf("ready: migration %s is not applied", m.Name)
		}
		delete(have, m.Version)
	}
	for v := range have {
		return fmt.Errorf("ready: schema version %d is newer than this binary", v)
	}
	return nil
}
