package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// TokenCreate implements store.Store.
func (s *Store) TokenCreate(ctx context.Context, t model.Token) error {
	_, err := s.exec(ctx, `INSERT INTO tokens (id, name, role, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		rowcodec.TokenInsertArgs(t)...)
	if err != nil {
		return fmt.Errorf("token create %s: %w", t.ID, storeErr(err))
	}
	return nil
}

// TokenGetByHash implements store.Store.
func (s *Store) TokenGetByHash(ctx context.Context, hash string) (model.Token, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+rowcodec.TokenColumns+` FROM tokens WHERE hash = $1`, hash)
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
	ts, err := query(ctx, s.pool, rowcodec.ScanToken, `SELECT `+rowcodec.TokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("token list: %w", err)
	}
	return ts, nil
}

// TokenRevoke implements store.Store. It locks every unrevoked owner token
// (and the token revoked) before it counts them, so of two revokes at once
// of the last two owners the second waits for the first, then sees one
// owner left and refuses.
func (s *Store) TokenRevoke(ctx context.Context, id string, at time.Time) error {
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, role, revoked_at IS NULL FROM tokens
			WHERE id = $1 OR (role = $2 AND revoked_at IS NULL) ORDER BY id FOR UPDATE`, id, string(model.RoleOwner))
		if err != nil {
			return err
		}
		type row struct {
			id      string
			role    model.Role
			current bool
		}
		locked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var v row
			err := r.Scan(&v.id, &v.role, &v.current)
			return v, err
		})
		if err != nil {
			return err
		}
		owners, found := 0, false
		var target row
		for _, r := range locked {
			if r.role == model.RoleOwner && r.current {
				owners++
			}
			if r.id == id {
				target, found = r, true
			}
		}
		if !found {
			return store.ErrNotFound
		}
		if target.role == model.RoleOwner && target.current && owners <= 1 {
			return store.ErrLastOwner
		}
		_, err = tx.Exec(ctx, `UPDATE tokens SET revoked_at = $1 WHERE id = $2`, rowcodec.EncOptTime(at), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("token revoke %s: %w", id, err)
	}
	return nil
}
