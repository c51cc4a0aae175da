package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"kumo/api"
)

// DefaultPollInterval is how long methods that wait sleep between polls when
// the server does not say (with Retry-After-Ms) and no WithPollInterval
// option is given.
const DefaultPollInterval = 2 * time.Second

// Option changes how New builds a Workspace.
type Option func(*Workspace)

// WithHTTPClient makes the Workspace send its requests with hc. The client
// is used as is: Config.CAFile is then ignored.
func WithHTTPClient(hc *http.Client) Option {
	return func(w *Workspace) { w.hc = hc }
}

// WithPollInterval sets how long methods that wait sleep between polls. It
// overrides the server's Retry-After-Ms; tests use a tiny d to run fast.
func WithPollInterval(d time.Duration) Option {
	return func(w *Workspace) { w.poll = d; w.pollSet = true }
}

// Workspace is a handle on one kumo workspace, the counterpart of AML's
// Workspace. It is safe for concurrent use.
type Workspace struct {
	cfg     Config
	base    *url.URL
	hc      *http.Client
	poll    time.Duration
	pollSet bool

	mu       sync.Mutex
	location string // cached workspace location; "" until first fetched
}

// New returns a Workspace for cfg. It checks cfg and reads cfg.CAFile but
// makes no request.
func New(cfg Config, opts ...Option) (*Workspace, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("config: endpoint is required")
	}
	base, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/"))
	if err != nil {
		return nil, fmt.Errorf("config: endpoint: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("config: endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	for name, v := range map[string]string{
		"subscription_id": cfg.SubscriptionID,
		"resource_group":  cfg.ResourceGroup,
		"workspace_name":  cfg.WorkspaceName,
	} {
		if v == "" {
			return nil, fmt.Errorf("config: %s is required", name)
		}
	}
	w := &Workspace{cfg: cfg, base: base, poll: DefaultPollInterval}
	for _, o := range opts {
		o(w)
	}
	if w.hc == nil {
		w.hc, err = httpClient(cfg.CAFile)
		if err != nil {
			return nil, err
		}
	}
	return w, nil
}

// httpClient returns an HTTP client that trusts only the CA in caFile, or
// the system roots when caFile is empty.
func httpClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("config: ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("config: ca_file %s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// Name returns the workspace's name.
func (w *Workspace) Name() string { return w.cfg.WorkspaceName }

// SubscriptionID returns the workspace's subscription ID.
func (w *Workspace) SubscriptionID() string { return w.cfg.SubscriptionID }

// ResourceGroup returns the workspace's resource group.
func (w *Workspace) ResourceGroup() string { return w.cfg.ResourceGroup }

// Config returns the configuration the Workspace was built from.
func (w *Workspace) Config() Config { return w.cfg }

// providerPath is the ARM path of the provider in the workspace's resource
// group.
func (w *Workspace) providerPath() string {
	return "/subscriptions/" + url.PathEscape(w.cfg.SubscriptionID) +
		"/resourceGroups/" + url.PathEscape(w.cfg.ResourceGroup) +
		"/providers/" + api.ProviderNamespace
}

// workspacePath is the ARM path of the workspace called name.
func (w *Workspace) workspacePath(name string) string {
	return w.providerPath() + "/workspaces/" + url.PathEscape(name)
}

// locationPath is the ARM path of a location of the subscription.
func (w *Workspace) locationPath(loc string) string {
	return "/subscriptions/" + url.PathEscape(w.cfg.SubscriptionID) +
		"/providers/" + api.ProviderNamespace + "/locations/" + url.PathEscape(loc)
}

// response is what do returns of a successful answer besides the body.
type response struct {
	status     int
	header     http.Header
	retryAfter time.Duration // from Retry-After-Ms; 0 when absent
}

// do sends one request. target is a path under the endpoint or an absolute
// URL of the same origin (nextLink, Azure-AsyncOperation). in, when not nil,
// is sent as JSON; out, when not nil, receives the JSON answer. A non-2xx
// answer returns *Error.
func (w *Workspace) do(ctx context.Context, method, target string, in, out any) (*response, error) {
	var body io.Reader
	contentType := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, target, err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	res, err := w.send(ctx, method, target, contentType, body)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	path := res.Request.URL.Path
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	r := &response{status: res.StatusCode, header: res.Header}
	if ms, err := strconv.Atoi(res.Header.Get("Retry-After-Ms")); err == nil && ms > 0 {
		r.retryAfter = time.Duration(ms) * time.Millisecond
	}
	if out != nil && res.StatusCode != http.StatusNoContent && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return r, nil
}

// send sends one request with body (nil for none) of the given content
// type and returns the answer with its body open for the caller to read
// and close. target is resolved as for do. A non-2xx answer is read,
// closed and returned as *Error.
func (w *Workspace) send(ctx context.Context, method, target, contentType string, body io.Reader) (*http.Response, error) {
	u, err := w.resolve(target)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kumo-go-client")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if w.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.Token)
	}
	res, err := w.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		defer res.Body.Close()
		b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("%s %s: read answer: %w", method, u.Path, err)
		}
		return nil, newError(res.StatusCode, res.Header, b)
	}
	return res, nil
}

