package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

func TestComputeTargetsFollowsNextLink(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/computes", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("page") {
		case "":
			writeJSON(w, http.StatusOK, api.ComputeList{
				Value:    []api.ComputeResource{cluster("a", "Succeeded", 0, 0), cluster("b", "Succeeded", 0, 0)},
				NextLink: f.srv.URL + testWS + "/computes?api-version=" + api.DefaultAPIVersion + "&page=2",
			})
		case "2":
			// A nextLink without api-version: the client adds it.
			writeJSON(w, http.StatusOK, api.ComputeList{
				Value:    []api.ComputeResource{cluster("c", "Creating", 0, 0)},
				NextLink: f.srv.URL + testWS + "/computes?page=3",
			})
		default:
			writeJSON(w, http.StatusOK, api.ComputeList{Value: []api.ComputeResource{cluster("d", "Succeeded", 0, 0)}})
		}
	})
	cts, err := f.workspace().ComputeTargets(context.Background())
	if err != nil {
		t.Fatalf("ComputeTargets: %v", err)
	}
	var got []string
	for _, ct := range cts {
		got = append(got, ct.Name()+"/"+string(ct.ProvisioningState()))
	}
	want := []string{"a/Succeeded", "b/Succeeded", "c/Creating", "d/Succeeded"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ComputeTargets = %v, want %v", got, want)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("made %d requests, want 3", n)
	}
}

func TestListNodesPostsThenGetsNextLink(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("POST "+testWS+"/computes/c1/listNodes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.NodeList{
			Nodes:    []api.NodeInformation{{NodeID: "n1", NodeState: api.NodeIdle}},
			NextLink: f.srv.URL + testWS + "/computes/c1/listNodes?api-version=" + api.DefaultAPIVersion + "&skip=1",
		})
	})
	f.mux.HandleFunc("GET "+testWS+"/computes/c1/listNodes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.NodeList{Nodes: []api.NodeInformation{{NodeID: "n2", NodeState: api.NodeRunning}}})
	})
	ct := &ComputeTarget{ws: f.workspace(), name: "c1"}
	nodes, err := ct.ListNodes(context.Background())
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	if len(nodes) != 2 || nodes[0].NodeID != "n1" || nodes[1].NodeID != "n2" {
		t.Errorf("ListNodes = %+v, want n1, n2", nodes)
	}
}

