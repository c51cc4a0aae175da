package client

import (
	"context"
	"net/http"
	"net/url"

	"kumo/api"
)

// tokensPath is the route of kumo's own token API.
const tokensPath = "/kumo/v1/tokens"

// Tokens lists the server's API tokens, revoked ones included, without
// their secrets. It needs an owner token.
func (w *Workspace) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var out api.TokenList
	if _, err := w.do(ctx, http.MethodGet, tokensPath, nil, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// CreateToken creates an API token called name with role. The answer's
// Token field is the secret: the server shows it only this once. It needs
// an owner token.
func (w *Workspace) CreateToken(ctx context.Context, name string, role api.TokenRole) (*api.TokenCreated, error) {
	var out api.TokenCreated
	body := api.TokenCreateRequest{Name: name, Role: role}
	if _, err := w.do(ctx, http.MethodPost, tokensPath, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeToken revokes the API token with the given ID. It needs an owner
// token.
func (w *Workspace) RevokeToken(ctx context.Context, id string) error {
	_, err := w.do(ctx, http.MethodDelete, tokensPath+"/"+url.PathEscape(id), nil, nil)
	return err
}
