package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

// NewToken is a freshly created token with its secret, which exists only in
// memory and is shown to the user once.
type NewToken struct {
	model.Token
	Secret string
}

// createToken makes a token with a fresh secret and stores its hash.
func createToken(ctx context.Context, st store.Store, name string, role model.Role, now time.Time) (NewToken, error) {
	for range 3 {
		tok, id, hash, err := secret.NewToken()
		if err != nil {
			return NewToken{}, err
		}
		t := model.Token{ID: id, Name: name, Role: role, Hash: hash, CreatedAt: now.UTC()}
		err = st.TokenCreate(ctx, t)
		if errors.Is(err, store.ErrConflict) {
			continue // ID prefix collision: draw again
		}
		if err != nil {
			return NewToken{}, fmt.Errorf("store token: %w", err)
		}
		return NewToken{Token: t, Secret: tok}, nil
	}
	return NewToken{}, fmt.Errorf("create token: repeated ID collisions")
}

// Bootstrap prepares a fresh store: when it holds no token it creates an
// owner token (returned with its secret, to be shown once) and the default
// workspace. On a store that has tokens it changes nothing and returns nil.
func Bootstrap(ctx context.Context, st store.Store, ws model.Workspace, now time.Time) (*NewToken, error) {
	ts, err := st.TokenList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	if len(ts) > 0 {
		return nil, nil
	}
	if _, err := st.WorkspaceGet(ctx, ws.ID); errors.Is(err, store.ErrNotFound) {
		ws.CreatedAt, ws.ModifiedAt, ws.CreatedBy = now.UTC(), now.UTC(), "kumo"
		if err := st.WorkspaceCreate(ctx, ws); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("create default workspace: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("get default workspace: %w", err)
	}
	t, err := createToken(ctx, st, "owner", model.RoleOwner, now)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateOwnerToken makes an owner token for a client config that kumo up
// writes on a later start.
func CreateOwnerToken(ctx context.Context, st store.Store, name string, now time.Time) (NewToken, error) {
	return createToken(ctx, st, name, model.RoleOwner, now)
}
