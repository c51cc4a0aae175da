package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var tokenTests = []test{
	{"CreateGetByHash", testTokenCreateGetByHash},
	{"CreateConflict", testTokenCreateConflict},
	{"List", testTokenList},
	{"Revoke", testTokenRevoke},
	{"RevokeLastOwner", testTokenRevokeLastOwner},
}

// newToken returns a valid token created at at(n).
func newToken(id string, n int) model.Token {
	return model.Token{
		ID:        id,
		Name:      "token " + id,
		Role:      model.RoleContributor,
		Hash:      "hash-" + id,
		CreatedAt: at(n),
	}
}

func mustCreateToken(t *testing.T, s store.Store, tok model.Token) {
	t.Helper()
	if err := s.TokenCreate(t.Context(), tok); err != nil {
		t.Fatalf("TokenCreate(%s): %v", tok.ID, err)
	}
}

func testTokenCreateGetByHash(t *testing.T, s store.Store) {
	tok := newToken("kt_abc", 1)
	tok.Role = model.RoleOwner
	revoked := newToken("kt_def", 2)
	revoked.RevokedAt = at(3)
	mustCreateToken(t, s, tok)
	mustCreateToken(t, s, revoked)
	for _, want := range []model.Token{tok, revoked} {
		got, err := s.TokenGetByHash(t.Context(), want.Hash)
		if err != nil {
			t.Fatalf("TokenGetByHash(%s): %v", want.Hash, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("TokenGetByHash(%s) mismatch (-want +got):\n%s", want.Hash, diff)
		}
	}
	if _, err := s.TokenGetByHash(t.Context(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenGetByHash(missing) error = %v, want ErrNotFound", err)
	}
}

func testTokenCreateConflict(t *testing.T, s store.Store) {
	mustCreateToken(t, s, newToken("kt_abc", 1))
	sameHash := newToken("kt_other", 2)
	sameHash.Hash = "hash-kt_abc"
	sameID := newToken("kt_abc", 3)
	sameID.Hash = "hash-new"
	tests := []struct {
		name string
		tok  model.Token
	}{
		{"same ID", sameID},
		{"same hash", sameHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.TokenCreate(t.Context(), tt.tok); !errors.Is(err, store.ErrConflict) {
				t.Errorf("TokenCreate error = %v, want ErrConflict", err)
			}
		})
	}
	got, err := s.TokenList(t.Context())
	if err != nil {
		t.Fatalf("TokenList: %v", err)
	}
	if diff := cmp.Diff([]model.Token{newToken("kt_abc", 1)}, got); diff != "" {
		t.Errorf("TokenList (-want +got):\n%s", diff)
	}
}

func testTokenList(t *testing.T, s store.Store) {
	got, err := s.TokenList(t.Context())
	if err != nil {
		t.Fatalf("TokenList(empty): %v", err)
	}
	if len(got) != 0 {
		t.Errorf("TokenList(empty) = %v, want none", got)
	}
	// Created out of order, at instants whose shortest RFC 3339 texts
	// ("05Z", "05.1Z", "05.12Z") sort in the opposite order.
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	first := newToken("c", 0)
	first.CreatedAt = base
	second := newToken("b", 0)
	second.CreatedAt = base.Add(100 * time.Millisecond)
	third := newToken("a", 0)
	third.CreatedAt = base.Add(120 * time.Millisecond)
	for _, tok := range []model.Token{third, first, second} {
		mustCreateToken(t, s, tok)
	}
	got, err = s.TokenList(t.Context())
	if err != nil {
		t.Fatalf("TokenList: %v", err)
	}
	if diff := cmp.Diff([]model.Token{first, second, third}, got); diff != "" {
		t.Errorf("TokenList (-want +got):\n%s", diff)
	}
}

func testTokenRevoke(t *testing.T, s store.Store) {
	tok := newToken("kt_abc", 1)
	mustCreateToken(t, s, tok)
	if err := s.TokenRevoke(t.Context(), tok.ID, at(7)); err != nil {
		t.Fatalf("TokenRevoke: %v", err)
	}
	want := tok
	want.RevokedAt = at(7)
	got, err := s.TokenGetByHash(t.Context(), tok.Hash)
	if err != nil {
		t.Fatalf("TokenGetByHash: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after TokenRevoke (-want +got):\n%s", diff)
	}
	if err := s.TokenRevoke(t.Context(), "nope", at(7)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenRevoke(missing) error = %v, want ErrNotFound", err)
	}
}

func testTokenRevokeLastOwner(t *testing.T, s store.Store) {
	owner1, owner2, old := newToken("kt_o1", 1), newToken("kt_o2", 2), newToken("kt_o0", 0)
	for _, tok := range []*model.Token{&owner1, &owner2, &old} {
		tok.Role = model.RoleOwner
	}
	old.RevokedAt = at(1)
	for _, tok := range []model.Token{old, owner1, owner2} {
		mustCreateToken(t, s, tok)
	}
	if err := s.TokenRevoke(t.Context(), owner1.ID, at(5)); err != nil {
		t.Fatalf("TokenRevoke(one of two owners): %v", err)
	}
	if err := s.TokenRevoke(t.Context(), owner2.ID, at(6)); !errors.Is(err, store.ErrLastOwner) {
		t.Fatalf("TokenRevoke(last owner) error = %v, want ErrLastOwner", err)
	}
	got, err := s.TokenGetByHash(t.Context(), owner2.Hash)
	if err != nil {
		t.Fatalf("TokenGetByHash: %v", err)
	}
	if diff := cmp.Diff(owner2, got); diff != "" {
		t.Errorf("the last owner changed (-want +got):\n%s", diff)
	}
	// An already revoked owner is no owner: revoking it again is allowed.
	if err := s.TokenRevoke(t.Context(), old.ID, at(7)); err != nil {
		t.Errorf("TokenRevoke(revoked owner): %v", err)
	}
}
