package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"kumo/api"
	"kumo/internal/model"
)

func TestAuthRequiredAndRolesEnforced(t *testing.T) {
	h := newHarness(t)
	path := wsBase + "/computes/c1"
	h.tokens["bogus"] = "kumo_notatoken"
	for _, tt := range []struct {
		role model.Role
		want int
	}{{"", 401}, {"bogus", 401}, {model.RoleReader, 403}} {
		status, raw, _ := h.do("PUT", path, computeBody("Standard_D2_v2", 0, 1), tt.role)
		if status != tt.want {
			t.Errorf("PUT with %q token: status %d, want %d (%s)", tt.role, status, tt.want, raw)
		}
		var e api.ErrorResponse
		if json.Unmarshal(raw, &e) != nil || e.Error == nil || e.Error.Code == "" {
			t.Errorf("PUT with %q token: body %s is not an ARM error", tt.role, raw)
		}
	}
	if status, _, _ := h.do("GET", path, nil, ""); status != 401 {
		t.Errorf("GET without token: %d, want 401", status)
	}
	cs, _ := h.st.ComputeList(context.Background(), wsBase, storePageAll)
	if len(cs) != 0 {
		t.Fatalf("unauthorised PUTs stored %d computes", len(cs))
	}
	// A reader reads; a revoked token stops working at once.
	h.mustDo("PUT", path, computeBody("Standard_D2_v2", 0, 1), model.RoleContributor, 201, nil)
	h.mustDo("GET", path, nil, model.RoleReader, 200, nil)
	if status, _, _ := h.do("POST", "/kumo/v1/tokens", api.TokenCreateRequest{Name: "x", Role: "owner"}, model.RoleContributor); status != 403 {
		t.Errorf("contributor creating a token: %d, want 403", status)
	}
	var list api.TokenList
	h.mustDo("GET", "/kumo/v1/tokens", nil, model.RoleOwner, 200, &list)
	for _, ti := range list.Value {
		if ti.Name == "reader" {
			h.mustDo("DELETE", "/kumo/v1/tokens/"+ti.ID, nil, model.RoleOwner, 204, nil)
		}
	}
	if status, _, _ := h.do("GET", path, nil, model.RoleReader); status != 401 {
		t.Errorf("GET with revoked token: %d, want 401", status)
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), h.tokens[model.RoleOwner]) {
		t.Errorf("token list reveals a secret")
	}
}

