package postgres

import (
	"testing"

	"kumo/internal/store"
	"kumo/internal/store/storetest"
)

// BenchmarkJobLifecycle is the SQLite backend's benchmark of the same
// name, on PostgreSQL: compare the two run in one session.
func BenchmarkJobLifecycle(b *testing.B) {
	s, _ := openTest(b)
	storetest.BenchJobLifecycle(b, s)
}

// BenchmarkJobHead is storetest.BenchJobHead on PostgreSQL.
func BenchmarkJobHead(b *testing.B) {
	s, _ := openTest(b)
	storetest.BenchJobHead(b, s)
}

// BenchmarkJobSubmit is storetest.BenchJobSubmit on fresh PostgreSQL
// databases.
func BenchmarkJobSubmit(b *testing.B) {
	storetest.BenchJobSubmit(b, func(b *testing.B) store.Store {
		s, _ := openTest(b)
		return s
	})
}
