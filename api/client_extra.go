package api

// TokenRole is what an API token may do.
type TokenRole string

// Token roles, from least to most privileged.
const (
	RoleReader      TokenRole = "reader"      // read any resource
	RoleContributor TokenRole = "contributor" // reader, plus create, change and delete workspaces and computes
	RoleOwner       TokenRole = "owner"       // contributor, plus manage tokens and quotas
)

// TokenInfo describes one API token without its secret. It is an element of
// GET /kumo/v1/tokens.
type TokenInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      TokenRole `json:"role"`
	CreatedAt string    `json:"createdAt"`           // TimeFormat, UTC
	RevokedAt string    `json:"revokedAt,omitempty"` // TimeFormat, UTC; empty while the token is valid
}

// TokenList is the answer of GET /kumo/v1/tokens.
type TokenList struct {
	Value []TokenInfo `json:"value"`
}

// TokenCreateRequest is the body of POST /kumo/v1/tokens.
type TokenCreateRequest struct {
	Name string    `json:"name"`
	Role TokenRole `json:"role"`
}

// TokenCreated is the 201 answer of POST /kumo/v1/tokens. Token is the
// bearer secret; the server returns it only in this answer and keeps only a
// hash of it.
type TokenCreated struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      TokenRole `json:"role"`
	CreatedAt string    `json:"createdAt"` // TimeFormat, UTC
	Token     string    `json:"token"`
}