func TestComputeLifecycle(t *testing.T) {
	h := newHarness(t)
	path := wsBase + "/computes/cpu-cluster"
	body := computeBody("STANDARD_D2_V2", 0, 4)
	set(body, pp+"vmPriority", "lowpriority")
	set(body, creds+"adminUserName", "azureuser")
	set(body, creds+"adminUserPassword", "Secr3t-Passw0rd!")
	var created api.ComputeResource
	hdr := h.mustDo("PUT", path, body, model.RoleContributor, 201, &created)
	if created.Properties.ProvisioningState != api.ProvisioningCreating {
		t.Errorf("state after PUT = %s, want Creating", created.Properties.ProvisioningState)
	}
	opURL := hdr.Get("Azure-AsyncOperation")
	if !strings.HasPrefix(opURL, h.srv.URL+"/subscriptions/") || hdr.Get("Retry-After-Ms") == "" {
		t.Fatalf("LRO headers: Azure-AsyncOperation %q, Retry-After-Ms %q", opURL, hdr.Get("Retry-After-Ms"))
	}
	opPath := strings.TrimPrefix(opURL, h.srv.URL)
	var op api.OperationStatus
	h.mustDo("GET", opPath, nil, model.RoleReader, 200, &op)
	if op.Status != "InProgress" {
		t.Errorf("op status before provisioning = %s, want InProgress", op.Status)
	}
	h.reconcile()
	h.mustDo("GET", opPath, nil, model.RoleReader, 200, &op)
	if op.Status != "Succeeded" || op.EndTime == "" {
		t.Errorf("op after provisioning = %+v, want Succeeded with endTime", op)
	}

	status, raw, hdr := h.do("GET", path, nil, model.RoleReader)
	if status != 200 {
		t.Fatalf("GET: %d %s", status, raw)
	}
	// Stored normalised; never a password; the keys the v1 SDK indexes are present.
	var generic map[string]any
	_ = json.Unmarshal(raw, &generic)
	props := generic["properties"].(map[string]any)
	for _, k := range []string{"description", "resourceId", "provisioningErrors", "properties", "computeType", "provisioningState"} {
		if _, ok := props[k]; !ok {
			t.Errorf("properties.%s missing from GET", k)
		}
	}
	inner := props["properties"].(map[string]any)
	for _, k := range []string{"vmSize", "vmPriority", "scaleSettings", "subnet"} {
		if _, ok := inner[k]; !ok {
			t.Errorf("properties.properties.%s missing from GET", k)
		}
	}
	if inner["vmSize"] != "Standard_D2_v2" || inner["vmPriority"] != "LowPriority" {
		t.Errorf("vmSize/vmPriority = %v/%v, want canonical Standard_D2_v2/LowPriority", inner["vmSize"], inner["vmPriority"])
	}
	if strings.Contains(string(raw), "Secr3t") || strings.Contains(string(raw), "argon2") {
		t.Errorf("GET leaks the password or its hash: %s", raw)
	}
	stored, _ := h.st.ComputeGet(context.Background(), path)
	if !strings.HasPrefix(stored.Credentials.PasswordHash, "$argon2id$") || strings.Contains(stored.Credentials.PasswordHash, "Secr3t") {
		t.Errorf("stored password is not a slow hash: %q", stored.Credentials.PasswordHash)
	}
	etag := hdr.Get("ETag")

	// PATCH scale settings: 200, takes effect at once.
	patch := map[string]any{"properties": map[string]any{"properties": map[string]any{"scaleSettings": map[string]any{"maxNodeCount": 6, "minNodeCount": 1, "nodeIdleTimeBeforeScaleDown": "PT5M"}}}}
	if status, _, _ := h.do("PATCH", path, map[string]any{"properties": map[string]any{"properties": map[string]any{"scaleSettings": map[string]any{"maxNodeCount": 6, "minNodeCount": 7}}}}, model.RoleContributor); status != 400 {
		t.Errorf("PATCH min > max: %d, want 400", status)
	}
	var patched api.ComputeResource
	h.mustDo("PATCH", path, patch, model.RoleContributor, 200, &patched)
	if ss := patched.Properties.Properties.ScaleSettings; *ss.MaxNodeCount != 6 || *ss.MinNodeCount != 1 || *ss.NodeIdleTimeBeforeScaleDown != "PT5M" {
		t.Errorf("after PATCH scale = %d..%d %s", *ss.MinNodeCount, *ss.MaxNodeCount, *ss.NodeIdleTimeBeforeScaleDown)
	}

	// If-Match with the old ETag fails and changes nothing.
	req, _ := http.NewRequest("PATCH", h.srv.URL+path+"?api-version=2024-04-01", strings.NewReader(`{"properties":{"properties":{"scaleSettings":{"maxNodeCount":9}}}}`))
	req.Header.Set("Authorization", "Bearer "+h.tokens[model.RoleContributor])
	req.Header.Set("If-Match", etag)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 412 {
		t.Errorf("PATCH with stale If-Match: %d, want 412", resp.StatusCode)
	}

	var nodes api.NodeList
	h.mustDo("POST", path+"/listNodes", nil, model.RoleReader, 200, &nodes)
	if nodes.Nodes == nil || len(nodes.Nodes) != 0 || nodes.NextLink != "" {
		t.Errorf("listNodes = %+v, want an empty list and no nextLink", nodes)
	}
	var keys map[string]any
	h.mustDo("POST", path+"/listKeys", nil, model.RoleContributor, 200, &keys)
	if len(keys) != 1 || keys["computeType"] != "AmlCompute" {
		t.Errorf("listKeys = %v, want only computeType", keys)
	}

	// DELETE: 202 with a polling header; the compute disappears after a pass.
	hdr = h.mustDo("DELETE", path, nil, model.RoleContributor, 202, nil)
	delOp := strings.TrimPrefix(hdr.Get("Azure-AsyncOperation"), h.srv.URL)
	if delOp == "" {
		t.Fatal("DELETE 202 without Azure-AsyncOperation")
	}
	if status, _, _ := h.do("PUT", path, computeBody("Standard_D2_v2", 0, 1), model.RoleContributor); status != 409 {
		t.Errorf("PUT while deleting: %d, want 409", status)
	}
	h.reconcile()
	h.mustDo("GET", delOp, nil, model.RoleReader, 200, &op)
	if op.Status != "Succeeded" {
		t.Errorf("delete op = %s, want Succeeded", op.Status)
	}
	h.mustDo("GET", path, nil, model.RoleReader, 404, nil)
	h.mustDo("DELETE", path, nil, model.RoleContributor, 204, nil)
}