// resolve turns target into a URL on the endpoint, adding api-version when
// it is missing. It refuses absolute URLs of another origin, so that the
// token is never sent elsewhere.
func (w *Workspace) resolve(target string) (*url.URL, error) {
	ref, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", target, err)
	}
	var u *url.URL
	if ref.IsAbs() {
		if ref.Scheme != w.base.Scheme || ref.Host != w.base.Host {
			return nil, fmt.Errorf("refusing to follow %s: not on endpoint %s", target, w.base)
		}
		u = ref
	} else {
		u = &url.URL{
			Scheme:   w.base.Scheme,
			Host:     w.base.Host,
			Path:     w.base.Path + ref.Path,
			RawPath:  w.base.EscapedPath() + ref.EscapedPath(),
			RawQuery: ref.RawQuery,
		}
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("bad URL %q: a name may not be %q", target, seg)
		}
	}
	q := u.Query()
	if q.Get("api-version") == "" {
		q.Set("api-version", api.DefaultAPIVersion)
		u.RawQuery = q.Encode()
	}
	return u, nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// opInterval is how long to wait before polling an operation again.
func (w *Workspace) opInterval(retryAfter time.Duration) time.Duration {
	if retryAfter > 0 && !w.pollSet {
		return retryAfter
	}
	return w.poll
}

// Get returns the workspace itself.
func (w *Workspace) Get(ctx context.Context) (*api.Workspace, error) {
	ws, err := w.GetWorkspace(ctx, w.cfg.WorkspaceName)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.location = ws.Location
	w.mu.Unlock()
	return ws, nil
}

// Location returns the workspace's location, fetching the workspace the
// first time.
func (w *Workspace) Location(ctx context.Context) (string, error) {
	w.mu.Lock()
	loc := w.location
	w.mu.Unlock()
	if loc != "" {
		return loc, nil
	}
	ws, err := w.Get(ctx)
	if err != nil {
		return "", err
	}
	return ws.Location, nil
}

// GetWorkspace returns the workspace called name in the Workspace's
// resource group.
func (w *Workspace) GetWorkspace(ctx context.Context, name string) (*api.Workspace, error) {
	var out api.Workspace
	if _, err := w.do(ctx, http.MethodGet, w.workspacePath(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateWorkspace creates or updates the workspace called name in the
// Workspace's resource group. ws carries location, tags and
// properties.description.
func (w *Workspace) CreateWorkspace(ctx context.Context, name string, ws api.Workspace) (*api.Workspace, error) {
	var out api.Workspace
	if _, err := w.do(ctx, http.MethodPut, w.workspacePath(name), ws, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteWorkspace deletes the workspace called name in the Workspace's
// resource group.
func (w *Workspace) DeleteWorkspace(ctx context.Context, name string) error {
	_, err := w.do(ctx, http.MethodDelete, w.workspacePath(name), nil, nil)
	return err
}

// ListWorkspaces returns the workspaces of the Workspace's resource group,
// following nextLink.
func (w *Workspace) ListWorkspaces(ctx context.Context) ([]api.Workspace, error) {
	return w.listWorkspaces(ctx, w.providerPath()+"/workspaces")
}

// ListSubscriptionWorkspaces returns the workspaces of every resource group
// of the subscription, following nextLink.
func (w *Workspace) ListSubscriptionWorkspaces(ctx context.Context) ([]api.Workspace, error) {
	return w.listWorkspaces(ctx, "/subscriptions/"+url.PathEscape(w.cfg.SubscriptionID)+
		"/providers/"+api.ProviderNamespace+"/workspaces")
}

func (w *Workspace) listWorkspaces(ctx context.Context, next string) ([]api.Workspace, error) {
	var all []api.Workspace
	for next != "" {
		var page api.WorkspaceList
		if _, err := w.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Value...)
		next = page.NextLink
	}
	return all, nil
}

// decodeJSON reads res's body (at most 64 MiB) into out.
func decodeJSON(res *http.Response, out any) error {
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", res.Request.Method, res.Request.URL.Path, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", res.Request.Method, res.Request.URL.Path, err)
	}
	return nil
}
