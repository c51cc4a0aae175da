package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

type callerKey struct{}

// caller returns the token that authorised the request.
func caller(ctx context.Context) model.Token {
	t, _ := ctx.Value(callerKey{}).(model.Token)
	return t
}

// callerName is how systemData and records name the caller.
func callerName(ctx context.Context) string {
	t := caller(ctx)
	if t.Name == "" {
		return t.ID
	}
	return t.Name
}

// authorize checks the bearer token and that its role allows at least min.
// A missing, unknown or revoked token gets 401; too small a role gets 403.
// Neither changes anything.
func (s *Server) authorize(min model.Role, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		authz := r.Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(authz, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return errorf(http.StatusUnauthorized, api.CodeAuthenticationFailed,
				"a bearer token is required: send 'Authorization: Bearer <token>' (create one with 'kumo token create')")
		}
		t, err := s.store.TokenGetByHash(r.Context(), secret.HashToken(strings.TrimSpace(tok)))
		if errors.Is(err, store.ErrNotFound) || (err == nil && !t.RevokedAt.IsZero()) {
			return errorf(http.StatusUnauthorized, api.CodeAuthenticationFailed, "the bearer token is not valid or has been revoked")
		}
		if err != nil {
			return err
		}
		if !t.Role.Allows(min) {
			return errorf(http.StatusForbidden, api.CodeAuthorizationFailed,
				"token %q has role %q, which may not %s %s: this needs role %q or higher", t.ID, t.Role, r.Method, r.URL.Path, min)
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, t)))
	}
}