func TestComputeListPages(t *testing.T) {
	h := newHarness(t) // page size 3
	var want []string
	for i := range 7 {
		name := fmt.Sprintf("c%02d", i)
		want = append(want, name)
		h.mustDo("PUT", wsBase+"/computes/"+name, computeBody("Standard_D2_v2", 0, 1), model.RoleContributor, 201, nil)
	}
	var got []string
	next := wsBase + "/computes"
	pages := 0
	for next != "" {
		var page api.ComputeList
		h.mustDo("GET", next, nil, model.RoleReader, 200, &page)
		for _, c := range page.Value {
			got = append(got, c.Name)
		}
		pages++
		if page.NextLink != "" && !strings.HasPrefix(page.NextLink, h.srv.URL) {
			t.Fatalf("nextLink %q is not absolute", page.NextLink)
		}
		next = strings.TrimPrefix(page.NextLink, h.srv.URL)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages != 3 {
		t.Errorf("listed %v in %d pages, want %v in 3", got, pages, want)
	}
}

func TestConcurrentCreatesOfOneCompute(t *testing.T) {
	h := newHarness(t)
	const n = 50
	path := wsBase + "/computes/racer"
	type answer struct {
		status int
		res    api.ComputeResource
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, raw, _ := h.do("PUT", path, computeBody("Standard_D2_v2", 0, 3), model.RoleContributor)
			answers[i].status = status
			_ = json.Unmarshal(raw, &answers[i].res)
		}()
	}
	wg.Wait()
	created := 0
	for i, a := range answers {
		switch a.status {
		case 201:
			created++
		case 200:
		default:
			t.Fatalf("caller %d got %d", i, a.status)
		}
		if a.res.Name != "racer" || a.res.ID != path || *a.res.Properties.Properties.VMSize != "Standard_D2_v2" {
			t.Errorf("caller %d got an inconsistent compute: %+v", i, a.res)
		}
	}
	if created != 1 {
		t.Errorf("%d callers were told they created the compute, want exactly 1", created)
	}
	cs, err := h.st.ComputeList(context.Background(), wsBase, storePageAll)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 {
		t.Fatalf("%d computes stored, want 1", len(cs))
	}
	// Every caller's operation settles once the provisioner has run.
	h.reconcile()
	ops, err := h.st.OperationListInProgress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 0 {
		t.Errorf("%d operations still in progress after a pass", len(ops))
	}
}

func TestWorkspaceRoutes(t *testing.T) {
	h := newHarness(t)
	rg := "/subscriptions/" + testSub + "/resourceGroups/rg2/providers/Microsoft.MachineLearningServices"
	body := api.Workspace{Location: "eastus", Tags: map[string]string{"team": "ml"}, Properties: &api.WorkspaceProperties{Description: "second"}}
	h.mustDo("PUT", rg+"/workspaces/team-ws", body, model.RoleContributor, 201, nil)
	if status, _, _ := h.do("PUT", rg+"/workspaces/bad", api.Workspace{Location: "mars"}, model.RoleContributor); status != 400 {
		t.Errorf("workspace in unknown region: %d, want 400", status)
	}
	var got api.Workspace
	h.mustDo("GET", rg+"/workspaces/team-ws", nil, model.RoleReader, 200, &got)
	if got.Location != "eastus" || got.Tags["team"] != "ml" || got.Properties.Description != "second" {
		t.Errorf("workspace = %+v", got)
	}
	// Same names in other resource groups: a subscription-wide list holds
	// every one (page size 3 here), however names repeat.
	for _, g := range []string{"rg3", "rg4", "rg5"} {
		h.mustDo("PUT", "/subscriptions/"+testSub+"/resourceGroups/"+g+"/providers/Microsoft.MachineLearningServices/workspaces/team-ws", body, model.RoleContributor, 201, nil)
	}
	var list api.WorkspaceList
	h.mustDo("GET", "/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/workspaces", nil, model.RoleReader, 200, &list)
	if len(list.Value) != 5 || list.NextLink != "" {
		t.Errorf("subscription lists %d workspaces (nextLink %q), want all 5", len(list.Value), list.NextLink)
	}
	// A compute in the new workspace lands in its region; a workspace with computes cannot be deleted.
	h.mustDo("PUT", rg+"/workspaces/team-ws/computes/gpu", computeBody("Standard_NC6s_v3", 0, 1), model.RoleContributor, 400, nil)
	b := computeBody("Standard_NC6s_v3", 0, 1)
	set(b, "location", nil)
	var c api.ComputeResource
	h.mustDo("PUT", rg+"/workspaces/team-ws/computes/gpu", b, model.RoleContributor, 201, &c)
	if *c.Location != "eastus" {
		t.Errorf("compute location = %s, want the workspace's eastus", *c.Location)
	}
	h.mustDo("DELETE", rg+"/workspaces/team-ws", nil, model.RoleContributor, 409, nil)
	h.mustDo("GET", rg+"/workspaces/nope/computes/x", nil, model.RoleReader, 404, nil)
}
