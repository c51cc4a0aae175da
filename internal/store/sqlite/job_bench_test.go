package sqlite

import (
	"path/filepath"
	"testing"

	"kumo/internal/store/storetest"
)

// BenchmarkJobLifecycle is storetest.BenchJobLifecycle on a fresh SQLite file.
func BenchmarkJobLifecycle(b *testing.B) {
	storetest.BenchJobLifecycle(b, openTest(b, filepath.Join(b.TempDir(), "kumo.db")))
}

// BenchmarkJobReadAfterWrite is storetest.BenchJobReadAfterWrite on a fresh
// SQLite file.
func BenchmarkJobReadAfterWrite(b *testing.B) {
	storetest.BenchJobReadAfterWrite(b, openTest(b, filepath.Join(b.TempDir(), "kumo.db")))
}
