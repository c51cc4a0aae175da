package rowcodec

import (
	"database/sql"

	"kumo/internal/model"
)

// TokenColumns are the columns that ScanToken reads, in its order.
const TokenColumns = `id, name, role, hash, created_at, revoked_at`

// ScanToken reads a token from the columns of TokenColumns.
func ScanToken(sc Scanner) (model.Token, error) {
	var (
		t       model.Token
		created string
		revoked sql.NullString
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, &created, &revoked); err != nil {
		return model.Token{}, err
	}
	var d Decoder
	t.CreatedAt = d.Time("created_at", created)
	t.RevokedAt = d.OptTime("revoked_at", revoked)
	return t, d.err
}

// TokenInsertArgs returns the arguments of a token's insert: id, name,
// role, hash, created_at, revoked_at.
func TokenInsertArgs(t model.Token) []any {
	return []any{t.ID, t.Name, string(t.Role), t.Hash, EncTime(t.CreatedAt), EncOptTime(t.RevokedAt)}
}
