package servercmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"kumo/internal/daemon"
)

// newCmdAdmin returns kumo admin: operations on a control plane's own
// store, run on its host rather than through the API.
func newCmdAdmin() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Operate on the control plane's store: back up, restore, migrate to PostgreSQL, show the leader",
	}
	cmd.AddCommand(newCmdAdminBackup(), newCmdAdminRestore(), newCmdAdminMigrate(), newCmdAdminLeader())
	return cmd
}

func newCmdAdminBackup() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the SQLite store to FILE, while kumo up serves",
		Long: `Write a consistent copy of the SQLite store in the data directory to FILE,
a new file. The control plane may keep serving meanwhile: the copy is one
snapshot (SQLite's VACUUM INTO). FILE holds the store's secrets: keep it
as safe as the data directory. A store kept in PostgreSQL is backed up
with pg_dump instead (see docs/operations.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := daemon.Backup(cmd.Context(), dataDir, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Backed up %s to %s\n", daemon.SQLitePath(dataDir), args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".kumo-data", "the control plane's data directory")
	return cmd
}

func newCmdAdminRestore() *cobra.Command {
	var (
		dataDir string
		force   bool
	)
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Put a backup made by kumo admin backup in place as the SQLite store",
		Long: `Put FILE, a backup made by kumo admin backup, in place as the SQLite store
of the data directory, after checking it. The control plane must be
stopped; kumo up then serves the restored state. An existing database is
replaced only with --force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := daemon.Restore(cmd.Context(), dataDir, args[0], force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Restored %s to %s; start kumo up to serve it\n", args[0], daemon.SQLitePath(dataDir))
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".kumo-data", "the control plane's data directory")
	cmd.Flags().BoolVar(&force, "force", false, "replace the data directory's database")
	return cmd
}

func newCmdAdminMigrate() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate --from sqlite:PATH --to postgres://...",
		Short: "Copy a SQLite store's whole state into an empty PostgreSQL database",
		Long: `Copy every row of a SQLite store (workspaces, computes, operations, tokens,
quotas, jobs, nodes, usage, events, compute status) into an empty
PostgreSQL database, in one transaction: all or nothing. PATH is the
database file or the data directory. Stop the control plane first, so
that nothing written after the copy is lost; then start it with
--database set to the same URL. --to defaults to $` + daemon.EnvDatabaseURL + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				to = os.Getenv(daemon.EnvDatabaseURL)
			}
			if from == "" || to == "" {
				return fmt.Errorf("both --from and --to are needed")
			}
			return daemon.Migrate(cmd.Context(), from, to, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the SQLite store: sqlite:PATH, PATH being the database file or the data directory")
	cmd.Flags().StringVar(&to, "to", "", "the PostgreSQL database's URL, postgres://USER:PASSWORD@HOST/DB (default: $"+daemon.EnvDatabaseURL+")")
	return cmd
}
