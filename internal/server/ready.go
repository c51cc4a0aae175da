package server

import (
	"context"
	"io"
	"net/http"
	"time"
)

// readyTimeout bounds one readiness check: a database that does not answer
// within it is not ready.
const readyTimeout = 2 * time.Second

// readier is a store that can tell whether it is ready to serve: its
// database answers and its schema is the one the binary expects. Both of
// kumo's store backends are.
type readier interface {
	Ready(ctx context.Context) error
}

// readyz answers 200 "ok" when the control plane can serve: Config.Ready,
// or else the store's own Ready, returns nil. Otherwise it answers 503
// with an ARM error body, so that a load balancer sends requests to
// another replica. Like /healthz it needs no token; its message names
// the failure but never a credential.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	check := s.ready
	if check == nil {
		rd, ok := s.store.(readier)
		if !ok {
			check = func(context.Context) error { return nil }
		} else {
			check = rd.Ready
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := check(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		writeError(w, errorf(http.StatusServiceUnavailable, "NotReady", "the control plane is not ready: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "ok\n")
}
