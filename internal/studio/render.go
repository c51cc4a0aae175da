package studio

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"

	"kumo/internal/model"
)

// view is what every page template gets.
type view struct {
	Title     string
	Nav       string // the active tab: computes, jobs, quotas, tokens
	Signed    bool   // a user is signed in
	TokenName string
	Role      string
	CanChange bool // the role may change resources: change controls are enabled
	IsOwner   bool
	CSRF      string
	Live      string // the event stream that refreshes #live, or ""
	Data      any
}

// fill sets the view's fields about the signed-in user u (nil: nobody).
func (v *view) fill(u *user) {
	if u == nil {
		return
	}
	v.Signed, v.TokenName, v.Role = true, u.token.Name, string(u.token.Role)
	if v.TokenName == "" {
		v.TokenName = u.token.ID
	}
	v.CanChange, v.IsOwner, v.CSRF = u.canChange(), u.token.Role == model.RoleOwner, u.sess.csrf
}

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"signin", "error", "computes", "compute_new", "compute", "jobs", "job", "quotas", "tokens"}

// liveFragments name, per page, the template the event stream renders
// into the page's #live region.
var liveFragments = map[string]string{"computes": "computes-live", "compute": "compute-live", "jobs": "jobs-live", "job": "job-live"}

var funcs = template.FuncMap{
	"pct": func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"money": func(v float64) string {
		return fmt.Sprintf("$%.2f", math.Round(v*100)/100)
	},
	"gb": func(v float64) string {
		if v == math.Trunc(v) {
			return fmt.Sprintf("%.0f GB", v)
		}
		return fmt.Sprintf("%.1f GB", v)
	},
	"lower": strings.ToLower,
	"when":  when,
}

// when shows an API timestamp to the second, in UTC; "" becomes "–".
func when(ts string) string {
	if ts == "" {
		return "–"
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func parseTemplates() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}

// render writes page name with v, for user u (nil when nobody is signed
// in).
func (s *Studio) render(w http.ResponseWriter, r *http.Request, u *user, status int, name string, v *view) {
	v.fill(u)
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.Error("render studio page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fragment renders the live region of page name.
func (s *Studio) fragment(name string, v *view) (string, error) {
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, liveFragments[name], v); err != nil {
		return "", err
	}
	return buf.String(), nil
}
