package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/server"
	"kumo/internal/store/sqlite"
)

// TestInProcessCallsAreTheAPI checks that Serve and Call answer as the API
// does over the network: the caller is the token whose hash is given (an
// Authorization header cannot change it), its role is checked, and errors
// are the ARM body.
func TestInProcessCallsAreTheAPI(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kumo.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ws := model.Workspace{ID: wsBase, Subscription: testSub, ResourceGroup: "rg1", Name: "ws1", Location: "local"}
	owner, err := server.Bootstrap(ctx, st, ws, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Regions: map[string]model.Region{"local": model.NewRegion("local", "local", model.Host{VCPUs: 8, MemoryGB: 24})}})
	ownerHash := secret.HashToken(owner.Secret)
	status, body := srv.Call(ctx, ownerHash, "POST", "/kumo/v1/tokens", nil, []byte(`{"name":"r","role":"reader"}`))
	var reader api.TokenCreated
	if status != http.StatusCreated || json.Unmarshal(body, &reader) != nil {
		t.Fatalf("create a reader token in process: %d %s", status, body)
	}
	readerHash := secret.HashToken(reader.Token)
	put := []byte(`{"properties":{"computeType":"AmlCompute","properties":{"vmSize":"Standard_D2_v2","scaleSettings":{"maxNodeCount":1}}}}`)
	computes := wsBase + "/computes?api-version=" + api.DefaultAPIVersion
	c1 := wsBase + "/computes/c1?api-version=" + api.DefaultAPIVersion
	tests := []struct {
		name           string
		hash           string
		header         http.Header
		method, target string
		body           []byte
		want           int
		wantCode       string
	}{
		{"owner reads", ownerHash, nil, "GET", computes, nil, http.StatusOK, ""},
		{"reader reads", readerHash, nil, "GET", computes, nil, http.StatusOK, ""},
		{"unknown token", secret.HashToken("kumo_nope"), nil, "GET", computes, nil, http.StatusUnauthorized, api.CodeAuthenticationFailed},
		{"reader may not create", readerHash, nil, "PUT", c1, put, http.StatusForbidden, api.CodeAuthorizationFailed},
		{"a header cannot raise the caller", readerHash, http.Header{"Authorization": {"Bearer " + owner.Secret}}, "PUT", c1, put, http.StatusForbidden, api.CodeAuthorizationFailed},
		{"rules apply", ownerHash, nil, "PUT", wsBase + "/computes/1bad?api-version=" + api.DefaultAPIVersion, put, http.StatusBadRequest, model.CodeInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := srv.Call(ctx, tt.hash, tt.method, tt.target, tt.header, tt.body)
			if status != tt.want {
				t.Fatalf("status %d, want %d; body %s", status, tt.want, body)
			}
			if tt.wantCode != "" && !json.Valid(body) {
				t.Fatalf("error body is not JSON: %s", body)
			}
			if tt.wantCode != "" && !bytes.Contains(body, []byte(`"code":"`+tt.wantCode+`"`)) {
				t.Errorf("body %s lacks code %s", body, tt.wantCode)
			}
		})
	}
	if status, _ := srv.Call(ctx, ownerHash, "GET", c1, nil, nil); status != http.StatusNotFound {
		t.Errorf("a refused PUT made compute c1: GET answers %d", status)
	}

	if _, err := srv.Authenticate(ctx, owner.Secret); err != nil {
		t.Errorf("Authenticate(owner): %v", err)
	}
	if _, err := srv.Authenticate(ctx, "kumo_nope"); !errors.Is(err, server.ErrTokenInvalid) {
		t.Errorf("Authenticate(unknown) = %v, want ErrTokenInvalid", err)
	}
	if status, body := srv.Call(ctx, ownerHash, "DELETE", "/kumo/v1/tokens/"+reader.ID, nil, nil); status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if _, err := srv.TokenByHash(ctx, readerHash); !errors.Is(err, server.ErrTokenInvalid) {
		t.Errorf("TokenByHash(revoked) = %v, want ErrTokenInvalid", err)
	}
}
