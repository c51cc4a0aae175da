// Package server is kumo's HTTP API: the ARM-shaped routes for workspaces,
// compute targets, long-running operations, VM sizes, usages and quotas, plus
// kumo's own token routes. Handlers return errors to one adapter that writes
// the ARM error body; every route but /healthz and /readyz needs a bearer
// token.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"kumo/api"
	"kumo/internal/jobfiles"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/store"
)

// Notifier is told when a compute needs the provisioner's attention.
// Notify must not block.
type Notifier interface {
	Notify()
}

// Config configures a Server.
type Config struct {
	Store   store.Store
	Regions map[string]model.Region // by lower-case region name
	// Provisioner is notified after a compute is created, changed or
	// deleted; nil means nobody is told (tests drive it themselves).
	Provisioner Notifier
	// Files holds job logs, artifacts and code snapshots.
	Files *jobfiles.Files
	// Changed is called after a job of computeID was queued or canceled, or
	// the compute's scale settings changed, so that the dispatcher and
	// autoscaler look again; nil means nobody.
	Changed func(computeID string)
	// LocalDisabled refuses jobs for the built-in compute "local"
	// (kumo up --local-compute=off).
	LocalDisabled bool
	// Evicter takes LowPriority nodes away on request (simulateEviction);
	// nil means the route answers that evictions cannot be simulated.
	Evicter Evicter
	// Hosts report per-host capacity for regions whose provider is a set
	// of hosts, keyed by lower-case region name; nil means none. Their
	// rows follow the region's in the usages.
	Hosts map[string]provider.HostReporter
	// Agents are extra routes (the node agents' protocol), mounted as is.
	Agents map[string]http.HandlerFunc
	// Tunnel opens streams to nodes' SSH servers; nil means the SSH
	// route answers that no node is connected.
	Tunnel Tunnel
	// PollInterval is sent as Retry-After-Ms on long-running operations;
	// zero means 500 ms.
	PollInterval time.Duration
	// PageSize bounds list pages; zero means 100.
	PageSize int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives errors; nil means slog.Default().
	Log *slog.Logger
	// RateLimit is how many requests per second each API token may make on
	// average; zero means DefaultRateLimit, negative means no limit.
	// Requests past it get 429 with Retry-After. Node agents are not
	// limited by it.
	RateLimit float64
	// RateBurst is how many requests a token may make at once; zero means
	// DefaultRateBurst.
	RateBurst int
	// TransferTimeout is how long a streaming route (code upload, artifact
	// download, log follow, the agents' routes) may go without moving a
	// byte; such routes are exempt from the http.Server's read and write
	// timeouts. Zero means DefaultTransferTimeout.
	TransferTimeout time.Duration
	// Ready reports whether the control plane can serve, for /readyz; nil
	// means the store's own Ready method (a store without one is always
	// ready).
	Ready func(ctx context.Context) error
}

// DefaultTransferTimeout is the default Config.TransferTimeout.
const DefaultTransferTimeout = time.Minute

// Server serves kumo's HTTP API.
type Server struct {
	store    store.Store
	regions  map[string]model.Region
	prov     Notifier
	poll     time.Duration
	page     int
	now      func() time.Time
	log      *slog.Logger
	ready    func(ctx context.Context) error // Config.Ready
	mux      *http.ServeMux
	files    *jobfiles.Files
	tokens   tokenCache
	limiter  *rateLimiter
	transfer time.Duration // see Config.TransferTimeout
	changed  func(string)
	noLocal  bool   // compute "local" is off
	tunnel   Tunnel // nil means none
	hosts    map[string]provider.HostReporter
	evicter  Evicter
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	s := &Server{store: cfg.Store, regions: cfg.Regions, prov: cfg.Provisioner, files: cfg.Files, changed: cfg.Changed, poll: cfg.PollInterval,
		page: cfg.PageSize, now: cfg.Now, log: cfg.Log, mux: http.NewServeMux(),
		limiter: newRateLimiter(cfg.RateLimit, cfg.RateBurst), transfer: cfg.TransferTimeout, noLocal: cfg.LocalDisabled, tunnel: cfg.Tunnel,
		hosts: cfg.Hosts, evicter: cfg.Evicter, ready: cfg.Ready}
	if s.transfer <= 0 {
		s.transfer = DefaultTransferTimeout
	}
	if s.poll <= 0 {
		s.poll = 500 * time.Millisecond
	}
	if s.page <= 0 {
		s.page = 100
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.routes()
	for pattern, h := range cfg.Agents {
		s.mux.Handle(pattern, s.streaming(agentAuthWatch(h)))
	}
	return s
}

// Limits on a request's URL, checked before routing.
const (
	maxPath  = 2048
	maxQuery = 4096
)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Path) > maxPath || len(r.URL.RawQuery) > maxQuery {
		w.Header().Set("Connection", "close")
		writeError(w, errorf(http.StatusRequestURITooLong, api.CodeRequestURITooLong,
			"the request URL is too long: the path may have at most %d bytes and the query %d", maxPath, maxQuery))
		return
	}
	s.mux.ServeHTTP(w, r)
}

