package studio

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"kumo/api"
)

type usageRow struct {
	Name         string
	Used, Limit  int64
	Pct          float64
	Over, Unused bool
}

type quotasData struct {
	Location string
	Usages   []usageRow
	Quotas   []api.ResourceQuota
}

func (s *Studio) quotasPage(w http.ResponseWriter, r *http.Request, u *user) error {
	d := &quotasData{Location: s.loc}
	var us api.UsageList
	if err := s.call(r, u, "GET", s.locPath+"/usages", nil, nil, &us); err != nil {
		return asPage(err)
	}
	for _, x := range us.Value {
		row := usageRow{Name: x.Name.LocalizedValue, Used: x.CurrentValue, Limit: x.Limit}
		if row.Name == "" {
			row.Name = x.Name.Value
		}
		if x.Limit > 0 {
			row.Pct = min(100, 100*float64(x.CurrentValue)/float64(x.Limit))
		}
		row.Over = x.Limit > 0 && x.CurrentValue >= x.Limit
		d.Usages = append(d.Usages, row)
	}
	var qs api.QuotaList
	if err := s.call(r, u, "GET", s.locPath+"/quotas", nil, nil, &qs); err != nil {
		return asPage(err)
	}
	d.Quotas = qs.Value
	s.render(w, r, u, http.StatusOK, "quotas", &view{Title: "Quotas", Nav: "quotas", Data: d})
	return nil
}

type tokensData struct {
	Tokens  []api.TokenInfo
	Created *api.TokenCreated // just created: its secret is shown this once
	Name    string
	Role    string
	Errors  map[string]string
	Denied  string // why the list is not shown
}

func (s *Studio) tokensView(r *http.Request, u *user, d *tokensData) (*view, error) {
	var tl api.TokenList
	err := s.call(r, u, "GET", "/kumo/v1/tokens", nil, nil, &tl)
	if ae, ok := err.(*apiError); ok && ae.Status == http.StatusForbidden {
		d.Denied = ae.Message
	} else if err != nil {
		return nil, err
	}
	d.Tokens = tl.Value
	return &view{Title: "Tokens", Nav: "tokens", Data: d}, nil
}

func (s *Studio) tokensPage(w http.ResponseWriter, r *http.Request, u *user) error {
	v, err := s.tokensView(r, u, &tokensData{Role: "reader"})
	if err != nil {
		return asPage(err)
	}
	s.render(w, r, u, http.StatusOK, "tokens", v)
	return nil
}

func (s *Studio) createToken(w http.ResponseWriter, r *http.Request, u *user) error {
	d := &tokensData{Name: strings.TrimSpace(r.PostForm.Get("name")), Role: r.PostForm.Get("role")}
	status := http.StatusCreated
	var created api.TokenCreated
	err := s.call(r, u, "POST", "/kumo/v1/tokens", nil, api.TokenCreateRequest{Name: d.Name, Role: api.TokenRole(d.Role)}, &created)
	if ae, ok := err.(*apiError); ok {
		d.Errors, status = fieldErrors(err), ae.Status
	} else if err != nil {
		return err
	} else {
		d.Created, d.Name, d.Role = &created, "", "reader"
	}
	v, err := s.tokensView(r, u, d)
	if err != nil {
		return asPage(err)
	}
	s.render(w, r, u, status, "tokens", v)
	return nil
}

func (s *Studio) revokeToken(w http.ResponseWriter, r *http.Request, u *user) error {
	if err := s.call(r, u, "DELETE", "/kumo/v1/tokens/"+url.PathEscape(r.PathValue("id")), nil, nil, nil); err != nil {
		return asPage(err)
	}
	http.Redirect(w, r, Prefix+"/tokens", http.StatusSeeOther)
	return nil
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(v)
}
