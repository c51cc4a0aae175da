// Package studio is kumo's web UI, served by kumo up at /studio on the API's
// own listener: the pages where a team checks at a glance whether its
// compute is free (node-state bars, queues and why jobs wait, cost) and
// creates, scales and deletes compute clusters, follows and cancels jobs,
// and (owners) reads quotas and manages tokens.
//
// Pages are rendered on the server with html/template; a small script
// (static/studio.js, no framework and no build step) adds the live name
// check and live updates over server-sent events. Everything is embedded
// in the binary, so the studio needs no network at run time.
//
// The studio holds no rules of its own: every read and change goes through
// the API's handlers in process (API.Call), on behalf of the signed-in
// token, so the API's role checks, validation and error mapping decide;
// an API error that names a field is shown next to that field.
//
// Signing in exchanges a kumo token for a session: the browser gets a
// random session ID in an HttpOnly, SameSite=Strict cookie (Secure under
// TLS); the studio keeps only the ID's hash, with the token's hash, in
// memory (so sessions end when kumo up restarts). Every change is a POST
// that must carry the session's CSRF token and, when the browser sends
// one, an Origin naming this server.
package studio

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kumo/api"
	"kumo/internal/model"
)

// Prefix is the path under which the studio is mounted.
const Prefix = "/studio"

// API is what the studio needs of kumo's HTTP API, answered in process
// (internal/server.Server implements it). All methods are safe for
// concurrent use.
type API interface {
	// Authenticate returns the valid token whose secret is raw, or an error
	// when it is unknown or revoked.
	Authenticate(ctx context.Context, raw string) (model.Token, error)
	// TokenByHash returns the valid token whose secret hashes to hash, or
	// an error when it is unknown or revoked.
	TokenByHash(ctx context.Context, hash string) (model.Token, error)
	// Serve answers an API request for the token hashing to tokenHash into
	// w, exactly as the API answers it over the network.
	Serve(ctx context.Context, w http.ResponseWriter, tokenHash, method, target string, header http.Header, body []byte)
	// Call is Serve recorded in memory: it returns the status and body.
	Call(ctx context.Context, tokenHash, method, target string, header http.Header, body []byte) (int, []byte)
}

// Config configures a Studio.
type Config struct {
	API API
	// Subscription, ResourceGroup and Workspace address the workspace the
	// studio shows; Location is its region.
	Subscription, ResourceGroup, Workspace, Location string
	// SessionTTL is how long a sign-in lasts; zero means 12 hours.
	SessionTTL time.Duration
	// LiveInterval is how often a live page's data is read again; zero
	// means 250 ms.
	LiveInterval time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives errors; nil means slog.Default().
	Log *slog.Logger
}

