package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/api"
	"kumo/client"
)

const (
	testToken = "tok"
	testWS    = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)

// testEnv is a fake server plus a Factory pointing at it.
type testEnv struct {
	mux         *http.ServeMux
	srv         *httptest.Server
	f           *Factory
	out, errOut *bytes.Buffer
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{mux: http.NewServeMux()}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken || r.URL.Query().Get("api-version") == "" {
			writeJSON(w, http.StatusUnauthorized, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeAuthenticationFailed, Message: "bad token"}})
			return
		}
		e.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	e.mux.HandleFunc("GET "+testWS, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Workspace{Name: "ws", Location: "local"})
	})
	io, _, out, errOut := TestIO()
	e.out, e.errOut = out, errOut
	e.f = &Factory{IO: io, Output: OutputTable}
	e.f.Workspace = func() (*client.Workspace, error) {
		return client.New(client.Config{
			Endpoint: e.srv.URL, SubscriptionID: "s", ResourceGroup: "rg", WorkspaceName: "ws", Token: testToken,
		}, client.WithPollInterval(time.Millisecond))
	}
	return e
}

// run runs kumo with args and returns the exit status.
func (e *testEnv) run(args ...string) int {
	return run(context.Background(), newRootCmd(e.f), args, e.f.IO.ErrOut)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func ptr[T any](v T) *T { return &v }

func cluster(name string, state api.ProvisioningState, current, minNodes, maxNodes int32) api.ComputeResource {
	return api.ComputeResource{
		Name: name, Location: ptr("local"),
		Properties: &api.ComputeProperties{
			ComputeType: api.ComputeTypeAmlCompute, ProvisioningState: state,
			Properties: &api.AmlComputeProperties{
				VMSize: ptr("STANDARD_D2_V2"), VMPriority: ptr("Dedicated"),
				ScaleSettings: &api.ScaleSettings{
					MinNodeCount: ptr(minNodes), MaxNodeCount: ptr(maxNodes), NodeIdleTimeBeforeScaleDown: ptr("PT2M"),
				},
				AllocationState:  api.AllocationSteady,
				CurrentNodeCount: current, TargetNodeCount: current,
				NodeStateCounts: &api.NodeStateCounts{IdleNodeCount: current},
			},
		},
	}
}

func TestComputeCreateNoWait(t *testing.T) {
	e := newTestEnv(t)
	var got api.ComputeResource
	e.mux.HandleFunc("GET "+testWS+"/computes/cpu-cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeResourceNotFound, Message: "no cpu-cluster"}})
	})
	e.mux.HandleFunc("PUT "+testWS+"/computes/cpu-cluster", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.Header().Set("Azure-AsyncOperation", e.srv.URL+"/op/1")
		writeJSON(w, http.StatusCreated, cluster("cpu-cluster", api.ProvisioningCreating, 0, 1, 4))
	})
	code := e.run("compute", "create", "--name", "cpu-cluster", "--min-instances", "1", "--max-instances", "4",
		"--idle-time-before-scale-down", "300", "--tier", "low_priority", "--tags", "team=ml,env=dev",
		"--ssh-public-access-enabled=false", "--no-wait")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	a := got.Properties.Properties
	for _, c := range []struct{ name, got, want string }{
		{"vmPriority", *a.VMPriority, "LowPriority"},
		{"idle", *a.ScaleSettings.NodeIdleTimeBeforeScaleDown, "PT5M"},
		{"remote login", *a.RemoteLoginPortPublicAccess, "Disabled"},
		{"tags", got.Tags["team"] + "," + got.Tags["env"], "ml,dev"},
		{"location", *got.Location, "local"},
	} {
		if c.got != c.want {
			t.Errorf("PUT %s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if *a.ScaleSettings.MinNodeCount != 1 || *a.ScaleSettings.MaxNodeCount != 4 {
		t.Errorf("PUT scale = %d..%d, want 1..4", *a.ScaleSettings.MinNodeCount, *a.ScaleSettings.MaxNodeCount)
	}
	want := "NAME         STATE     SIZE            PRIORITY   MIN  MAX  IDLE  NODES   CURRENT  TARGET  QUEUED  RUNNING  ALLOCATION\n" +
		"cpu-cluster  Creating  STANDARD_D2_V2  Dedicated  1    4    120s  [....]  0        0       0       0        Steady\n"
	if got := e.out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

func TestComputeCreateWaits(t *testing.T) {
	e := newTestEnv(t)
	e.mux.HandleFunc("PUT "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Azure-AsyncOperation", e.srv.URL+"/op/1")
		writeJSON(w, http.StatusCreated, cluster("c1", api.ProvisioningCreating, 0, 0, 4))
	})
	e.mux.HandleFunc("GET /op/1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.OperationStatus{Status: api.OperationSucceeded})
	})
	created := false
	e.mux.HandleFunc("GET "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
		if !created {
			created = true // the first GET asks whether c1 exists
			writeJSON(w, http.StatusNotFound, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeResourceNotFound, Message: "no c1"}})
			return
		}
		writeJSON(w, http.StatusOK, cluster("c1", api.ProvisioningSucceeded, 0, 0, 4))
	})
	if code := e.run("compute", "create", "-n", "c1", "-o", "json"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	wantProgress := "SucceededProvisioning operation finished, operation \"Succeeded\"\nSucceeded\n" +
		"AmlCompute wait for completion finished\n\nMinimum number of nodes requested have been provisioned\n"
	if got := e.errOut.String(); got != wantProgress {
		t.Errorf("stderr (progress under -o json):\n%s\nwant:\n%s", got, wantProgress)
	}
	var res api.ComputeResource
	if err := json.Unmarshal(e.out.Bytes(), &res); err != nil || res.Properties.ProvisioningState != api.ProvisioningSucceeded {
		t.Errorf("stdout is not the succeeded compute as JSON: %v\n%s", err, e.out.String())
	}
}

