package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"kumo/internal/leader"
	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/postgres"
	"kumo/internal/store/sqlite"
	"kumo/internal/store/storecopy"
)

// Backup writes a consistent copy of the SQLite store in dataDir to dest,
// a new file, while a control plane may be serving from it (kumo admin
// backup). A store kept in PostgreSQL is backed up with PostgreSQL's own
// tools (pg_dump); see docs/operations.md.
func Backup(ctx context.Context, dataDir, dest string) error {
	return sqlite.Backup(ctx, SQLitePath(dataDir), dest)
}

// Restore puts the SQLite backup file backup in place as the store of
// dataDir (kumo admin restore). It checks the backup first, and refuses
// while a control plane runs on dataDir, and, unless force is set, when
// dataDir already has a database. The next kumo up serves the restored
// state.
func Restore(ctx context.Context, dataDir, backup string, force bool) error {
	if err := sqlite.Check(ctx, backup); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("restore: create data directory: %w", err)
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer lock.release()
	if err := lock.describe("restoring a backup"); err != nil {
		return err
	}
	path := SQLitePath(dataDir)
	if _, err := os.Stat(path); err == nil && !force {
		return fmt.Errorf("restore: %s already has a database; --force replaces it", dataDir)
	}
	tmp := path + ".restore"
	if err := copyFile(backup, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	// The old database's write-ahead log must not be replayed onto the
	// restored file.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			os.Remove(tmp)
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// copyFile copies src to a new file dst (mode 0600) and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Migrate copies the whole state of a SQLite store to an empty PostgreSQL
// database (kumo admin migrate). from is "sqlite:PATH", PATH being the
// database file or a data directory; to is a postgres:// URL. It writes
// the rows copied per table to out. The password in to is never shown.
func Migrate(ctx context.Context, from, to string, out io.Writer) error {
	path, ok := strings.CutPrefix(from, "sqlite:")
	if !ok || path == "" {
		return fmt.Errorf("--from %q: want sqlite:PATH (the database file or the data directory)", from)
	}
	if fi, err := os.Stat(path); err != nil {
		return fmt.Errorf("--from: %w", err)
	} else if fi.IsDir() {
		path = SQLitePath(path)
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	}
	if !postgres.IsURL(to) {
		return fmt.Errorf("--to: want a postgres:// URL, got %s", postgres.Redact(to))
	}
	tables, err := storecopy.SQLiteToPostgres(ctx, path, to)
	if err != nil {
		return err
	}
	var total int64
	for _, t := range tables {
		fmt.Fprintf(out, "%-16s %d rows\n", t.Name, t.Rows)
		total += t.Rows
	}
	fmt.Fprintf(out, "Copied %d rows from %s to %s. Start the control plane with --database pointing there.\n",
		total, path, postgres.Redact(to))
	return nil
}

// LeaderLease returns the leader lease of the control plane's store (kumo
// admin leader): the PostgreSQL database at database when it is not "",
// else the SQLite store in dataDir, which must exist. ok is false when no
// replica ever held the lease.
func LeaderLease(ctx context.Context, dataDir, database string) (l model.Lease, ok bool, err error) {
	var st store.Store
	if database != "" {
		if !postgres.IsURL(database) {
			return model.Lease{}, false, fmt.Errorf("--database: want a postgres:// URL, got %s", postgres.Redact(database))
		}
		pg, err := postgres.Open(ctx, database)
		if err != nil {
			return model.Lease{}, false, err
		}
		st = pg
	} else {
		path := SQLitePath(dataDir)
		if _, err := os.Stat(path); err != nil {
			return model.Lease{}, false, fmt.Errorf("--data-dir: %w", err)
		}
		sq, err := sqlite.Open(ctx, path)
		if err != nil {
			return model.Lease{}, false, err
		}
		st = sq
	}
	defer st.Close()
	l, err = st.LeaseGet(ctx, leader.DefaultName)
	if errors.Is(err, store.ErrNotFound) {
		return model.Lease{}, false, nil
	}
	if err != nil {
		return model.Lease{}, false, err
	}
	return l, true, nil
}