const (
	sub  = "/subscriptions/{sub}"
	prov = "/providers/" + api.ProviderNamespace
	rgp  = sub + "/resourceGroups/{rg}" + prov
	wsp  = rgp + "/workspaces/{ws}"
	cp   = wsp + "/computes/{compute}"
	locp = sub + prov + "/locations/{loc}"
)

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	r := func(pattern string, min model.Role, h handlerFunc) {
		s.mux.Handle(pattern, s.adapt(s.authorize(min, h)))
	}
	// Streaming routes move many bytes or wait on a job: they are held to
	// progress (TransferTimeout) rather than to the server's deadlines.
	stream := func(pattern string, min model.Role, h handlerFunc) {
		s.mux.Handle(pattern, s.streaming(s.adapt(s.authorize(min, h))))
	}
	r("GET "+sub+prov+"/workspaces", model.RoleReader, s.workspaceList)
	r("GET "+rgp+"/workspaces", model.RoleReader, s.workspaceList)
	r("GET "+wsp, model.RoleReader, s.workspaceGet)
	r("PUT "+wsp, model.RoleContributor, s.workspacePut)
	r("DELETE "+wsp, model.RoleContributor, s.workspaceDelete)

	r("GET "+wsp+"/computes", model.RoleReader, s.computeList)
	r("GET "+cp, model.RoleReader, s.computeGet)
	r("PUT "+cp, model.RoleContributor, s.computePut)
	r("PATCH "+cp, model.RoleContributor, s.computePatch)
	r("DELETE "+cp, model.RoleContributor, s.computeDelete)
	r("POST "+cp+"/listNodes", model.RoleReader, s.computeListNodes)
	r("GET "+cp+"/listNodes", model.RoleReader, s.computeListNodes)
	r("POST "+cp+"/listKeys", model.RoleContributor, s.computeListKeys)
	r("POST "+cp+"/simulateEviction", model.RoleContributor, s.computeSimulateEviction)
	stream("GET "+cp+"/nodes/{node}/ssh", model.RoleContributor, s.computeNodeSSH)

	r("GET "+locp+"/computeOperationsStatus/{op}", model.RoleReader, s.operationGet)
	r("GET "+locp+"/vmSizes", model.RoleReader, s.vmSizes)
	r("GET "+locp+"/usages", model.RoleReader, s.usages)
	r("GET "+locp+"/quotas", model.RoleReader, s.quotas)
	r("POST "+locp+"/updateQuotas", model.RoleOwner, s.updateQuotas)

	stream("POST "+wsp+"/snapshots", model.RoleContributor, s.snapshotCreate)
	r("GET "+wsp+"/jobs", model.RoleReader, s.jobList)
	r("GET "+wsp+"/jobs/{job}", model.RoleReader, s.jobGet)
	r("PUT "+wsp+"/jobs/{job}", model.RoleContributor, s.jobPut)
	r("POST "+wsp+"/jobs/{job}/cancel", model.RoleContributor, s.jobCancel)
	r("GET "+wsp+"/costs", model.RoleReader, s.costReport)
	stream("GET "+wsp+"/jobs/{job}/logs", model.RoleReader, s.jobLogs)
	stream("GET "+wsp+"/jobs/{job}/artifacts", model.RoleReader, s.jobArtifacts)
	r("GET "+cp+"/events", model.RoleReader, s.computeEvents)

	r("GET /kumo/v1/tokens", model.RoleOwner, s.tokenList)
	r("POST /kumo/v1/tokens", model.RoleOwner, s.tokenCreate)
	r("DELETE /kumo/v1/tokens/{id}", model.RoleOwner, s.tokenRevoke)

	s.mux.Handle("/", s.adapt(s.authorize(model.RoleReader, func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "NoRegisteredProviderFound", "no operation %s %s exists", r.Method, r.URL.Path)
	})))
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// decode reads a JSON body into v, naming the offending field on errors.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return badRequest(api.CodeInvalidRequestContent, "", "the request body could not be read: %v", err)
	}
	if len(body) > maxBody {
		return badRequest(api.CodeInvalidRequestContent, "", "the request body is larger than %d bytes", maxBody)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return badRequest(api.CodeInvalidRequestContent, "", "the request body is empty: a JSON object is required")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest(api.CodeInvalidRequestContent, te.Field, "the request body has the wrong type at %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return badRequest(api.CodeInvalidRequestContent, "", "the request body is not valid JSON (at byte %d): %v", se.Offset, err)
		}
		return badRequest(api.CodeInvalidRequestContent, "", "the request body is not valid JSON: %v", err)
	}
	return nil
}

// baseURL returns the scheme and host a client used, for absolute links.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(api.TimeFormat)
}

func (s *Server) notify() {
	if s.prov != nil {
		s.prov.Notify()
	}
}

// region returns the region of a location name.
func (s *Server) region(loc string) (model.Region, bool) {
	r, ok := s.regions[strings.ToLower(strings.ReplaceAll(loc, " ", ""))]
	return r, ok
}

// workspaceID builds a workspace's ARM ID from the path.
func workspaceID(r *http.Request) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/workspaces/%s",
		r.PathValue("sub"), r.PathValue("rg"), api.ProviderNamespace, r.PathValue("ws"))
}

// loadWorkspace returns the workspace in the path, or a 404 naming it.
func (s *Server) loadWorkspace(ctx context.Context, r *http.Request) (model.Workspace, error) {
	ws, err := s.store.WorkspaceGet(ctx, workspaceID(r))
	if errors.Is(err, store.ErrNotFound) {
		return ws, errorf(http.StatusNotFound, api.CodeParentNotFound, "workspace %q was not found in resource group %q", r.PathValue("ws"), r.PathValue("rg"))
	}
	return ws, err
}

// pageOf cuts a list read with one row more than a page (Limit: page+1) to
// the page, and returns the absolute nextLink that continues after its last
// row, or "" on the last page.
func pageOf[T any](r *http.Request, rows []T, page int, name func(T) string) ([]T, string) {
	if len(rows) <= page {
		return rows, ""
	}
	rows = rows[:page]
	q := url.Values{"api-version": {apiVersion(r)}, "$skipToken": {strings.ToLower(name(rows[len(rows)-1]))}}
	return rows, baseURL(r) + r.URL.Path + "?" + q.Encode()
}
