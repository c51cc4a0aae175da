package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/controller/provision"
	"kumo/internal/model"
	"kumo/internal/server"
	"kumo/internal/store"
	"kumo/internal/store/sqlite"
)

const (
	testSub = "00000000-0000-0000-0000-000000000000"
	wsBase  = "/subscriptions/" + testSub + "/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1"
)

// harness is a real API server over a real SQLite file, with the
// provisioner driven by the test.
type harness struct {
	t      testing.TB
	st     store.Store
	srv    *httptest.Server
	prov   *provision.Provisioner
	tokens map[model.Role]string
	ev     *fakeEvicter // what simulateEviction asked for
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with the server's Config changed by edit
// (nil changes nothing).
func newHarnessWith(t testing.TB, edit func(*server.Config)) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kumo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ws := model.Workspace{ID: wsBase, Subscription: testSub, ResourceGroup: "rg1", Name: "ws1", Location: "local"}
	owner, err := server.Bootstrap(ctx, st, ws, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	prov := provision.New(provision.Config{Store: st})
	regions := map[string]model.Region{
		"local":  model.NewRegion("local", "local", model.Host{VCPUs: 8, MemoryGB: 24}),
		"eastus": model.NewRegion("eastus", "fake", model.Host{VCPUs: 1000, MemoryGB: 10000, GPUs: 8}),
	}
	h := &harness{t: t, st: st, prov: prov, tokens: map[model.Role]string{model.RoleOwner: owner.Secret}, ev: &fakeEvicter{}}
	cfg := server.Config{Store: st, Regions: regions, Provisioner: prov, PollInterval: 10 * time.Millisecond, PageSize: 3, Evicter: h.ev}
	if edit != nil {
		edit(&cfg)
	}
	h.srv = httptest.NewServer(server.New(cfg))
	t.Cleanup(h.srv.Close)
	for _, role := range []model.Role{model.RoleReader, model.RoleContributor} {
		var got api.TokenCreated
		h.mustDo("POST", "/kumo/v1/tokens", api.TokenCreateRequest{Name: string(role), Role: api.TokenRole(role)}, model.RoleOwner, 201, &got)
		h.tokens[role] = got.Token
	}
	return h
}

// do sends a request with the token of role (or none when role is "") and
// returns the status and body.
func (h *harness) do(method, path string, body any, role model.Role) (int, []byte, http.Header) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	if !strings.Contains(path, "api-version") && !strings.HasPrefix(path, "/kumo/") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "api-version=2024-04-01"
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+h.tokens[role])
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header
}

// mustDo is do that fails the test on an unexpected status and decodes the
// body into out.
func (h *harness) mustDo(method, path string, body any, role model.Role, want int, out any) http.Header {
	h.t.Helper()
	status, b, hdr := h.do(method, path, body, role)
	if status != want {
		h.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return hdr
}

// reconcile runs one provisioner pass.
func (h *harness) reconcile() {
	h.t.Helper()
	if err := h.prov.Reconcile(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func computeBody(size string, min, max int32) map[string]any {
	return map[string]any{
		"location": "local",
		"properties": map[string]any{
			"computeType": "AmlCompute",
			"properties": map[string]any{
				"vmSize":        size,
				"vmPriority":    "Dedicated",
				"scaleSettings": map[string]any{"minNodeCount": min, "maxNodeCount": max, "nodeIdleTimeBeforeScaleDown": "PT2M"},
			},
		},
	}
}

func TestHealthzNeedsNoToken(t *testing.T) {
	h := newHarness(t)
	status, body, _ := h.do("GET", "/healthz", nil, "")
	if status != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz = %d %q, want 200 ok", status, body)
	}
}

var storePageAll = store.Page{}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name       string
		ready      func(context.Context) error
		wantStatus int
		wantCode   string
	}{
		{"store ready", nil, 200, ""},
		{"not ready", func(context.Context) error { return errors.New("database does not answer") }, 503, "NotReady"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessWith(t, func(c *server.Config) { c.Ready = tt.ready })
			status, body, _ := h.do("GET", "/readyz", nil, "")
			if status != tt.wantStatus {
				t.Fatalf("readyz = %d %s, want %d", status, body, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			var got api.ErrorResponse
			if err := json.Unmarshal(body, &got); err != nil || got.Error == nil || got.Error.Code != tt.wantCode {
				t.Errorf("readyz body = %s, want an ARM error with code %s", body, tt.wantCode)
			}
		})
	}
}

// TestReadyzClosedStore: a store that no longer answers is not ready.
func TestReadyzClosedStore(t *testing.T) {
	h := newHarness(t)
	h.st.Close()
	if status, body, _ := h.do("GET", "/readyz", nil, ""); status != 503 {
		t.Errorf("readyz on a closed store = %d %s, want 503", status, body)
	}
}