func TestComputeListTable(t *testing.T) {
	e := newTestEnv(t)
	e.mux.HandleFunc("GET "+testWS+"/computes", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "" {
			c := cluster("cpu-cluster", api.ProvisioningSucceeded, 2, 2, 4)
			a := c.Properties.Properties
			a.NodeStateCounts = &api.NodeStateCounts{RunningNodeCount: 1, IdleNodeCount: 1}
			a.QueuedJobCount, a.RunningJobCount = 0, 1
			writeJSON(w, http.StatusOK, api.ComputeList{
				Value:    []api.ComputeResource{c},
				NextLink: e.srv.URL + testWS + "/computes?api-version=2024-04-01&page=2",
			})
			return
		}
		writeJSON(w, http.StatusOK, api.ComputeList{Value: []api.ComputeResource{cluster("gpu", api.ProvisioningCreating, 0, 0, 1)}})
	})
	if code := e.run("compute", "list"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	want := "NAME         STATE      SIZE            PRIORITY   MIN  MAX  IDLE  NODES   CURRENT  TARGET  QUEUED  RUNNING  ALLOCATION\n" +
		"cpu-cluster  Succeeded  STANDARD_D2_V2  Dedicated  2    4    120s  [#o..]  2        2       0       1        Steady\n" +
		"gpu          Creating   STANDARD_D2_V2  Dedicated  0    1    120s  [.]     0        0       0       0        Steady\n"
	if got := e.out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	if got := e.errOut.String(); got != barLegend+"\n" {
		t.Errorf("stderr = %q, want the bar's legend", got)
	}
}

