package studio

import (
	"encoding/json"
	"net/http"
	"strings"

	"kumo/api"
)

// apiError is an API answer that was not a success.
type apiError struct {
	Status int
	api.ErrorDetail
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// withVersion adds the API version to a target path.
func withVersion(target string) string {
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + "api-version=" + api.DefaultAPIVersion
}

// call sends one API request in process for u and decodes a 2xx answer's
// JSON into out (when out is not nil). Any other answer is an *apiError.
func (s *Studio) call(r *http.Request, u *user, method, target string, hdr http.Header, body, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	status, resp := s.api.Call(r.Context(), u.sess.tokenHash, method, withVersion(target), hdr, raw)
	if status < 200 || status > 299 {
		e := &apiError{Status: status}
		var er api.ErrorResponse
		if err := json.Unmarshal(resp, &er); err == nil && er.Error != nil {
			e.ErrorDetail = *er.Error
		} else {
			e.Code, e.Message = http.StatusText(status), strings.TrimSpace(string(resp))
		}
		return e
	}
	if out != nil && len(resp) > 0 {
		return json.Unmarshal(resp, out)
	}
	return nil
}

// asPage turns an API error into an error page with the API's status and
// message; other errors pass through.
func asPage(err error) error {
	if ae, ok := err.(*apiError); ok {
		return &pageError{Status: ae.Status, Message: ae.Message + " (" + ae.Code + ")"}
	}
	return err
}

// formFields maps the last part of an API error's target to the form
// field it concerns.
var formFields = map[string]string{
	"name":                        "name",
	"vmSize":                      "vmSize",
	"vmPriority":                  "vmPriority",
	"minNodeCount":                "minNodes",
	"maxNodeCount":                "maxNodes",
	"nodeIdleTimeBeforeScaleDown": "idleSeconds",
	"remoteLoginPortPublicAccess": "ssh",
	"adminUserName":               "adminUser",
	"adminUserPassword":           "password",
	"adminUserSshPublicKey":       "sshKey",
	"role":                        "role",
}

// fieldErrors places an API error at the form field its target names, or
// under "" (the whole form) when it names none.
func fieldErrors(err error) map[string]string {
	ae, ok := err.(*apiError)
	if !ok {
		return map[string]string{"": "Something went wrong; see the server log."}
	}
	target := ae.Target
	if i := strings.LastIndex(target, "."); i >= 0 {
		target = target[i+1:]
	}
	if f, ok := formFields[target]; ok {
		return map[string]string{f: ae.Message}
	}
	return map[string]string{"": ae.Message + " (" + ae.Code + ")"}
}