// Limits on sessions.
const (
	maxSessions        = 4096 // past it, the oldest sessions end
	maxLivePerSession  = 6    // server-sent event streams one session may hold
	sessionCookie      = "kumo_studio"
	defaultSessionTTL  = 12 * time.Hour
	defaultLiveEvery   = 250 * time.Millisecond
	maxFormBytes       = 64 << 10
	maxTokenFieldBytes = 512
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Studio serves the studio's pages. Create it with New.
type Studio struct {
	api     API
	wsPath  string // the workspace's ARM path
	locPath string // the workspace region's ARM path
	loc     string
	ttl     time.Duration
	every   time.Duration
	now     func() time.Time
	log     *slog.Logger
	mux     *http.ServeMux
	pages   map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session // by hex SHA-256 of the cookie's value

	sizeMu   sync.Mutex
	sizeMap  map[string]sizeInfo // the region's VM sizes by lower-case name; nil until read
	sizeList []sizeInfo
}

// session is one sign-in.
type session struct {
	tokenHash string // hex SHA-256 of the token's secret, as the store keeps it
	csrf      string // sent in every change form
	created   time.Time
	expires   time.Time
	live      atomic.Int32 // open event streams
}

// New returns a Studio for cfg.
func New(cfg Config) *Studio {
	s := &Studio{api: cfg.API, loc: cfg.Location, ttl: cfg.SessionTTL, every: cfg.LiveInterval, now: cfg.Now, log: cfg.Log,
		mux: http.NewServeMux(), sessions: map[string]*session{}}
	s.wsPath = "/subscriptions/" + url.PathEscape(cfg.Subscription) + "/resourceGroups/" + url.PathEscape(cfg.ResourceGroup) +
		"/providers/" + api.ProviderNamespace + "/workspaces/" + url.PathEscape(cfg.Workspace)
	s.locPath = "/subscriptions/" + url.PathEscape(cfg.Subscription) + "/providers/" + api.ProviderNamespace + "/locations/" + url.PathEscape(cfg.Location)
	if s.ttl <= 0 {
		s.ttl = defaultSessionTTL
	}
	if s.every <= 0 {
		s.every = defaultLiveEvery
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.pages = parseTemplates()
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Studio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	s.mux.ServeHTTP(w, r)
}

// handler is a studio page handler for a signed-in user.
type handler func(w http.ResponseWriter, r *http.Request, u *user) error

// user is the signed-in caller of a request.
type user struct {
	sess  *session
	token model.Token
}

// canChange reports whether the user's role may change resources.
func (u *user) canChange() bool { return u.token.Role.Allows(model.RoleContributor) }

func (s *Studio) routes() {
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", cacheStatic(http.FileServerFS(static))))
	s.mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/computes", http.StatusSeeOther)
	})
	s.mux.HandleFunc("GET "+Prefix+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/computes", http.StatusSeeOther)
	})
	s.mux.HandleFunc("GET "+Prefix+"/signin", s.signinPage)
	s.mux.HandleFunc("POST "+Prefix+"/signin", s.signin)
	s.mux.Handle("POST "+Prefix+"/signout", s.auth(s.signout))

	s.mux.Handle("GET "+Prefix+"/computes", s.auth(s.computesPage))
	s.mux.Handle("GET "+Prefix+"/computes/new", s.auth(s.newComputePage))
	s.mux.Handle("POST "+Prefix+"/computes/new", s.auth(s.createCompute))
	s.mux.Handle("GET "+Prefix+"/computes/check-name", s.auth(s.checkName))
	s.mux.Handle("GET "+Prefix+"/computes/{name}", s.auth(s.computePage))
	s.mux.Handle("POST "+Prefix+"/computes/{name}/scale", s.auth(s.scaleCompute))
	s.mux.Handle("POST "+Prefix+"/computes/{name}/delete", s.auth(s.deleteCompute))
	s.mux.Handle("GET "+Prefix+"/jobs", s.auth(s.jobsPage))
	s.mux.Handle("GET "+Prefix+"/jobs/{name}", s.auth(s.jobPage))
	s.mux.Handle("POST "+Prefix+"/jobs/{name}/cancel", s.auth(s.cancelJob))
	s.mux.Handle("GET "+Prefix+"/jobs/{name}/outputs", s.auth(s.jobOutputs))
	s.mux.Handle("GET "+Prefix+"/quotas", s.auth(s.quotasPage))
	s.mux.Handle("GET "+Prefix+"/tokens", s.auth(s.tokensPage))
	s.mux.Handle("POST "+Prefix+"/tokens", s.auth(s.createToken))
	s.mux.Handle("POST "+Prefix+"/tokens/{id}/revoke", s.auth(s.revokeToken))
	s.mux.Handle("GET "+Prefix+"/live", s.auth(s.live))
	s.mux.Handle(Prefix+"/", s.auth(func(w http.ResponseWriter, r *http.Request, u *user) error {
		return &pageError{Status: http.StatusNotFound, Message: "There is no studio page " + r.URL.Path + "."}
	}))
}

// cacheStatic lets browsers keep the embedded assets for a while.
func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// pageError is an error shown as a page with its status.
type pageError struct {
	Status  int
	Message string
}

func (e *pageError) Error() string { return e.Message }

// auth resolves the session cookie to a signed-in user and, for anything
// but GET, checks the request's origin and CSRF token. Without a valid
// session a GET of a page goes to the sign-in page; anything else gets
// 401. A failed origin or CSRF check gets 403. Neither changes anything.
func (s *Studio) auth(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		change := r.Method != http.MethodGet && r.Method != http.MethodHead
		if change {
			if err := checkOrigin(r); err != nil {
				s.fail(w, r, nil, err)
				return
			}
		}
		u, err := s.user(r)
		if err != nil {
			if r.Method == http.MethodGet && r.URL.Path != Prefix+"/live" && r.URL.Path != Prefix+"/computes/check-name" {
				http.Redirect(w, r, Prefix+"/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, &pageError{Status: http.StatusUnauthorized, Message: "Sign in first: this request carries no valid studio session."})
			return
		}
		if change {
			if err := s.checkCSRF(r, u.sess); err != nil {
				s.fail(w, r, u, err)
				return
			}
		}
		if err := h(w, r, u); err != nil {
			s.fail(w, r, u, err)
		}
	})
}

