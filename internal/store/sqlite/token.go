package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// TokenCreate implements store.Store.
func (s *Store) TokenCreate(ctx context.Context, t model.Token) error {
	_, err := s.exec(ctx, `INSERT INTO tokens (id, name, role, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)`,
		rowcodec.TokenInsertArgs(t)...)
	if err != nil {
		return fmt.Errorf("token create %s: %w", t.ID, storeErr(err))
	}
	return nil
}

// TokenGetByHash implements store.Store.
func (s *Store) TokenGetByHash(ctx context.Context, hash string) (model.Token, error) {
	row := s.keyRow(ctx, `SELECT `+rowcodec.TokenColumns+` FROM tokens WHERE hash = ?`, hash)
	t, err := rowcodec.ScanToken(row)
	if err != nil {
		// The hash identifies a secret: keep it out of the message.
		return model.Token{}, fmt.Errorf("token get by hash: %w", notFound(err))
	}
	return t, nil
}

// TokenList implements store.Store. Tokens created at the same instant are
// ordered by ID.
func (s *Store) TokenList(ctx context.Context) ([]model.Token, error) {
	ts, err := list(ctx, s.r, rowcodec.ScanToken, `SELECT `+rowcodec.TokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("token list: %w", err)
	}
	return ts, nil
}

// TokenRevoke implements store.Store.
func (s *Store) TokenRevoke(ctx context.Context, id string, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ?
		AND NOT (role = ? AND revoked_at IS NULL
			AND (SELECT COUNT(*) FROM tokens WHERE role = ? AND revoked_at IS NULL) <= 1)`,
		rowcodec.EncOptTime(at), id, model.RoleOwner, model.RoleOwner)
	if err == nil {
		err = mustAffect(res)
	}
	if errors.Is(err, store.ErrNotFound) {
		var n int
		if qerr := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE id = ?`, id).Scan(&n); qerr != nil {
			err = qerr
		} else if n > 0 {
			err = store.ErrLastOwner
		}
	}
	if err != nil {
		return fmt.Errorf("token revoke %s: %w", id, err)
	}
	return nil
}
