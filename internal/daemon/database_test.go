package daemon

import (
	"bytes"
	"strings"
	"testing"
)

func TestOpenStoreRefusesBadDatabase(t *testing.T) {
	tests := []struct {
		name, database, want string
	}{
		{"not postgres", "mysql://kumo:s3cret@127.0.0.1/kumo", "want a postgres:// URL"},
		{"no server", "postgres://kumo:s3cret@127.0.0.1:1/kumo?connect_timeout=2", "open store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			st, err := openStore(t.Context(), Options{DataDir: t.TempDir(), Database: tt.database}, &out)
			if err == nil {
				st.Close()
				t.Fatalf("openStore(%s) succeeded, want an error", tt.database)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("openStore error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(out.String(), "s3cret") {
				t.Errorf("openStore shows the password: %v\n%s", err, out.String())
			}
		})
	}
}