func TestListSizesTable(t *testing.T) {
	e := newTestEnv(t)
	e.mux.HandleFunc("GET /subscriptions/s/providers/Microsoft.MachineLearningServices/locations/local/vmSizes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.VMSizeList{Value: []api.VMSize{
			{Name: "STANDARD_D2_V2", Family: "standardDv2Family", VCPUs: 2, MemoryGB: 7, EstimatedVMPrices: &api.EstimatedVMPrices{
				Values: []api.EstimatedVMPrice{{RetailPrice: 0.146, VMTier: "Standard"}, {RetailPrice: 0.0292, VMTier: "LowPriority"}}}},
			{Name: "STANDARD_NC6", Family: "standardNCFamily", VCPUs: 6, GPUs: 1, MemoryGB: 56},
		}})
	})
	if code := e.run("compute", "list-sizes"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	want := "NAME            TYPE  VCPUS  MEMORY GB  GPUS  FAMILY             DEDICATED $/H  LOW PRIORITY $/H\n" +
		"STANDARD_D2_V2  CPU   2      7          0     standardDv2Family  0.146          0.029\n" +
		"STANDARD_NC6    GPU   6      56         1     standardNCFamily   -              -\n"
	if got := e.out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

func TestErrorsExitNonZero(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"server error", []string{"compute", "show", "--name", "nope"}, "Error: ResourceNotFound: compute nope does not exist\n"},
		{"bad output", []string{"compute", "list", "-o", "xml"}, "Error: --output must be one of table, json, yaml, tsv, not \"xml\"\n"},
		{"bad query", []string{"compute", "list", "--query", "[?"}, "--query \"[?\" is not a valid JMESPath expression"},
		{"missing name", []string{"compute", "show"}, "Error: a compute name is required: kumo compute show NAME (or --name NAME)\n"},
		{"unknown command", []string{"compute", "lst"}, "Error: unknown command \"lst\" for \"kumo compute\"\n\nDid you mean this?\n\tlist\n"},
		{"bad tier", []string{"compute", "create", "-n", "x", "--tier", "spot"}, "Error: --tier must be dedicated or low_priority, not \"spot\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.mux.HandleFunc("GET "+testWS+"/computes/nope", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusNotFound, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeResourceNotFound, Message: "compute nope does not exist"}})
			})
			if code := e.run(tt.args...); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if got := e.errOut.String(); !strings.Contains(got, tt.wantErr) {
				t.Errorf("stderr = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestTokenCreatePrintsSecretOnce(t *testing.T) {
	e := newTestEnv(t)
	e.mux.HandleFunc("POST /kumo/v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req api.TokenCreateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		writeJSON(w, http.StatusCreated, api.TokenCreated{ID: "t1", Name: req.Name, Role: req.Role, Token: "kumo_secret"})
	})
	if code := e.run("token", "create", "--name", "ci", "--role", "contributor"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	if got := e.out.String(); got != "kumo_secret\n" {
		t.Errorf("stdout = %q, want the secret alone", got)
	}
	if !strings.Contains(e.errOut.String(), "role contributor") {
		t.Errorf("stderr = %q, want a notice naming the role", e.errOut.String())
	}
}

func TestComputeUpdateFlagsToOptions(t *testing.T) {
	tests := []struct {
		args          []string
		wantMin       *int
		wantMax, idle *int
	}{
		{[]string{"--name", "c", "--max-instances", "8"}, nil, ptr(8), nil},
		{[]string{"--name", "c", "--min-instances", "0", "--idle-time-before-scale-down", "60"}, ptr(0), nil, ptr(60)},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			e := newTestEnv(t)
			var got *ComputeUpdateOptions
			cmd := NewCmdComputeUpdate(e.f, func(o *ComputeUpdateOptions) error { got = o; return nil })
			cmd.SetArgs(tt.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			eq := func(a, b *int) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
			if !eq(got.MinInstances, tt.wantMin) || !eq(got.MaxInstances, tt.wantMax) || !eq(got.IdleTimeBeforeScaleDown, tt.idle) {
				t.Errorf("options = min %v max %v idle %v", got.MinInstances, got.MaxInstances, got.IdleTimeBeforeScaleDown)
			}
		})
	}
}

func TestLoginWritesConfig(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("ca.pem", []byte("not used"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t)
	path := filepath.Join(dir, ".kumo", "config.json")
	for _, bad := range [][]string{
		{"--ca-file", "ca.pem"},                           // the CA file is not PEM
		{"--token", "wrong"},                              // the server refuses the token
		{"--endpoint", "http://192.0.2.1:8443"},           // plain http off loopback
		{"--endpoint", "https://127.0.0.1:1", "-w", "ws"}, // nothing listens there
	} {
		args := append([]string{"login", "--endpoint", e.srv.URL, "--token", testToken, "--subscription", "s", "-g", "rg", "-w", "ws"}, bad...)
		e.errOut.Reset()
		if code := e.run(args...); code != 1 {
			t.Errorf("login %v: exit %d, want 1", bad, code)
		}
		if _, err := os.Stat(path); err == nil {
			t.Fatalf("login %v wrote %s", bad, path)
		}
	}
	e.errOut.Reset()
	if code := e.run("login", "--endpoint", e.srv.URL, "--token", testToken, "--subscription", "s", "-g", "rg", "-w", "ws"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode = %o, want 600", fi.Mode().Perm())
	}
	cfg, err := client.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := client.Config{Endpoint: e.srv.URL, SubscriptionID: "s", ResourceGroup: "rg", WorkspaceName: "ws", Token: testToken}
	if cfg != want {
		t.Errorf("config = %+v, want %+v", cfg, want)
	}
	// The default Factory now finds it from a subdirectory, and -w
	// overrides its workspace.
	if err := os.Mkdir("sub", 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(dir, "sub"))
	ws, err := NewFactory().Workspace()
	if err != nil || ws.Name() != "ws" {
		t.Errorf("NewFactory().Workspace() = %v, %v; want workspace ws", ws, err)
	}
	f := NewFactory()
	f.WorkspaceName, f.ResourceGroup = "other", "rg2"
	if ws, err := f.Workspace(); err != nil || ws.Name() != "other" || ws.ResourceGroup() != "rg2" {
		t.Errorf("with -w other -g rg2: %v, %v", ws, err)
	}
}

func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		endpoint string
		ok       bool
	}{
		{"https://kumo.example:8443", true},
		{"http://127.0.0.1:8443", true},
		{"http://[::1]:8443", true},
		{"http://localhost:8443", true},
		{"http://10.0.0.5:8443", false},
		{"http://kumo.example", false},
		{"ftp://127.0.0.1", false},
		{"127.0.0.1:8443", false},
	}
	for _, tt := range tests {
		if err := checkEndpoint(tt.endpoint); (err == nil) != tt.ok {
			t.Errorf("checkEndpoint(%q) = %v, want ok %v", tt.endpoint, err, tt.ok)
		}
	}
}

