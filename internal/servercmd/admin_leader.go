package servercmd

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kumo/internal/cli"
	"kumo/internal/daemon"
	"kumo/internal/model"
)

func newCmdAdminLeader() *cobra.Command {
	var dataDir, database string
	cmd := &cobra.Command{
		Use:   "leader",
		Short: "Show which replica of the control plane leads, with its lease and term",
		Long: `Show the leader lease of the control plane's store: the replica that holds
it (and so runs the reconcilers), where it is reached, its term (the
fencing token, one more at each change of leader), when it took the lease,
when it last renewed it and when it expires unless renewed. A lease past
its expiry, by this host's clock, is marked expired: its holder stopped
renewing, and another replica takes over at its next poll. Reads the
PostgreSQL database of --database (default $` + daemon.EnvDatabaseURL + `), else the SQLite
store in --data-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if database == "" {
				database = os.Getenv(daemon.EnvDatabaseURL)
			}
			l, ok, err := daemon.LeaderLease(cmd.Context(), dataDir, database)
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintln(cmd.OutOrStdout(), "No leader has held the lease.")
				return nil
			}
			return printLease(cmd.OutOrStdout(), l, time.Now())
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".kumo-data", "the control plane's data directory (SQLite)")
	cmd.Flags().StringVar(&database, "database", "", "the PostgreSQL database's URL, postgres://USER:PASSWORD@HOST/DB (default: $"+daemon.EnvDatabaseURL+")")
	return cmd
}

// printLease writes a lease as "Key: value" lines, its times with how
// long ago (or until) they are at now.
func printLease(w io.Writer, l model.Lease, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(key, value string) { fmt.Fprintf(tw, "%s:\t%s\n", key, cli.EscapeControl(value)) }
	at := func(t time.Time) string {
		d := now.Sub(t).Round(100 * time.Millisecond)
		if d >= 0 {
			return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339Nano), d)
		}
		return fmt.Sprintf("%s (in %s)", t.UTC().Format(time.RFC3339Nano), -d)
	}
	holder, address := l.Holder, l.Address
	if holder == "" {
		holder = "none (released)"
		address = ""
	}
	if address == "" {
		address = "-"
	}
	line("Lease", l.Name)
	line("Holder", holder)
	line("Address", address)
	line("Term", fmt.Sprint(l.Term))
	line("Acquired", at(l.AcquiredAt))
	line("Last renewed", at(l.RenewedAt))
	expires := at(l.ExpiresAt)
	if !now.Before(l.ExpiresAt) {
		expires += ", expired"
	}
	line("Expires", expires)
	return tw.Flush()
}
