package sqlite

import (
	"path/filepath"
	"testing"

	"kumo/internal/store/storetest"
)

// BenchmarkFence is storetest.BenchFence on a fresh SQLite file.
func BenchmarkFence(b *testing.B) {
	storetest.BenchFence(b, openTest(b, filepath.Join(b.TempDir(), "kumo.db")))
}
