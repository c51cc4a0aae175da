package server

import (
	"errors"
	"net/http"
	"strings"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/store"
)

func (s *Server) tokenInfo(t model.Token) api.TokenInfo {
	return api.TokenInfo{ID: t.ID, Name: t.Name, Role: api.TokenRole(t.Role), CreatedAt: s.timestamp(t.CreatedAt), RevokedAt: s.timestamp(t.RevokedAt)}
}

func (s *Server) tokenList(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.store.TokenList(r.Context())
	if err != nil {
		return err
	}
	out := api.TokenList{Value: []api.TokenInfo{}}
	for _, t := range ts {
		out.Value = append(out.Value, s.tokenInfo(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxTokenName bounds a token's label.
const maxTokenName = 64

func (s *Server) tokenCreate(w http.ResponseWriter, r *http.Request) error {
	var body api.TokenCreateRequest
	if err := decode(r, &body); err != nil {
		return err
	}
	role := model.Role(strings.ToLower(string(body.Role)))
	if !role.Allows(model.RoleReader) {
		return badRequest(api.CodeInvalidParameter, "role", "role %s is invalid: use reader, contributor or owner", model.Quote(string(body.Role)))
	}
	name := strings.TrimSpace(body.Name)
	if name == "" || len(name) > maxTokenName {
		return badRequest(api.CodeInvalidParameter, "name", "name must be 1 to %d characters", maxTokenName)
	}
	t, err := createToken(r.Context(), s.store, name, role, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.TokenCreated{ID: t.ID, Name: t.Name, Role: api.TokenRole(t.Role), CreatedAt: s.timestamp(t.CreatedAt), Token: t.Secret})
	return nil
}

func (s *Server) tokenRevoke(w http.ResponseWriter, r *http.Request) error {
	err := s.store.TokenRevoke(r.Context(), r.PathValue("id"), s.now().UTC())
	s.tokens.clear()
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeResourceNotFound, "token %q was not found", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