func TestComputeTargetNotFound(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		code         string
		wantNotFound bool
	}{
		{"missing compute", http.StatusNotFound, api.CodeResourceNotFound, true},
		{"missing workspace", http.StatusNotFound, api.CodeParentNotFound, false},
		{"forbidden", http.StatusForbidden, api.CodeAuthorizationFailed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeARM(t)
			f.mux.Handle("GET "+testWS+"/computes/cpu-cluster", armError(tt.status, tt.code, "no luck"))
			_, err := f.workspace().ComputeTarget(context.Background(), "cpu-cluster")
			if got := errors.Is(err, ErrComputeTargetNotFound); got != tt.wantNotFound {
				t.Errorf("errors.Is(%v, ErrComputeTargetNotFound) = %v, want %v", err, got, tt.wantNotFound)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.StatusCode != tt.status || e.Code != tt.code || e.Message != "no luck" {
				t.Errorf("Error = %+v, want status %d code %s", e, tt.status, tt.code)
			}
			if got, want := err.Error(), tt.code+": no luck"; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    Error
	}{
		{"ARM body", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusBadRequest, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeUnsupportedVMSize, Message: "size X is not offered", Target: "properties.properties.vmSize"}})
		}, Error{StatusCode: 400, Code: "UnsupportedVMSize", Message: "size X is not offered", Target: "properties.properties.vmSize"}},
		{"header code", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("x-ms-error-code", "Conflict")
			w.WriteHeader(http.StatusConflict)
		}, Error{StatusCode: 409, Code: "Conflict"}},
		{"plain text", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream down", http.StatusBadGateway)
		}, Error{StatusCode: 502, Code: "BadGateway", Message: "upstream down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeARM(t)
			f.mux.Handle("GET "+testWS+"/computes/c1", tt.handler)
			err := (&ComputeTarget{ws: f.workspace(), name: "c1"}).Refresh(context.Background())
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("Refresh error %v is not *Error", err)
			}
			if got.StatusCode != tt.want.StatusCode || got.Code != tt.want.Code || got.Message != tt.want.Message || got.Target != tt.want.Target {
				t.Errorf("Error = %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestBadTokenIsAuthenticationFailed(t *testing.T) {
	f := newFakeARM(t)
	w := f.workspace()
	w.cfg.Token = "wrong"
	_, err := w.Get(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Code != api.CodeAuthenticationFailed || e.StatusCode != 401 {
		t.Errorf("Get with bad token: got %v, want 401 AuthenticationFailed", err)
	}
}

func TestCreateComputeTargetBody(t *testing.T) {
	f := newFakeARM(t)
	var got api.ComputeResource
	f.mux.HandleFunc("PUT "+testWS+"/computes/cpu-cluster", func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("decode PUT body: %v", err)
		}
		w.Header().Set("Azure-AsyncOperation", f.srv.URL+"/op/1?api-version="+api.DefaultAPIVersion)
		w.Header().Set("Retry-After-Ms", "250")
		writeJSON(w, http.StatusCreated, cluster("cpu-cluster", api.ProvisioningCreating, 0, 0))
	})
	ct, err := f.workspace().CreateComputeTarget(context.Background(), "cpu-cluster", AmlComputeProvisioningConfiguration{
		MaxNodes: 4, IdleSecondsBeforeScaledown: 2400, VMPriority: "lowpriority",
		AdminUsername: "azureuser", AdminUserSSHKey: "ssh-ed25519 AAAA", Tags: map[string]string{"team": "ml"},
	})
	if err != nil {
		t.Fatalf("CreateComputeTarget: %v", err)
	}
	if ct.ProvisioningState() != api.ProvisioningCreating || !strings.HasSuffix(ct.OperationURL(), "/op/1?api-version="+api.DefaultAPIVersion) {
		t.Errorf("created target: state %q op %q", ct.ProvisioningState(), ct.OperationURL())
	}
	if ct.retryAfter.Milliseconds() != 250 {
		t.Errorf("retryAfter = %v, want 250ms", ct.retryAfter)
	}
	p := got.Properties
	a := p.Properties
	checks := []struct{ field, got, want string }{
		{"location", *got.Location, "local"},
		{"computeType", string(p.ComputeType), "AmlCompute"},
		{"vmSize", *a.VMSize, "STANDARD_D2_V2"},
		{"vmPriority", *a.VMPriority, "LowPriority"},
		{"idle", *a.ScaleSettings.NodeIdleTimeBeforeScaleDown, "PT40M"},
		{"admin", *a.UserAccountCredentials.AdminUserName, "azureuser"},
		{"tag", got.Tags["team"], "ml"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("PUT %s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if *a.ScaleSettings.MinNodeCount != 0 || *a.ScaleSettings.MaxNodeCount != 4 {
		t.Errorf("PUT scale = %d..%d, want 0..4", *a.ScaleSettings.MinNodeCount, *a.ScaleSettings.MaxNodeCount)
	}
	if a.UserAccountCredentials.AdminUserPassword != nil {
		t.Errorf("PUT sent a password nobody gave")
	}
}

func TestProvisioningConfigurationValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  AmlComputeProvisioningConfiguration
		want string
	}{
		{"no max", AmlComputeProvisioningConfiguration{}, "max nodes count is mandatory"},
		{"min over max", AmlComputeProvisioningConfiguration{MinNodes: 3, MaxNodes: 2}, "more than max nodes"},
		{"bad priority", AmlComputeProvisioningConfiguration{MaxNodes: 1, VMPriority: "spot"}, "vm priority"},
		{"user without secret", AmlComputeProvisioningConfiguration{MaxNodes: 1, AdminUsername: "u"}, "password or an SSH key"},
		{"weak password", AmlComputeProvisioningConfiguration{MaxNodes: 1, AdminUsername: "u", AdminUserPassword: "password"}, "three of"},
		{"bad remote login", AmlComputeProvisioningConfiguration{MaxNodes: 1, RemoteLoginPortPublicAccess: "maybe"}, "remote login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.resource("local")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("resource: got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestUpdateKeepsUnsetSettings(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, cluster("c1", api.ProvisioningSucceeded, 0, 1))
	})
	var got api.ClusterUpdateParameters
	f.mux.HandleFunc("PATCH "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.Header().Set("Azure-AsyncOperation", f.srv.URL+"/op/2")
		writeJSON(w, http.StatusOK, cluster("c1", api.ProvisioningUpdating, 0, 1))
	})
	f.mux.HandleFunc("GET /op/2", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.OperationStatus{Status: api.OperationSucceeded})
	})
	ct := &ComputeTarget{ws: f.workspace(), name: "c1"}
	maxNodes := 8
	if err := ct.Update(context.Background(), nil, &maxNodes, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
	ss := got.Properties.Properties.ScaleSettings
	if *ss.MinNodeCount != 1 || *ss.MaxNodeCount != 8 || *ss.NodeIdleTimeBeforeScaleDown != "PT30M" {
		t.Errorf("PATCH scale = %d..%d idle %s, want 1..8 idle PT30M", *ss.MinNodeCount, *ss.MaxNodeCount, *ss.NodeIdleTimeBeforeScaleDown)
	}
}

