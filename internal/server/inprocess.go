package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/store"
)

// inProcessKey marks a request that Serve made for a caller already
// identified by the hash of their token.
type inProcessKey struct{}

// ErrTokenInvalid is returned by Authenticate and TokenByHash for a token
// that is unknown or revoked.
var ErrTokenInvalid = errors.New("the token is not valid or has been revoked")

// Handle mounts h on the server's mux for pattern (for example the
// studio's pages at "/studio/"). It must be called before serving.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Authenticate returns the valid token whose secret is raw, or
// ErrTokenInvalid.
func (s *Server) Authenticate(ctx context.Context, raw string) (model.Token, error) {
	return s.TokenByHash(ctx, secret.HashToken(strings.TrimSpace(raw)))
}

// TokenByHash returns the valid token whose secret hashes to hash, or
// ErrTokenInvalid. Lookups are cached as the API's are, so a revoke takes
// effect within the same short time.
func (s *Server) TokenByHash(ctx context.Context, hash string) (model.Token, error) {
	t, err := s.tokens.get(ctx, s.store, hash, s.now())
	if errors.Is(err, store.ErrNotFound) || (err == nil && !t.RevokedAt.IsZero()) {
		return model.Token{}, ErrTokenInvalid
	}
	return t, err
}

// Serve answers one API request in process for the caller whose token
// hashes to tokenHash, as if it had come over the network with that bearer
// token: the same routes, role checks, rate limit, rules and error mapping
// apply, and w receives the API's answer (an ARM error body on failure).
// target is a path with its query, such as "/subscriptions/.../computes";
// header holds extra request headers (If-Match, If-None-Match), or nil.
// ctx should be the incoming request's context.
func (s *Server) Serve(ctx context.Context, w http.ResponseWriter, tokenHash, method, target string, header http.Header, body []byte) {
	r, err := http.NewRequestWithContext(context.WithValue(ctx, inProcessKey{}, tokenHash), method, target, bytes.NewReader(body))
	if err != nil {
		writeError(w, badRequest(api.CodeInvalidParameter, "", "the request %s %s is invalid: %v", method, model.Quote(target), err))
		return
	}
	for k, v := range header {
		r.Header[k] = v
	}
	r.Header.Del("Authorization") // the caller is tokenHash, nobody else
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	s.ServeHTTP(w, r)
}

// Call is Serve with the answer recorded in memory, for answers of
// bounded size (everything but logs and artifacts). It returns the status
// and the body: the resource's JSON, or an ARM error body.
func (s *Server) Call(ctx context.Context, tokenHash, method, target string, header http.Header, body []byte) (int, []byte) {
	rec := &recorder{header: http.Header{}}
	s.Serve(ctx, rec, tokenHash, method, target, header, body)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.status, rec.body.Bytes()
}

// recorder is a minimal in-memory http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

var _ io.Writer = (*recorder)(nil)
