package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"kumo/api"
)

// ErrComputeTargetNotFound matches, with errors.Is, the error that
// Workspace.ComputeTarget returns when the workspace has no compute target
// of that name (AML's ComputeTargetException on a missing target).
var ErrComputeTargetNotFound = errors.New("compute target not found")

// Error is an error the server reported: a non-2xx answer with an ARM error
// body.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Code is the ARM error code, such as "ResourceNotFound". When the body
	// is not an ARM error, it is the HTTP status text.
	Code string
	// Message is the server's explanation.
	Message string
	// Target, when set, names the offending field.
	Target string
	// Details holds nested errors, if the server sent any.
	Details []api.ErrorDetail

	sentinel error // a package sentinel this error also matches, or nil
}

// Error returns "<Code>: <Message>".
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the package sentinel the error matches, such as
// ErrComputeTargetNotFound, or nil.
func (e *Error) Unwrap() error { return e.sentinel }

// newError builds an *Error from a non-2xx answer.
func newError(status int, h http.Header, body []byte) *Error {
	e := &Error{StatusCode: status}
	var er api.ErrorResponse
	if json.Unmarshal(body, &er) == nil && er.Error != nil && er.Error.Code != "" {
		e.Code = er.Error.Code
		e.Message = er.Error.Message
		e.Target = er.Error.Target
		e.Details = er.Error.Details
	}
	if c := h.Get("x-ms-error-code"); e.Code == "" && c != "" {
		e.Code = c
	}
	if e.Code == "" {
		e.Code = strings.ReplaceAll(http.StatusText(status), " ", "")
		if e.Code == "" {
			e.Code = "HTTP" + strconv.Itoa(status)
		}
		msg := strings.TrimSpace(string(body))
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		e.Message = msg
	}
	return e
}