func TestDeletePollsOperation(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		ops     []string
		wantErr string
	}{
		{"accepted", http.StatusAccepted, []string{"InProgress", "InProgress", "Succeeded"}, ""},
		{"absent", http.StatusNoContent, nil, ""},
		{"failed", http.StatusAccepted, []string{"InProgress", "Failed"}, "DeleteFailed: nodes stuck"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeARM(t)
			ops := &sequence[string]{vals: append(tt.ops, "unused")}
			f.mux.HandleFunc("DELETE "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
				if got := r.URL.Query().Get("underlyingResourceAction"); got != "Delete" {
					t.Errorf("underlyingResourceAction = %q, want Delete", got)
				}
				if tt.status == http.StatusAccepted {
					w.Header().Set("Azure-AsyncOperation", f.srv.URL+"/op/3")
				}
				w.WriteHeader(tt.status)
			})
			polls := 0
			f.mux.HandleFunc("GET /op/3", func(w http.ResponseWriter, r *http.Request) {
				polls++
				op := api.OperationStatus{Status: ops.next()}
				if op.Status == api.OperationFailed {
					op.Error = &api.OperationStatusError{Code: "DeleteFailed", Message: "nodes stuck"}
				}
				writeJSON(w, http.StatusOK, op)
			})
			err := (&ComputeTarget{ws: f.workspace(), name: "c1"}).Delete(context.Background())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Errorf("Delete: got %v, want %q", err, tt.wantErr)
			}
			if polls != len(tt.ops) {
				t.Errorf("polled %d times, want %d", polls, len(tt.ops))
			}
		})
	}
}

func TestRefusesForeignURLs(t *testing.T) {
	f := newFakeARM(t)
	ct := &ComputeTarget{ws: f.workspace(), name: "c1", opURL: "http://evil.example/op"}
	err := ct.WaitForCompletion(context.Background(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not on endpoint") {
		t.Errorf("WaitForCompletion with a foreign op URL: got %v, want refusal", err)
	}
	if _, err := f.workspace().ComputeTarget(context.Background(), ".."); err == nil || !strings.Contains(err.Error(), "may not be") {
		t.Errorf(`ComputeTarget(".."): got %v, want refusal`, err)
	}
}

func TestTokens(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("POST /kumo/v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req api.TokenCreateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		writeJSON(w, http.StatusCreated, api.TokenCreated{ID: "tok1", Name: req.Name, Role: req.Role, Token: "s3cret"})
	})
	f.mux.HandleFunc("GET /kumo/v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.TokenList{Value: []api.TokenInfo{{ID: "tok1", Name: "ci", Role: api.RoleReader}}})
	})
	f.mux.HandleFunc("DELETE /kumo/v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "tok1" {
			armError(http.StatusNotFound, api.CodeResourceNotFound, "no token")(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ctx := context.Background()
	ws := f.workspace()
	created, err := ws.CreateToken(ctx, "ci", api.RoleReader)
	if err != nil || created.Token != "s3cret" || created.Role != api.RoleReader {
		t.Fatalf("CreateToken = %+v, %v", created, err)
	}
	list, err := ws.Tokens(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "tok1" {
		t.Errorf("Tokens = %+v, %v", list, err)
	}
	if err := ws.RevokeToken(ctx, "tok1"); err != nil {
		t.Errorf("RevokeToken(tok1): %v", err)
	}
	if err := ws.RevokeToken(ctx, "nope"); err == nil {
		t.Errorf("RevokeToken(nope): got nil error")
	}
}

func TestSimulateEviction(t *testing.T) {
	f := newFakeARM(t)
	var got []string
	f.mux.HandleFunc("POST "+testWS+"/computes/c1/simulateEviction", func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Query().Get("nodeId"))
		writeJSON(w, http.StatusAccepted, api.SimulateEvictionResult{NodeIDs: []string{"n1"}})
	})
	ct := &ComputeTarget{ws: f.workspace(), name: "c1"}
	for _, node := range []string{"", "n 1"} {
		ids, err := ct.SimulateEviction(context.Background(), node)
		if err != nil || len(ids) != 1 || ids[0] != "n1" {
			t.Fatalf("SimulateEviction(%q) = %v, %v; want [n1]", node, ids, err)
		}
	}
	if want := []string{"", "n 1"}; !slices.Equal(got, want) {
		t.Errorf("nodeId sent = %q, want %q", got, want)
	}
}

func TestCosts(t *testing.T) {
	f := newFakeARM(t)
	var query string
	f.mux.HandleFunc("GET "+testWS+"/costs", func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.Query().Get("from") + " " + r.URL.Query().Get("to")
		writeJSON(w, http.StatusOK, api.CostReport{Currency: "USD", Total: 1.5})
	})
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	rep, err := f.workspace().Costs(context.Background(), from, from.Add(24*time.Hour))
	if err != nil || rep.Total != 1.5 {
		t.Fatalf("Costs = %+v, %v", rep, err)
	}
	if query != "2026-03-01T00:00:00Z 2026-03-02T00:00:00Z" {
		t.Errorf("from/to sent = %q", query)
	}
}
