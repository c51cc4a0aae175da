package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/api"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/server"
	"kumo/internal/store/sqlite"
)

// limited is a real API server over a real SQLite file, built from a
// Config the test adjusts, behind an http.Server the test configures.
type limited struct {
	url   string
	owner string
	files *jobfiles.Files
	dir   string // the files directory
}

func newLimited(t *testing.T, adjust func(*server.Config), hs *http.Server) *limited {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "kumo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ws := model.Workspace{ID: wsBase, Subscription: testSub, ResourceGroup: "rg1", Name: "ws1", Location: "local"}
	owner, err := server.Bootstrap(ctx, st, ws, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files, err := jobfiles.New(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Files: files, Regions: map[string]model.Region{
		"local": model.NewRegion("local", "local", model.Host{VCPUs: 8, MemoryGB: 24})}}
	if adjust != nil {
		adjust(&cfg)
	}
	srv := httptest.NewUnstartedServer(server.New(cfg))
	if hs != nil {
		hs.Handler = srv.Config.Handler
		srv.Config = hs
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return &limited{url: srv.URL, owner: owner.Secret, files: files, dir: filepath.Join(dir, "files")}
}

func (l *limited) do(t *testing.T, method, path, token string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	if !strings.HasPrefix(path, "/kumo/") && !strings.Contains(path, "api-version") {
		path += map[bool]string{true: "&", false: "?"}[strings.Contains(path, "?")] + "api-version=2024-04-01"
	}
	req, err := http.NewRequest(method, l.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func (l *limited) token(t *testing.T, name string, role model.Role) api.TokenCreated {
	t.Helper()
	resp, body := l.do(t, "POST", "/kumo/v1/tokens", l.owner, api.TokenCreateRequest{Name: name, Role: api.TokenRole(role)})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create token %s: %d %s", name, resp.StatusCode, body)
	}
	var tc api.TokenCreated
	if err := json.Unmarshal(body, &tc); err != nil {
		t.Fatal(err)
	}
	return tc
}

func armCode(t *testing.T, body []byte) string {
	t.Helper()
	var e api.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("body is not an ARM error: %s", body)
	}
	return e.Error.Code
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimited(t, func(c *server.Config) {
		c.RateLimit, c.RateBurst = 0.5, 3
		c.Now = func() time.Time { return now } // no refill during the test
	}, nil)
	reader := l.token(t, "reader", model.RoleReader) // the owner's first request
	path := "/subscriptions/" + testSub + "/providers/Microsoft.MachineLearningServices/workspaces"
	for i := range 2 {
		if resp, body := l.do(t, "GET", path, l.owner, nil); resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d %s", i+2, resp.StatusCode, body)
		}
	}
	resp, body := l.do(t, "GET", path, l.owner, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("request past the burst: status %d, want 429; body %s", resp.StatusCode, body)
	}
	if got := armCode(t, body); got != api.CodeTooManyRequests {
		t.Errorf("code = %q, want %q", got, api.CodeTooManyRequests)
	}
	// One request refills in 2 s at 0.5/s.
	if got := resp.Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want \"2\"", got)
	}
	// The limit is per token: another token is still served.
	if resp, body := l.do(t, "GET", path, reader.Token, nil); resp.StatusCode != 200 {
		t.Errorf("another token: %d %s, want 200", resp.StatusCode, body)
	}
	now = now.Add(2 * time.Second)
	if resp, body := l.do(t, "GET", path, l.owner, nil); resp.StatusCode != 200 {
		t.Errorf("after Retry-After: %d %s, want 200", resp.StatusCode, body)
	}
}

func TestFailedAuthClosesConnection(t *testing.T) {
	l := newLimited(t, nil, nil)
	for _, token := range []string{"", "kt_not-a-token"} {
		resp, body := l.do(t, "GET", "/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/workspaces", token, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d, want 401; body %s", token, resp.StatusCode, body)
		}
		if !resp.Close {
			t.Errorf("token %q: the 401 keeps the connection open; want Connection: close", token)
		}
	}
}

