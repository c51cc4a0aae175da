package studio

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// loader reads what a live page shows, from the query that names it.
type loader func(r *http.Request, u *user, q url.Values) (*view, error)

func (s *Studio) loaders() map[string]loader {
	return map[string]loader{"computes": s.loadComputes, "compute": s.loadCompute, "jobs": s.loadJobs, "job": s.loadJob}
}

// withLive points a page's live region at its event stream.
func (s *Studio) withLive(v *view, page string, q url.Values) {
	q = cloneValues(q)
	q.Set("page", page)
	v.Live = Prefix + "/live?" + q.Encode()
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// livePage renders a page whose #live region the event stream refreshes.
func (s *Studio) livePage(w http.ResponseWriter, r *http.Request, u *user, page string, q url.Values) error {
	v, err := s.loaders()[page](r, u, q)
	if err != nil {
		return asPage(err)
	}
	s.withLive(v, page, q)
	s.render(w, r, u, http.StatusOK, page, v)
	return nil
}

// live streams a page's live region as server-sent events: an "update"
// event with the region's HTML whenever what it shows changes (read every
// LiveInterval), and for a job's page "log" events with new log text. A
// session may hold maxLivePerSession streams; the stream ends when the
// session does or its token is revoked.
func (s *Studio) live(w http.ResponseWriter, r *http.Request, u *user) error {
	q := r.URL.Query()
	page := q.Get("page")
	load, ok := s.loaders()[page]
	if !ok {
		return &pageError{Status: http.StatusBadRequest, Message: "unknown live page " + strconv.Quote(page)}
	}
	if n := u.sess.live.Add(1); n > maxLivePerSession {
		u.sess.live.Add(-1)
		w.Header().Set("Retry-After", "5")
		return &pageError{Status: http.StatusTooManyRequests, Message: fmt.Sprintf("this session already has %d live pages open; close one", maxLivePerSession)}
	}
	defer u.sess.live.Add(-1)

	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func(event, data string) error {
		var b strings.Builder
		b.WriteString("event: " + event + "\n")
		for _, line := range strings.Split(data, "\n") {
			b.WriteString("data: " + line + "\n")
		}
		b.WriteString("\n")
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write([]byte(b.String())); err != nil {
			return err
		}
		return rc.Flush()
	}
	// Ask the browser to reconnect soon if the stream breaks.
	if _, err := w.Write([]byte("retry: 1000\n\n")); err != nil {
		return nil
	}

	offset, _ := strconv.ParseInt(q.Get("offset"), 10, 64)
	var last [32]byte
	first := true
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	keepAlive := time.Now()
	for {
		if _, err := s.user(r); err != nil {
			_ = send("signedout", "")
			return nil
		}
		v, err := load(r, u, q)
		if err == nil {
			v.fill(u)
			html, err := s.fragment(page, v)
			if err != nil {
				s.log.Error("render live fragment", "page", page, "err", err)
				return nil
			}
			if sum := sha256.Sum256([]byte(html)); first || sum != last {
				last, first = sum, false
				if send("update", html) != nil {
					return nil
				}
				keepAlive = time.Now()
			}
		} else if ae, ok := err.(*apiError); ok && ae.Status == http.StatusNotFound {
			_ = send("gone", ae.Message)
			return nil
		} else if ok && ae.Status == http.StatusTooManyRequests {
			// The token is past its rate limit: leave its budget to its
			// other clients for a while.
			select {
			case <-r.Context().Done():
				return nil
			case <-time.After(2 * time.Second):
			}
		}
		if page == "job" {
			tail := &tailWriter{max: maxLogTail}
			s.api.Serve(r.Context(), tail, u.sess.tokenHash, "GET",
				withVersion(s.wsPath+"/jobs/"+url.PathEscape(q.Get("name"))+"/logs?offset="+strconv.FormatInt(offset, 10)), nil, nil)
			if tail.status == http.StatusOK && tail.total > 0 {
				offset += tail.total
				if send("log", tail.String()) != nil {
					return nil
				}
				keepAlive = time.Now()
			}
		}
		if time.Since(keepAlive) > 15*time.Second {
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil || rc.Flush() != nil {
				return nil
			}
			keepAlive = time.Now()
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-tick.C:
		}
	}
}
