package postgres

import (
	"testing"

	"kumo/internal/store/storetest"
)

// BenchmarkFence is storetest.BenchFence on a fresh PostgreSQL database.
func BenchmarkFence(b *testing.B) {
	s, _ := openTest(b)
	storetest.BenchFence(b, s)
}
