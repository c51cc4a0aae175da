package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"unicode/utf8"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/store"
)

// apiError is an error with its HTTP status and ARM error code. Handlers
// return it (or any error) to the adapter, which writes the ARM body.
type apiError struct {
	Status  int
	Code    string
	Message string
	Target  string
	Info    map[string]any
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(code, target, format string, args ...any) *apiError {
	e := errorf(http.StatusBadRequest, code, format, args...)
	e.Target = target
	return e
}

// toAPIError maps any error to its HTTP status and ARM code. It is the only
// place that decides statuses for store and validation errors.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var fe *model.FieldError
	if errors.As(err, &fe) {
		return &apiError{Status: http.StatusBadRequest, Code: fe.Code, Message: fe.Message, Target: fe.Field, Info: fe.Info}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, api.CodeResourceNotFound, "the resource was not found")
	case errors.Is(err, store.ErrPreconditionFailed):
		return errorf(http.StatusPreconditionFailed, api.CodePreconditionFailed, "the resource has changed: its ETag no longer matches If-Match")
	case errors.Is(err, store.ErrLastOwner):
		return errorf(http.StatusConflict, api.CodeLastOwnerToken,
			"this is the last owner token: revoking it would leave nobody able to manage tokens; create another owner token first")
	case errors.Is(err, store.ErrConflict):
		return errorf(http.StatusConflict, api.CodeConflict, "the resource was changed by another request; retry")
	}
	return errorf(http.StatusInternalServerError, api.CodeInternalError, "internal error; see the server log")
}

// handlerFunc is an HTTP handler that returns an error instead of writing
// one.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// adapt turns a handlerFunc into an http.Handler that writes any returned
// error as an ARM error body.
func (s *Server) adapt(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			ae := toAPIError(err)
			if ae.Status >= 500 {
				s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, ae)
		}
	})
}

// maxMessage bounds an error message: the last guard against repeating a
// huge input (messages quote inputs with model.Quote).
const maxMessage = 2048

func writeError(w http.ResponseWriter, ae *apiError) {
	msg := ae.Message
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	target := ae.Target
	if len(target) > model.MaxQuoted*2 {
		target = target[:model.MaxQuoted*2]
	}
	detail := &api.ErrorDetail{Code: ae.Code, Message: msg, Target: target}
	if ae.Info != nil {
		detail.AdditionalInfo = []api.ErrorAdditionalInfo{{Type: ae.Code, Info: ae.Info}}
	}
	w.Header().Set("x-ms-error-code", ae.Code)
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kumo"`)
		// A client without a valid token gets no keep-alive connection to
		// hold: it must connect again, under connlimit's caps.
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, ae.Status, api.ErrorResponse{Error: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
