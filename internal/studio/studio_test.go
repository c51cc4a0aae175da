package studio_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/secret"
	"kumo/internal/server"
	"kumo/internal/store/sqlite"
	"kumo/internal/studio"
)

const (
	testSub = "00000000-0000-0000-0000-000000000000"
	wsPath  = "/subscriptions/" + testSub + "/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1"
)

// env is a real API server with the studio mounted, over TLS, on a real
// SQLite file.
type env struct {
	t      *testing.T
	srv    *server.Server
	ts     *httptest.Server
	tokens map[model.Role]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kumo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ws := model.Workspace{ID: wsPath, Subscription: testSub, ResourceGroup: "rg1", Name: "ws1", Location: "local"}
	owner, err := server.Bootstrap(ctx, st, ws, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Regions: map[string]model.Region{"local": model.NewRegion("local", "local", model.Host{VCPUs: 8, MemoryGB: 24})}})
	pages := studio.New(studio.Config{API: srv, Subscription: testSub, ResourceGroup: "rg1", Workspace: "ws1", Location: "local", LiveInterval: 20 * time.Millisecond})
	srv.Handle(studio.Prefix, pages)
	srv.Handle(studio.Prefix+"/", pages)
	e := &env{t: t, srv: srv, tokens: map[model.Role]string{model.RoleOwner: owner.Secret}}
	e.ts = httptest.NewTLSServer(srv)
	t.Cleanup(e.ts.Close)
	for _, role := range []model.Role{model.RoleReader, model.RoleContributor} {
		status, body := srv.Call(ctx, secret.HashToken(owner.Secret), "POST", "/kumo/v1/tokens", nil, []byte(`{"name":"`+string(role)+`","role":"`+string(role)+`"}`))
		if status != http.StatusCreated {
			t.Fatalf("create %s token: %d %s", role, status, body)
		}
		tok := string(body)
		i := strings.Index(tok, `"token":"`)
		tok = tok[i+len(`"token":"`):]
		e.tokens[role] = tok[:strings.IndexByte(tok, '"')]
	}
	return e
}