func TestComputeSimulateEviction(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		status   int
		body     any
		wantCode int
		wantOut  string
		wantErr  string
		wantNode string
	}{
		{"all nodes", []string{"--name", "c1"}, 202, api.SimulateEvictionResult{NodeIDs: []string{"n1", "n2"}}, 0, "evicting n1, n2\n", "", ""},
		{"one node", []string{"c1", "--node-id", "n2"}, 202, api.SimulateEvictionResult{NodeIDs: []string{"n2"}}, 0, "evicting n2\n", "", "n2"},
		{"dedicated", []string{"--name", "c1"}, 409, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeOperationNotAllowed,
			Message: `compute "c1" is Dedicated: only the nodes of a LowPriority cluster can be evicted`}}, 1, "", "only the nodes of a LowPriority cluster can be evicted", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.mux.HandleFunc("GET "+testWS+"/computes/c1", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, cluster("c1", api.ProvisioningSucceeded, 0, 0, 2))
			})
			var node string
			e.mux.HandleFunc("POST "+testWS+"/computes/c1/simulateEviction", func(w http.ResponseWriter, r *http.Request) {
				node = r.URL.Query().Get("nodeId")
				writeJSON(w, tt.status, tt.body)
			})
			code := e.run(append([]string{"compute", "simulate-eviction"}, tt.args...)...)
			if (code != 0) != (tt.wantCode != 0) || !strings.Contains(e.errOut.String(), tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, e.errOut.String(), tt.wantCode, tt.wantErr)
			}
			if got := e.out.String(); got != tt.wantOut || node != tt.wantNode {
				t.Errorf("stdout %q, nodeId %q; want %q, %q", got, node, tt.wantOut, tt.wantNode)
			}
		})
	}
}

func TestComputeListUsageCost(t *testing.T) {
	e := newTestEnv(t)
	var query string
	e.mux.HandleFunc("GET "+testWS+"/costs", func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		writeJSON(w, http.StatusOK, api.CostReport{Currency: "USD", From: "2026-03-01T00:00:00Z", To: "2026-03-02T00:00:00Z", Total: 0.51,
			Computes: []api.ComputeCostLine{{Name: "ded", NodeHours: 3, Cost: 0.44}, {Name: "spot", NodeHours: 2.5, Cost: 0.07}},
			Jobs:     []api.JobCostLine{{Name: "train", Compute: "spot", NodeHours: 1.5, Cost: 0.04}}})
	})
	if code := e.run("compute", "list-usage", "--cost", "--from", "2026-03-01T00:00:00Z", "--to", "2026-03-02T00:00:00Z"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut.String())
	}
	if !strings.Contains(query, "from=2026-03-01T00%3A00%3A00Z") || !strings.Contains(query, "to=2026-03-02") {
		t.Errorf("query = %q", query)
	}
	for _, want := range []string{": $0.51 (USD, catalog prices)\n", "ded      3.00        $0.44\n", "train  spot     1.50        $0.04\n"} {
		if !strings.Contains(e.out.String(), want) {
			t.Errorf("stdout:\n%s\nwant %q", e.out.String(), want)
		}
	}
	if code := e.run("compute", "list-usage", "--from", "2026-03-01T00:00:00Z"); code == 0 {
		t.Errorf("--from without --cost: exit 0")
	}
	if code := e.run("compute", "list-usage", "--cost", "--from", "yesterday"); code == 0 || !strings.Contains(e.errOut.String(), "RFC 3339") {
		t.Errorf("bad --from: exit %d, stderr %q", code, e.errOut.String())
	}
}
