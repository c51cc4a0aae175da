package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/server/connlimit"
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
// A missing, unknown or revoked token gets 401 and the connection is
// closed; a token past its rate limit gets 429 with Retry-After; too small
// a role gets 403. None changes anything. A valid token marks the
// connection authenticated (see connlimit).
func (s *Server) authorize(min model.Role, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		// A request Serve made in process carries its caller's token hash
		// in its context instead of a header.
		hash, inProcess := r.Context().Value(inProcessKey{}).(string)
		if !inProcess {
			authz := r.Header.Get("Authorization")
			scheme, tok, ok := strings.Cut(authz, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
				return errorf(http.StatusUnauthorized, api.CodeAuthenticationFailed,
					"a bearer token is required: send 'Authorization: Bearer <token>' (create one with 'kumo token create')")
			}
			hash = secret.HashToken(strings.TrimSpace(tok))
		}
		t, err := s.tokens.get(r.Context(), s.store, hash, s.now())
		if errors.Is(err, store.ErrNotFound) || (err == nil && !t.RevokedAt.IsZero()) {
			return errorf(http.StatusUnauthorized, api.CodeAuthenticationFailed, "the bearer token is not valid or has been revoked")
		}
		if err != nil {
			return err
		}
		connlimit.Authenticated(r.Context())
		if ok, wait := s.limiter.allow(t.ID, s.now()); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
			return errorf(http.StatusTooManyRequests, api.CodeTooManyRequests,
				"token %q made more than %g requests per second (bursts of %g); retry after %d s", t.ID, s.limiter.rate, s.limiter.burst, max(1, secs))
		}
		if !t.Role.Allows(min) {
			return errorf(http.StatusForbidden, api.CodeAuthorizationFailed,
				"token %q has role %q, which may not %s %s: this needs role %q or higher", t.ID, t.Role, r.Method, r.URL.Path, min)
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, t)))
	}
}

// tokenTTL is how long a looked-up token is trusted without reading the
// store again. A revoke through this server clears the cache at once; one
// through another replica takes effect here within tokenTTL.
const tokenTTL = 2 * time.Second

// maxCachedTokens bounds the cache; past it the cache starts over.
const maxCachedTokens = 1024

// tokenCache remembers recent token lookups, so that a busy client does
// not cost a store read per request.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedToken // by hash
}

type cachedToken struct {
	token   model.Token
	expires time.Time
}

func (c *tokenCache) get(ctx context.Context, st store.Store, hash string, now time.Time) (model.Token, error) {
	c.mu.Lock()
	e, ok := c.m[hash]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.token, nil
	}
	t, err := st.TokenGetByHash(ctx, hash)
	if err != nil {
		return t, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedTokens {
		c.m = map[string]cachedToken{}
	}
	c.m[hash] = cachedToken{token: t, expires: now.Add(tokenTTL)}
	c.mu.Unlock()
	return t, nil
}

// clear forgets every cached token (after a revoke).
func (c *tokenCache) clear() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}