// client returns a browser-like client that keeps cookies and does not
// follow redirects.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := e.ts.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn signs c in with role's token and returns the Set-Cookie header.
func (e *env) signIn(c *http.Client, role model.Role) string {
	e.t.Helper()
	resp, err := c.PostForm(e.ts.URL+"/studio/signin", url.Values{"token": {e.tokens[role]}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign in as %s: status %d", role, resp.StatusCode)
	}
	return resp.Header.Get("Set-Cookie")
}

// csrf returns the CSRF token of c's session, read from a page.
func (e *env) csrf(c *http.Client) string {
	e.t.Helper()
	_, body := e.get(c, "/studio/computes")
	const marker = `name="csrf" value="`
	i := strings.Index(body, marker)
	if i < 0 {
		e.t.Fatalf("no csrf field in the page:\n%s", body)
	}
	v := body[i+len(marker):]
	return v[:strings.IndexByte(v, '"')]
}

func (e *env) get(c *http.Client, path string) (int, string) {
	e.t.Helper()
	resp, err := c.Get(e.ts.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) post(c *http.Client, path string, form url.Values, header http.Header) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// computeExists asks the API whether compute name exists.
func (e *env) computeExists(name string) bool {
	e.t.Helper()
	status, _ := e.srv.Call(context.Background(), secret.HashToken(e.tokens[model.RoleOwner]), "GET",
		wsPath+"/computes/"+name+"?api-version="+api.DefaultAPIVersion, nil, nil)
	return status == http.StatusOK
}

func createForm(name, csrf string) url.Values {
	return url.Values{"csrf": {csrf}, "name": {name}, "vmType": {"CPU"}, "vmPriority": {"Dedicated"},
		"vmSize": {"Standard_D2_v2"}, "minNodes": {"0"}, "maxNodes": {"1"}, "idleSeconds": {"60"}}
}

func TestSignInSetsASafeCookie(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	status, body := e.post(c, "/studio/signin", url.Values{"token": {"kumo_notatoken"}}, nil)
	if status != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Errorf("a bad token: status %d, want 401 with a message", status)
	}
	cookie := e.signIn(c, model.RoleOwner)
	for _, want := range []string{"kumo_studio=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/studio"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, e.tokens[model.RoleOwner]) {
		t.Error("the cookie holds the API token")
	}
	if _, body := e.get(c, "/studio/computes"); strings.Contains(body, e.tokens[model.RoleOwner]) {
		t.Error("a page shows the API token")
	}
}

func TestChangesNeedSessionCSRFAndOrigin(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.signIn(c, model.RoleContributor)
	csrf := e.csrf(c)
	tests := []struct {
		name   string
		client *http.Client
		csrf   string
		header http.Header
		want   int
	}{
		{"no cookie", e.client(), csrf, nil, http.StatusUnauthorized},
		{"no csrf", c, "", nil, http.StatusForbidden},
		{"wrong csrf", c, "forged", nil, http.StatusForbidden},
		{"another origin", c, csrf, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"another site", c, csrf, http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"another port of this host", c, csrf, http.Header{"Origin": {"https://127.0.0.1:1"}, "Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "refused" + string(rune('a'+i))
			status, _ := e.post(tt.client, "/studio/computes/new", createForm(name, tt.csrf), tt.header)
			if status != tt.want {
				t.Errorf("status %d, want %d", status, tt.want)
			}
			if e.computeExists(name) {
				t.Errorf("a refused post made compute %s", name)
			}
		})
	}
	status, _ := e.post(c, "/studio/computes/new", createForm("good1", csrf), http.Header{"Origin": {e.ts.URL}, "Sec-Fetch-Site": {"same-origin"}})
	if status != http.StatusSeeOther || !e.computeExists("good1") {
		t.Errorf("a same-origin post with the CSRF token: status %d, exists %v; want 303 and the compute", status, e.computeExists("good1"))
	}
}

func TestReaderIsRefusedEveryChange(t *testing.T) {
	e := newEnv(t)
	owner := e.client()
	e.signIn(owner, model.RoleOwner)
	if status, _ := e.post(owner, "/studio/computes/new", createForm("c1", e.csrf(owner)), nil); status != http.StatusSeeOther {
		t.Fatalf("owner create: %d", status)
	}
	r := e.client()
	e.signIn(r, model.RoleReader)
	csrf := e.csrf(r)
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/studio/computes/new", createForm("c2", csrf)},
		{"/studio/computes/c1/scale", url.Values{"csrf": {csrf}, "minNodes": {"0"}, "maxNodes": {"5"}, "idleSeconds": {"60"}}},
		{"/studio/computes/c1/delete", url.Values{"csrf": {csrf}, "confirm": {"c1"}}},
		{"/studio/tokens", url.Values{"csrf": {csrf}, "name": {"x"}, "role": {"owner"}}},
	} {
		if status, body := e.post(r, c.path, c.form, nil); status != http.StatusForbidden {
			t.Errorf("reader POST %s: status %d, want 403\n%s", c.path, status, body)
		}
	}
	if e.computeExists("c2") || !e.computeExists("c1") {
		t.Error("a reader's change took effect")
	}
	status, body := e.get(r, "/studio/computes/c1")
	if status != http.StatusOK || !strings.Contains(body, `id="reader-note"`) || !strings.Contains(body, "disabled") {
		t.Errorf("reader's compute page: status %d; want it with the reader note and disabled controls", status)
	}
}

func TestSessionEnds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client()
	e.signIn(c, model.RoleOwner)
	if status, _ := e.post(c, "/studio/signout", url.Values{"csrf": {e.csrf(c)}}, nil); status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", status)
	}
	if status, _ := e.get(c, "/studio/computes"); status != http.StatusSeeOther {
		t.Errorf("after sign-out a page answers %d, want 303 to sign in", status)
	}

	r := e.client()
	e.signIn(r, model.RoleReader)
	var id string
	status, body := e.srv.Call(ctx, secret.HashToken(e.tokens[model.RoleOwner]), "GET", "/kumo/v1/tokens", nil, nil)
	for _, part := range strings.Split(string(body), "},{") {
		if strings.Contains(part, `"role":"reader"`) {
			i := strings.Index(part, `"id":"`)
			id = part[i+6:]
			id = id[:strings.IndexByte(id, '"')]
		}
	}
	if status != http.StatusOK || id == "" {
		t.Fatalf("list tokens: %d %s", status, body)
	}
	if status, body := e.srv.Call(ctx, secret.HashToken(e.tokens[model.RoleOwner]), "DELETE", "/kumo/v1/tokens/"+id, nil, nil); status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if status, _ := e.get(r, "/studio/computes"); status != http.StatusSeeOther {
		t.Errorf("after its token was revoked a session's page answers %d, want 303 to sign in", status)
	}
}

