package sqlite

import (
	"path/filepath"
	"testing"

	"kumo/internal/store"
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

// BenchmarkJobHead is storetest.BenchJobHead on a fresh SQLite file.
func BenchmarkJobHead(b *testing.B) {
	storetest.BenchJobHead(b, openTest(b, filepath.Join(b.TempDir(), "kumo.db")))
}

// BenchmarkJobSubmit is storetest.BenchJobSubmit on fresh SQLite files.
func BenchmarkJobSubmit(b *testing.B) {
	storetest.BenchJobSubmit(b, func(b *testing.B) store.Store {
		return openTest(b, filepath.Join(b.TempDir(), "kumo.db"))
	})
}