func TestHugeInputsRefusedWithShortErrors(t *testing.T) {
	l := newLimited(t, nil, nil)
	huge := "PT" + strings.Repeat("9", 1_000_000) + "S"
	job := func(mut func(p map[string]any)) map[string]any {
		p := map[string]any{"jobType": "Command", "command": "echo hi", "computeId": "local"}
		mut(p)
		return map[string]any{"properties": p}
	}
	compute := computeBody("Standard_DS3_v2", 0, 1)
	compute["properties"].(map[string]any)["properties"].(map[string]any)["scaleSettings"].(map[string]any)["nodeIdleTimeBeforeScaleDown"] = huge
	tests := []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"job timeout of 1 MB", "PUT", wsBase + "/jobs/j1", job(func(p map[string]any) { p["limits"] = map[string]any{"timeout": huge} }), 400},
		{"compute idle time of 1 MB", "PUT", wsBase + "/computes/c1", compute, 400},
		{"job type of 1 MB", "PUT", wsBase + "/jobs/j2", job(func(p map[string]any) { p["jobType"] = strings.Repeat("x", 1_000_000) }), 400},
		{"environment value of 1 MB", "PUT", wsBase + "/jobs/j3", job(func(p map[string]any) {
			p["environmentVariables"] = map[string]string{"BIG": strings.Repeat("x", 1_000_000)}
		}), 400},
		{"display name of 100 KB", "PUT", wsBase + "/jobs/j4", job(func(p map[string]any) { p["displayName"] = strings.Repeat("x", 100_000) }), 400},
		{"query of 100 KB", "GET", wsBase + "/jobs?$skipToken=" + strings.Repeat("x", 100_000), nil, http.StatusRequestURITooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := l.do(t, tt.method, tt.path, l.owner, tt.body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d; body %.300s", resp.StatusCode, tt.want, body)
			}
			armCode(t, body)
			if len(body) > 1024 {
				t.Errorf("the error is %d bytes: it repeats the input; body %.300s...", len(body), body)
			}
		})
	}
	// Nothing was stored.
	resp, body := l.do(t, "GET", wsBase+"/jobs", l.owner, nil)
	if resp.StatusCode != 200 || strings.Contains(string(body), `"name"`) {
		t.Errorf("jobs after refused PUTs: %d %s, want none", resp.StatusCode, body)
	}
}

func TestJobSecretEnvShownOnlyToOwnersAndSubmitter(t *testing.T) {
	l := newLimited(t, nil, nil)
	submitter := l.token(t, "alice", model.RoleContributor)
	// Same name as the submitter: a name does not identify a token.
	other := l.token(t, "alice", model.RoleContributor)
	reader := l.token(t, "reader", model.RoleReader)
	env := map[string]string{"DB_PASSWORD": "hunter2", "hf_token": "hf_abc", "EPOCHS": "3"}
	masked := map[string]string{"DB_PASSWORD": model.MaskedValue, "hf_token": model.MaskedValue, "EPOCHS": "3"}
	put := map[string]any{"properties": map[string]any{"jobType": "Command", "command": "echo hi", "computeId": "local", "environmentVariables": env}}
	resp, body := l.do(t, "PUT", wsBase+"/jobs/j1", submitter.Token, put)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s", resp.StatusCode, body)
	}
	envOf := func(body []byte) map[string]string {
		var j api.JobResource
		if err := json.Unmarshal(body, &j); err != nil || j.Properties == nil {
			t.Fatalf("not a job: %s", body)
		}
		return j.Properties.EnvironmentVariables
	}
	if got := envOf(body); !equalEnv(got, env) {
		t.Errorf("the submitter's PUT answer shows %v, want %v", got, env)
	}
	tests := []struct {
		who   string
		token string
		want  map[string]string
	}{
		{"owner", l.owner, env},
		{"submitter", submitter.Token, env},
		{"another contributor of the same name", other.Token, masked},
		{"reader", reader.Token, masked},
	}
	for _, tt := range tests {
		resp, body := l.do(t, "GET", wsBase+"/jobs/j1", tt.token, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: GET %d %s", tt.who, resp.StatusCode, body)
		}
		if got := envOf(body); !equalEnv(got, tt.want) {
			t.Errorf("%s GET sees %v, want %v", tt.who, got, tt.want)
		}
		resp, body = l.do(t, "GET", wsBase+"/jobs", tt.token, nil)
		var list api.JobList
		if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list.Value) != 1 {
			t.Fatalf("%s: list %d %s", tt.who, resp.StatusCode, body)
		}
		if got := list.Value[0].Properties.EnvironmentVariables; !equalEnv(got, tt.want) {
			t.Errorf("%s list sees %v, want %v", tt.who, got, tt.want)
		}
		if tt.want["DB_PASSWORD"] == model.MaskedValue && strings.Contains(string(body), "hunter2") {
			t.Errorf("%s: the secret appears in the list answer", tt.who)
		}
	}
}