func TestLiveStreamsAreBoundedPerSession(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.signIn(c, model.RoleOwner)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var open []*http.Response
	defer func() {
		cancel()
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for i := 0; ; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/studio/live?page=computes", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			resp.Body.Close()
			if i < 2 {
				t.Fatalf("refused after %d streams", i)
			}
			break
		}
		open = append(open, resp)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream %d: %d %s", i, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// The first event is the page's live region.
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && sc.Text() != "event: update" {
		}
		if i > 50 {
			t.Fatal("no bound on a session's live streams")
		}
	}
	// Closing one makes room for another.
	open[0].Body.Close()
	open = open[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/studio/live?page=computes", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			open = append(open, resp)
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream did not make room: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeCountError matches an error shown at a node count field.
var nodeCountError = regexp.MustCompile(`id="err-(min|max)Nodes">[^<]+<`)

func TestScaleDeleteAndTokensThroughPages(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.signIn(c, model.RoleOwner)
	csrf := e.csrf(c)
	if status, _ := e.post(c, "/studio/computes/new", createForm("c1", csrf), nil); status != http.StatusSeeOther {
		t.Fatalf("create: %d", status)
	}

	// A scale setting the API refuses is shown at its field.
	status, body := e.post(c, "/studio/computes/c1/scale", url.Values{"csrf": {csrf}, "minNodes": {"3"}, "maxNodes": {"2"}, "idleSeconds": {"60"}}, nil)
	if status != http.StatusBadRequest || !nodeCountError.MatchString(body) {
		t.Errorf("min 3 > max 2: status %d, want 400 with the error at a node count field\n%s", status, body)
	}
	if status, _ := e.post(c, "/studio/computes/c1/scale", url.Values{"csrf": {csrf}, "minNodes": {"0"}, "maxNodes": {"7"}, "idleSeconds": {"90"}}, nil); status != http.StatusSeeOther {
		t.Errorf("a good scale edit: status %d, want 303", status)
	}
	if _, body := e.get(c, "/studio/computes/c1"); !strings.Contains(body, "0–7 nodes, scale down after 90 s idle") {
		t.Error("the compute page does not show the new scale settings")
	}

	// Delete needs the name typed.
	if status, _ := e.post(c, "/studio/computes/c1/delete", url.Values{"csrf": {csrf}, "confirm": {"c2"}}, nil); status != http.StatusBadRequest || !e.computeExists("c1") {
		t.Errorf("delete without the right confirmation: status %d, exists %v; want 400 and the compute kept", status, e.computeExists("c1"))
	}
	if status, _ := e.post(c, "/studio/computes/c1/delete", url.Values{"csrf": {csrf}, "confirm": {"c1"}}, nil); status != http.StatusSeeOther {
		t.Errorf("confirmed delete: status %d, want 303", status)
	}
	if _, body := e.get(c, "/studio/computes/c1"); !strings.Contains(body, "Deleting") && !strings.Contains(body, "not found") {
		t.Error("after delete the compute is neither deleting nor gone")
	}

	// An owner creates a token (its secret shown once) and revokes it.
	status, body = e.post(c, "/studio/tokens", url.Values{"csrf": {csrf}, "name": {"ci"}, "role": {"contributor"}}, nil)
	const marker = `id="new-secret" readonly value="`
	i := strings.Index(body, marker)
	if status != http.StatusCreated || i < 0 {
		t.Fatalf("create token: status %d, want 201 with the secret\n%s", status, body)
	}
	secretValue := body[i+len(marker):]
	secretValue = secretValue[:strings.IndexByte(secretValue, '"')]
	tok, err := e.srv.Authenticate(context.Background(), secretValue)
	if err != nil || tok.Role != model.RoleContributor {
		t.Fatalf("the shown token does not authenticate as a contributor: %v %v", tok, err)
	}
	if _, body := e.get(c, "/studio/tokens"); strings.Contains(body, secretValue) {
		t.Error("the token's secret is shown again")
	}
	if status, _ := e.post(c, "/studio/tokens/"+tok.ID+"/revoke", url.Values{"csrf": {csrf}}, nil); status != http.StatusSeeOther {
		t.Errorf("revoke: status %d, want 303", status)
	}
	if _, err := e.srv.Authenticate(context.Background(), secretValue); err == nil {
		t.Error("the revoked token still authenticates")
	}
	status, body = e.post(c, "/studio/tokens", url.Values{"csrf": {csrf}, "name": {"x"}, "role": {"admin"}}, nil)
	if status != http.StatusBadRequest || !strings.Contains(body, `id="err-role">role`) {
		t.Errorf("a bad role: status %d, want 400 with the error at the role field", status)
	}
}