// user returns the request's signed-in user.
func (s *Studio) user(r *http.Request) (*user, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, errors.New("no session cookie")
	}
	key := hashHex(c.Value)
	s.mu.Lock()
	sess := s.sessions[key]
	if sess != nil && !s.now().Before(sess.expires) {
		delete(s.sessions, key)
		sess = nil
	}
	s.mu.Unlock()
	if sess == nil {
		return nil, errors.New("no such session")
	}
	t, err := s.api.TokenByHash(r.Context(), sess.tokenHash)
	if err != nil {
		return nil, err
	}
	return &user{sess: sess, token: t}, nil
}

// checkOrigin refuses a change that comes from another site: the Origin
// header, when sent, must name this server, and a browser's
// Sec-Fetch-Site must not say another site (another port of the same
// host is another site here, though cookies call it the same).
func checkOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && o != origin(r) {
		return &pageError{Status: http.StatusForbidden, Message: "This change came from another site (" + o + ") and was refused."}
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return &pageError{Status: http.StatusForbidden, Message: "This change came from another site and was refused."}
	}
	return nil
}

// checkCSRF refuses a change whose form does not carry the session's
// CSRF token.
func (s *Studio) checkCSRF(r *http.Request, sess *session) error {
	r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return &pageError{Status: http.StatusBadRequest, Message: "The form could not be read: it is too large or malformed."}
	}
	got := r.PostForm.Get("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) != 1 {
		return &pageError{Status: http.StatusForbidden, Message: "This change carries no valid form token (CSRF) and was refused; reload the page and try again."}
	}
	return nil
}

// origin is the scheme and host this request reached.
func origin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// newSession stores a session for a token's hash and returns the cookie
// value, which only the browser keeps.
func (s *Studio) newSession(tokenHash string) string {
	id := randomToken()
	now := s.now()
	sess := &session{tokenHash: tokenHash, csrf: randomToken(), created: now, expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.sessions {
		if !now.Before(v.expires) {
			delete(s.sessions, k)
		}
	}
	for len(s.sessions) >= maxSessions {
		var oldest string
		for k, v := range s.sessions {
			if oldest == "" || v.created.Before(s.sessions[oldest].created) {
				oldest = k
			}
		}
		delete(s.sessions, oldest)
	}
	s.sessions[hashHex(id)] = sess
	return id
}

func (s *Studio) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (s *Studio) signinPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, nil, http.StatusOK, "signin", &view{Title: "Sign in", Data: signinData{Next: safeNext(r.URL.Query().Get("next"))}})
}

type signinData struct {
	Next  string
	Error string
}

// safeNext keeps a post-sign-in destination only when it is a studio
// path, so that the sign-in page cannot send anyone elsewhere.
func safeNext(next string) string {
	if strings.HasPrefix(next, Prefix+"/") && !strings.HasPrefix(next, "//") && !strings.Contains(next, `\`) {
		return next
	}
	return Prefix + "/computes"
}

func (s *Studio) signin(w http.ResponseWriter, r *http.Request) {
	if err := checkOrigin(r); err != nil {
		s.fail(w, r, nil, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, nil, &pageError{Status: http.StatusBadRequest, Message: "The form could not be read."})
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	raw := strings.TrimSpace(r.PostForm.Get("token"))
	if raw == "" || len(raw) > maxTokenFieldBytes {
		s.render(w, r, nil, http.StatusUnauthorized, "signin", &view{Title: "Sign in", Data: signinData{Next: next, Error: "Enter a kumo API token."}})
		return
	}
	t, err := s.api.Authenticate(r.Context(), raw)
	if err != nil {
		s.render(w, r, nil, http.StatusUnauthorized, "signin", &view{Title: "Sign in", Data: signinData{Next: next, Error: "That token is not valid or has been revoked."}})
		return
	}
	s.setCookie(w, r, s.newSession(t.Hash), int(s.ttl.Seconds()))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Studio) signout(w http.ResponseWriter, r *http.Request, u *user) error {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.sessions, hashHex(c.Value))
		s.mu.Unlock()
	}
	s.setCookie(w, r, "", -1)
	http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
	return nil
}

// fail shows err as an error page (or, for the event stream and the name
// check, as plain text).
func (s *Studio) fail(w http.ResponseWriter, r *http.Request, u *user, err error) {
	var pe *pageError
	if !errors.As(err, &pe) {
		s.log.Error("studio request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		pe = &pageError{Status: http.StatusInternalServerError, Message: "Something went wrong; see the server log."}
	}
	if r.URL.Path == Prefix+"/live" || r.URL.Path == Prefix+"/computes/check-name" {
		http.Error(w, pe.Message, pe.Status)
		return
	}
	s.render(w, r, u, pe.Status, "error", &view{Title: http.StatusText(pe.Status), Data: pe})
}
