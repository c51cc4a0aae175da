package client

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"kumo/api"
)

const (
	testToken = "secret-token"
	testSub   = "00000000-0000-0000-0000-000000000000"
	testP     = "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
	testWS    = testP + "/workspaces/ws"
)

// fakeARM is an httptest server speaking the parts of kumo's contract a
// test registers. It checks every request for the bearer token and the
// api-version, and records them.
type fakeARM struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux

	mu   sync.Mutex
	reqs []string // "METHOD path" of each request, in order
}

func newFakeARM(t *testing.T) *fakeARM {
	t.Helper()
	f := &fakeARM{t: t, mux: http.NewServeMux()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
			writeJSON(w, http.StatusUnauthorized, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeAuthenticationFailed, Message: "bad token " + got}})
			return
		}
		if got := r.URL.Query().Get("api-version"); got != api.DefaultAPIVersion {
			writeJSON(w, http.StatusBadRequest, api.ErrorResponse{Error: &api.ErrorDetail{Code: "MissingApiVersion", Message: "api-version is " + got}})
			return
		}
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	// Every test workspace lives in "local".
	f.mux.HandleFunc("GET "+testWS, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Workspace{Name: "ws", Location: "local"})
	})
	return f
}

// workspace returns a Workspace on f with a 1 ms poll interval.
func (f *fakeARM) workspace() *Workspace {
	f.t.Helper()
	w, err := New(Config{
		Endpoint:       f.srv.URL,
		SubscriptionID: testSub,
		ResourceGroup:  "rg",
		WorkspaceName:  "ws",
		Token:          testToken,
	}, WithPollInterval(time.Millisecond))
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	return w
}

func (f *fakeARM) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sequence answers each call with the next value, repeating the last.
type sequence[T any] struct {
	mu   sync.Mutex
	vals []T
}

func (s *sequence[T]) next() T {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vals[0]
	if len(s.vals) > 1 {
		s.vals = s.vals[1:]
	}
	return v
}

// cluster returns a compute resource in state with current nodes of min.
func cluster(name string, state api.ProvisioningState, current, minNodes int32) api.ComputeResource {
	return api.ComputeResource{
		ID:       testWS + "/computes/" + name,
		Name:     name,
		Location: ptr("local"),
		Properties: &api.ComputeProperties{
			ComputeType:       api.ComputeTypeAmlCompute,
			ProvisioningState: state,
			Properties: &api.AmlComputeProperties{
				VMSize:     ptr("STANDARD_D2_V2"),
				VMPriority: ptr("Dedicated"),
				ScaleSettings: &api.ScaleSettings{
					MinNodeCount:                ptr(minNodes),
					MaxNodeCount:                ptr(int32(4)),
					NodeIdleTimeBeforeScaleDown: ptr("PT30M"),
				},
				CurrentNodeCount: current,
				TargetNodeCount:  minNodes,
				NodeStateCounts:  &api.NodeStateCounts{IdleNodeCount: current},
			},
		},
	}
}

func armError(status int, code, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, status, api.ErrorResponse{Error: &api.ErrorDetail{Code: code, Message: msg}})
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
