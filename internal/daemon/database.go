package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"kumo/internal/store"
	"kumo/internal/store/postgres"
	"kumo/internal/store/sqlite"
)

// EnvDatabaseURL names the environment variable kumo up reads the database
// URL from when --database is not given.
const EnvDatabaseURL = "KUMO_DATABASE_URL"

// sqliteFile is the SQLite database's name in the data directory.
const sqliteFile = "kumo.db"

// SQLitePath returns the path of the SQLite database in dataDir.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, sqliteFile) }

// openStore opens the store o names: the PostgreSQL database at
// o.Database when it is a postgres:// URL, else the SQLite file in the
// data directory. It tells out which, with any password masked.
func openStore(ctx context.Context, o Options, out io.Writer) (store.Store, error) {
	if o.Database != "" {
		if !postgres.IsURL(o.Database) {
			return nil, fmt.Errorf("--database: want a postgres:// URL, got %s", postgres.Redact(o.Database))
		}
		st, err := postgres.Open(ctx, o.Database)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		fmt.Fprintf(out, "Database: PostgreSQL at %s\n", postgres.Redact(o.Database))
		return st, nil
	}
	path := SQLitePath(o.DataDir)
	// SQLite gives its -wal and -shm files the database file's mode.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	if err := secureDataDir(o.DataDir); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}