func equalEnv(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestLastOwnerTokenCannotBeRevoked(t *testing.T) {
	l := newLimited(t, nil, nil)
	resp, body := l.do(t, "GET", "/kumo/v1/tokens", l.owner, nil)
	var list api.TokenList
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list.Value) != 1 {
		t.Fatalf("tokens: %d %s", resp.StatusCode, body)
	}
	first := list.Value[0].ID
	resp, body = l.do(t, "DELETE", "/kumo/v1/tokens/"+first, l.owner, nil)
	if resp.StatusCode != http.StatusConflict || armCode(t, body) != api.CodeLastOwnerToken {
		t.Fatalf("revoke the only owner: %d %s, want 409 %s", resp.StatusCode, body, api.CodeLastOwnerToken)
	}
	if resp, body := l.do(t, "GET", "/kumo/v1/tokens", l.owner, nil); resp.StatusCode != 200 {
		t.Fatalf("the refused revoke broke the owner token: %d %s", resp.StatusCode, body)
	}
	second := l.token(t, "second owner", model.RoleOwner)
	if resp, body := l.do(t, "DELETE", "/kumo/v1/tokens/"+second.ID, l.owner, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke one of two owners: %d %s, want 204", resp.StatusCode, body)
	}
	if resp, body := l.do(t, "DELETE", "/kumo/v1/tokens/"+first, l.owner, nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("revoke the owner left: %d %s, want 409", resp.StatusCode, body)
	}
	// A reader or contributor token is revoked as before.
	reader := l.token(t, "reader", model.RoleReader)
	if resp, body := l.do(t, "DELETE", "/kumo/v1/tokens/"+reader.ID, l.owner, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke a reader: %d %s, want 204", resp.StatusCode, body)
	}
}

// A log follower outlives the server's write timeout: streaming routes are
// held to progress, not to the deadline of ordinary requests.
func TestLogFollowOutlivesWriteTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	l := newLimited(t, func(c *server.Config) { c.TransferTimeout = 10 * time.Second },
		&http.Server{ReadTimeout: timeout, WriteTimeout: timeout})
	put := map[string]any{"properties": map[string]any{"jobType": "Command", "command": "echo hi", "computeId": "local"}}
	resp, body := l.do(t, "PUT", wsBase+"/jobs/j1", l.owner, put)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s", resp.StatusCode, body)
	}
	var j api.JobResource
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatal(err)
	}
	if err := l.files.Append(j.Properties.RunID, jobfiles.Stdout, 0, []byte("first\n")); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", l.url+wsBase+"/jobs/j1/logs?follow=true&api-version=2024-04-01", nil)
	req.Header.Set("Authorization", "Bearer "+l.owner)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); line != "first\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	// Past the write timeout, more output and then the end of the job.
	// The test is about a deadline passing, so it lets time pass.
	time.Sleep(3 * timeout)
	if err := l.files.Append(j.Properties.RunID, jobfiles.Stdout, 6, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	if resp, body := l.do(t, "POST", wsBase+"/jobs/j1/cancel", l.owner, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	rest, err := io.ReadAll(rd)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest of the log = %q, %v; want \"second\\n\" and a clean end", rest, err)
	}
}

// A request that never finishes its headers is cut by the server's
// header timeout; the route table is never reached.
func TestHalfHeaderIsCut(t *testing.T) {
	l := newLimited(t, nil, &http.Server{ReadHeaderTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(l.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the server did not close a half-sent request within 20 s: %v", err)
	}
	if strings.Contains(string(out), "200 OK") {
		t.Errorf("a half-sent request was answered: %q", out)
	}
}
