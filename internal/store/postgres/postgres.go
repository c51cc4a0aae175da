// Package postgres is kumo's PostgreSQL store backend, built on pgx
// (github.com/jackc/pgx/v5) and its connection pool. It passes the
// conformance suite in store/storetest, as the SQLite backend does, and
// returns the same rows for the same calls: the schema mirrors SQLite's,
// with keys and timestamps compared bytewise (COLLATE "C") and timestamps
// kept to the nanosecond.
//
// PostgreSQL is the store for a control plane that must outlive one host:
// several kumo processes may share one database. Every multi-row change is
// one transaction; conditional updates (a job's or node's expected state,
// a compute's ETag) are single statements or run under row locks, so two
// writers cannot both win. TokenRevoke's last-owner check locks the owner
// tokens it counts.
//
// A write whose context carries a fence (store.WithFence) first runs
// kumo_fence, a function of migration 0004, in its own transaction: it
// checks the lease's term and locks the lease row FOR SHARE, so a
// takeover waits for the write to end. A single statement is sent with
// its check as one batch, one round trip. Lease times are the database
// server's clock.
//
// A write whose context is done before it starts is not made; once
// started, it runs to its end whatever the context, as in the SQLite
// backend, though at most 30 s, so that a database that stops answering
// fails writes rather than hangs them. Reads honour their context
// throughout.
//
// The schema lives in migrations/*.sql, numbered NNNN_name.sql, separate
// from SQLite's. Open applies the ones not yet recorded in
// schema_migrations, in order, in one transaction that holds an advisory
// lock, so control planes starting together on one database migrate it
// once. A shipped file is never edited.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
	"kumo/internal/store/schema"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrateLockID is the advisory lock key migrations hold ("kumo" in ASCII).
const migrateLockID = 0x6b756d6f

// Store is a store.Store kept in a PostgreSQL database. It is safe for
// concurrent use, by several processes too.
type Store struct {
	pool *pgxpool.Pool

	feed   store.Fanout // what the listener receives, to subscribers
	lmu    sync.Mutex
	l      *listener // the LISTEN connection; nil before the first Subscribe
	closed bool      // Close has begun: no new listener
}

var _ store.Store = (*Store)(nil)

// IdleInTransactionTimeout is how long the server lets one of kumo's
// sessions sit idle inside a transaction before it ends the session
// (PostgreSQL's idle_in_transaction_session_timeout), unless the URL sets
// it.
const IdleInTransactionTimeout = 3 * time.Second

// Open connects to the database at url (postgres://user:password@host/db,
// or any form pgx accepts) and brings its schema up to date. The pool
// holds up to 16 connections, or 4 per core if more, unless the URL sets
// pool_max_conns. Errors never include the password.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the URL; say only what it is.
		return nil, fmt.Errorf("open postgres %s: invalid database URL", Redact(url))
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgx's default, max(4, cores), starves a control plane whose
		// loops and requests wait on the database more than on the CPU.
		cfg.MaxConns = int32(max(16, 4*runtime.GOMAXPROCS(0)))
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		// kumo's transactions run their statements back to back. One left
		// open by a process that froze (SIGSTOP, a paused VM) would hold
		// its row locks, a fenced write's lock on the controller lease
		// among them, and so keep any other replica from taking over:
		// the server ends it instead.
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.Itoa(int(IdleInTransactionTimeout / time.Millisecond))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %w", Redact(url), err)
	}
	s := &Store{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres %s: %w", Redact(url), err)
	}
	if _, err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres %s: %w", Redact(url), err)
	}
	return s, nil
}

// Close ends the listening connection, if any, and closes the pool.
func (s *Store) Close() error {
	s.stopListener()
	s.pool.Close()
	return nil
}

