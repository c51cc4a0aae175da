package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"kumo/internal/store/schema"
)

// Backup writes a consistent copy of the SQLite database at src to dest,
// a new file (mode 0600: it holds the same secrets as src). src may be in
// use by a running control plane: SQLite's VACUUM INTO reads one snapshot
// inside a read transaction, and writers carry on meanwhile. The copy is
// compact and self-contained (no -wal file), ready to be restored by
// copying it back into place.
func Backup(ctx context.Context, src, dest string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup %s: %w", src, err)
	}
	// VACUUM INTO accepts an empty file: made here, it gets our mode and
	// fails if dest exists.
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup to %s: %w", dest, err)
	}
	f.Close()
	err = vacuumInto(ctx, src, dest)
	if err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup %s to %s: %w", src, dest, err)
	}
	return nil
}

// vacuumInto runs VACUUM INTO dest on the database at src.
func vacuumInto(ctx context.Context, src, dest string) error {
	db, err := sql.Open("sqlite", src+"?_busy_timeout=10000")
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	// A file that is not a kumo store has no schema_migrations.
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		return fmt.Errorf("not a kumo database: %w", err)
	}
	_, err = db.ExecContext(ctx, `VACUUM INTO ?`, dest)
	return err
}

// Check opens the database at path read-only and returns an error unless
// it is an intact kumo store: SQLite's integrity check passes and its
// schema is known to this binary.
func Check(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		return err
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&result); err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if result != "ok" {
		return fmt.Errorf("check %s: integrity check: %s", path, result)
	}
	ms, err := schema.Load(migrationFS)
	if err != nil {
		return err
	}
	var newest int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("check %s: not a kumo database: %w", path, err)
	}
	if newest > ms[len(ms)-1].Version {
		return fmt.Errorf("check %s: %w", path, errors.New("its schema is newer than this binary"))
	}
	return nil
}