// Pool returns the store's connection pool, for tools that work on the
// database as a whole (kumo admin migrate).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ready returns nil when the database answers and its schema is the one
// this binary ships: every embedded migration applied, none unknown.
func (s *Store) Ready(ctx context.Context) error {
	ms, err := schema.Load(migrationFS)
	if err != nil {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	return checkVersions(ms, done)
}

// checkVersions returns an error unless done holds exactly the versions of
// ms.
func checkVersions(ms []schema.Migration, done []int) error {
	known := map[int]bool{}
	for _, m := range ms {
		known[m.Version] = true
	}
	have := map[int]bool{}
	for _, v := range done {
		if !known[v] {
			return fmt.Errorf("schema version %d is newer than this binary", v)
		}
		have[v] = true
	}
	for _, m := range ms {
		if !have[m.Version] {
			return fmt.Errorf("migration %s is not applied", m.Name)
		}
	}
	return nil
}

// Redact returns url with its password, if any, replaced by "xxxxx", for
// logs and errors. A string that does not parse as a URL is replaced
// whole, since it may be a key=value connection string with a password.
func Redact(url string) string {
	u, err := parseURL(url)
	if err != nil {
		return "(database URL)"
	}
	return redactURL(u)
}

// migrate applies, in one transaction, every embedded migration not yet
// recorded in schema_migrations, and returns the versions it applied.
func (s *Store) migrate(ctx context.Context) ([]int, error) {
	ms, err := schema.Load(migrationFS)
	if err != nil {
		return nil, err
	}
	var applied []int
	// Not inTx: a migration may take longer than a write (or wait that
	// long for another process's), and runs under the caller's context.
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY,
			name    TEXT NOT NULL
		)`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return err
		}
		done := map[int]bool{}
		known := map[int]bool{}
		for _, m := range ms {
			known[m.Version] = true
		}
		for _, v := range versions {
			if !known[v] {
				return fmt.Errorf("schema version %d is newer than this binary", v)
			}
			done[v] = true
		}
		for _, m := range ms {
			if done[m.Version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
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

// writeTimeout bounds one write (a statement or a transaction) that has
// begun: a database that stops answering (a network partition) fails it
// rather than holding its caller for good.
const writeTimeout = 30 * time.Second

// writeCtx returns ctx's error when it is already done, else ctx without
// its cancellation, for a write to run to its end: a write given up
// halfway leaves its caller not knowing whether it committed. The write
// still ends within writeTimeout; the caller must call cancel.
func writeCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	return wctx, cancel, nil
}

// exec runs the write statement q outside any transaction (PostgreSQL
// commits it on its own). Once begun it runs to its end; see writeCtx.
// When ctx carries a fence (store.WithFence), q runs only if the fence
// check, sent with it, passes (see execFenced).
func (s *Store) exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error) {
	ctx, cancel, err := writeCtx(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer cancel()
	if f, ok := store.FenceFrom(ctx); ok {
		return s.execFenced(ctx, f, q, args...)
	}
	return s.pool.Exec(ctx, q, args...)
}

// inTx runs fn in a read-committed transaction and commits it, or rolls
// it back when fn fails. It returns fn's error unwrapped. fn gets a
// context without ctx's cancellation (see writeCtx) and must use it.
// When ctx carries a fence (store.WithFence), the transaction first
// checks it and locks the lease row FOR SHARE until it ends; a failed
// check runs nothing and returns an error wrapping store.ErrFenced.
func (s *Store) inTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel, err := writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	if f, ok := store.FenceFrom(ctx); ok {
		if _, err := tx.Exec(ctx, fenceSQL, f.Lease, f.Term); err != nil {
			_ = tx.Rollback(ctx)
			return fencedErr(f, err)
		}
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// query runs q on db and scans every row with scan.
func query[T any](ctx context.Context, db querier, scan func(rowcodec.Scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// PostgreSQL error codes the store translates.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// storeErr translates a constraint violation into the store's sentinel:
// a duplicate key into store.ErrConflict, a missing parent row into
// store.ErrNotFound. Other errors pass through unchanged.
func storeErr(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case codeUniqueViolation:
		return store.ErrConflict
	case codeForeignKeyViolation:
		return store.ErrNotFound
	}
	return err
}

// notFound turns pgx.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// mustAffect returns store.ErrNotFound when tag changed no row.
func mustAffect(tag pgconn.CommandTag) error {
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// limit turns a Page's limit into a LIMIT argument, where NULL means none.
func limit(p store.Page) *int {
	if p.Limit <= 0 {
		return nil
	}
	return &p.Limit
}
