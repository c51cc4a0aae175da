package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
	"kumo/internal/model"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlZmF1bHQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAw user@host"

// set changes one dotted path of a JSON-like body.
func set(body map[string]any, path string, v any) map[string]any {
	parts := strings.Split(path, ".")
	m := body
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
	} else {
		m[parts[len(parts)-1]] = v
	}
	return body
}

const (
	pp    = "properties.properties."
	creds = pp + "userAccountCredentials."
)

func TestComputePutRejectsBadInput(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name      string
		compute   string
		edit      func(map[string]any) map[string]any
		raw       string // sent instead of the body when set
		wantCode  string
		wantField string // the message must name it
	}{
		{"name too short", "a", nil, "", "InvalidComputeName", "name"},
		{"name too long", "abcdefghijklmnopq", nil, "", "InvalidComputeName", "name"},
		{"name starts with digit", "1cluster", nil, "", "InvalidComputeName", "name"},
		{"name with underscore", "cpu_cluster", nil, "", "InvalidComputeName", "name"},
		{"name with dot", "cpu.cluster", nil, "", "InvalidComputeName", "name"},
		{"name reserved", "Local", nil, "", "InvalidComputeName", "reserved"},
		{"vmSize missing", "c1", func(b map[string]any) map[string]any { return set(b, pp+"vmSize", nil) }, "", "InvalidParameter", "vmSize"},
		{"vmSize unknown", "c1", func(b map[string]any) map[string]any { return set(b, pp+"vmSize", "Standard_Nope_v9") }, "", "UnsupportedVMSize", "vmSize"},
		{"vmSize not in region", "c1", func(b map[string]any) map[string]any { return set(b, pp+"vmSize", "Standard_ND96asr_v4") }, "", "UnsupportedVMSize", "vmSize"},
		{"vmPriority unknown", "c1", func(b map[string]any) map[string]any { return set(b, pp+"vmPriority", "Spot") }, "", "InvalidParameter", "vmPriority"},
		{"min negative", "c1", func(b map[string]any) map[string]any { return set(b, pp+"scaleSettings.minNodeCount", -1) }, "", "InvalidParameter", "minNodeCount"},
		{"min above max", "c1", func(b map[string]any) map[string]any { return set(b, pp+"scaleSettings.minNodeCount", 5) }, "", "InvalidParameter", "minNodeCount"},
		{"max above limit", "c1", func(b map[string]any) map[string]any { return set(b, pp+"scaleSettings.maxNodeCount", 101) }, "", "InvalidParameter", "maxNodeCount"},
		{"max missing", "c1", func(b map[string]any) map[string]any { return set(b, pp+"scaleSettings.maxNodeCount", nil) }, "", "InvalidParameter", "maxNodeCount"},
		{"scale settings missing", "c1", func(b map[string]any) map[string]any { return set(b, pp+"scaleSettings", nil) }, "", "InvalidParameter", "maxNodeCount"},
		{"idle not ISO-8601", "c1", func(b map[string]any) map[string]any {
			return set(b, pp+"scaleSettings.nodeIdleTimeBeforeScaleDown", "2 minutes")
		}, "", "InvalidParameter", "nodeIdleTimeBeforeScaleDown"},
		{"idle over 7 days", "c1", func(b map[string]any) map[string]any {
			return set(b, pp+"scaleSettings.nodeIdleTimeBeforeScaleDown", "P8D")
		}, "", "InvalidParameter", "nodeIdleTimeBeforeScaleDown"},
		{"idle in months", "c1", func(b map[string]any) map[string]any {
			return set(b, pp+"scaleSettings.nodeIdleTimeBeforeScaleDown", "P1M")
		}, "", "InvalidParameter", "nodeIdleTimeBeforeScaleDown"},
		{"location differs from workspace", "c1", func(b map[string]any) map[string]any { return set(b, "location", "eastus") }, "", "InvalidLocation", "location"},
		{"computeLocation differs", "c1", func(b map[string]any) map[string]any { return set(b, "properties.computeLocation", "westus") }, "", "InvalidLocation", "computeLocation"},
		{"computeType unsupported", "c1", func(b map[string]any) map[string]any { return set(b, "properties.computeType", "Kubernetes") }, "", "UnsupportedComputeType", "computeType"},
		{"computeType missing", "c1", func(b map[string]any) map[string]any { return set(b, "properties.computeType", nil) }, "", "InvalidParameter", "computeType"},
		{"admin without secret", "c1", func(b map[string]any) map[string]any { return set(b, creds+"adminUserName", "azureuser") }, "", "InvalidParameter", "userAccountCredentials"},
		{"password without admin", "c1", func(b map[string]any) map[string]any { return set(b, creds+"adminUserPassword", "Secr3t-Passw0rd!") }, "", "InvalidParameter", "adminUserName"},
		{"admin name reserved", "c1", func(b map[string]any) map[string]any {
			set(b, creds+"adminUserName", "root")
			return set(b, creds+"adminUserPassword", "Secr3t-Passw0rd!")
		}, "", "InvalidParameter", "adminUserName"},
		{"password too short", "c1", func(b map[string]any) map[string]any {
			set(b, creds+"adminUserName", "azureuser")
			return set(b, creds+"adminUserPassword", "Sh0rt!")
		}, "", "InvalidParameter", "adminUserPassword"},
		{"password too simple", "c1", func(b map[string]any) map[string]any {
			set(b, creds+"adminUserName", "azureuser")
			return set(b, creds+"adminUserPassword", "onlylowercaseletters")
		}, "", "InvalidParameter", "adminUserPassword"},
		{"ssh key does not parse", "c1", func(b map[string]any) map[string]any {
			set(b, creds+"adminUserName", "azureuser")
			return set(b, creds+"adminUserSshPublicKey", "ssh-rsa not-base64!! me@host")
		}, "", "InvalidParameter", "adminUserSshPublicKey"},
		{"ssh key type mismatch", "c1", func(b map[string]any) map[string]any {
			set(b, creds+"adminUserName", "azureuser")
			return set(b, creds+"adminUserSshPublicKey", "ssh-rsa "+strings.Fields(testKey)[1])
		}, "", "InvalidParameter", "adminUserSshPublicKey"},
		{"remote login unknown", "c1", func(b map[string]any) map[string]any { return set(b, pp+"remoteLoginPortPublicAccess", "Sometimes") }, "", "InvalidParameter", "remoteLoginPortPublicAccess"},
		{"max of wrong type", "c1", func(b map[string]any) map[string]any { return set(b, pp+"scaleSettings.maxNodeCount", "four") }, "", "InvalidRequestContent", "maxNodeCount"},
		{"body not JSON", "c1", nil, "{not json", "InvalidRequestContent", "JSON"},
		{"body empty", "c1", nil, " ", "InvalidRequestContent", "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any = computeBody("STANDARD_D2_V2", 0, 4)
			if tt.edit != nil {
				body = tt.edit(computeBody("STANDARD_D2_V2", 0, 4))
			}
			if tt.raw != "" {
				body = tt.raw
			}
			status, raw, hdr := h.do("PUT", wsBase+"/computes/"+tt.compute, body, model.RoleContributor)
			if status != 400 {
				t.Fatalf("status = %d, want 400; body %s", status, raw)
			}
			var e api.ErrorResponse
			if err := json.Unmarshal(raw, &e); err != nil || e.Error == nil {
				t.Fatalf("body %s is not an ARM error: %v", raw, err)
			}
			if e.Error.Code != tt.wantCode {
				t.Errorf("code = %q, want %q (message %q)", e.Error.Code, tt.wantCode, e.Error.Message)
			}
			if hdr.Get("x-ms-error-code") != tt.wantCode {
				t.Errorf("x-ms-error-code = %q, want %q", hdr.Get("x-ms-error-code"), tt.wantCode)
			}
			if !strings.Contains(e.Error.Message, tt.wantField) {
				t.Errorf("message %q does not name %q", e.Error.Message, tt.wantField)
			}
			if strings.Contains(e.Error.Message, "Secr3t") || strings.Contains(e.Error.Message, "Sh0rt") {
				t.Errorf("message %q repeats the password", e.Error.Message)
			}
			cs, err := h.st.ComputeList(context.Background(), wsBase, storePageAll)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != 0 {
				t.Errorf("a rejected PUT stored %d computes", len(cs))
			}
		})
	}
}

func TestComputeOverwriteRules(t *testing.T) {
	h := newHarness(t)
	const path = wsBase + "/computes/gpu1"
	create := computeBody("Standard_D2_v2", 0, 2)
	set(create, creds+"adminUserName", "azureuser")
	set(create, creds+"adminUserPassword", "Secr3t-Passw0rd!")
	set(create, creds+"adminUserSshPublicKey", testKey)
	h.mustDo("PUT", path, create, model.RoleContributor, 201, nil)
	h.reconcile()
	before, err := h.st.ComputeGet(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}

	rejected := []struct {
		name, wantField string
		edit            func(map[string]any)
	}{
		{"vmSize", "vmSize", func(b map[string]any) { set(b, pp+"vmSize", "Standard_DS3_v2") }},
		{"priority", "vmPriority", func(b map[string]any) { set(b, pp+"vmPriority", "LowPriority") }},
		{"admin name", "adminUserName", func(b map[string]any) { set(b, creds+"adminUserName", "other") }},
		{"password", "adminUserPassword", func(b map[string]any) { set(b, creds+"adminUserPassword", "An0ther-Passw0rd!") }},
		{"ssh key", "adminUserSshPublicKey", func(b map[string]any) {
			set(b, creds+"adminUserSshPublicKey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG90aGVyLWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDAw u@h")
		}},
	}
	for _, tt := range rejected {
		t.Run(tt.name, func(t *testing.T) {
			body := computeBody("Standard_D2_v2", 0, 2)
			set(body, creds+"adminUserName", "azureuser")
			tt.edit(body)
			status, raw, _ := h.do("PUT", path, body, model.RoleContributor)
			var e api.ErrorResponse
			_ = json.Unmarshal(raw, &e)
			if status != 400 || e.Error == nil || e.Error.Code != "PropertyChangeNotAllowed" {
				t.Fatalf("got %d %s, want 400 PropertyChangeNotAllowed", status, raw)
			}
			if !strings.Contains(e.Error.Message, tt.wantField) || !strings.Contains(e.Error.Message, "cannot change after creation") {
				t.Errorf("message %q should name %q and say it cannot change", e.Error.Message, tt.wantField)
			}
			after, err := h.st.ComputeGet(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("rejected PUT changed the stored compute (-before +after):\n%s", diff)
			}
		})
	}

	// Scale settings may change; credentials omitted or repeated are kept.
	body := computeBody("standard_d2_v2", 1, 3)
	set(body, creds+"adminUserName", "azureuser")
	set(body, creds+"adminUserPassword", "Secr3t-Passw0rd!")
	var got api.ComputeResource
	h.mustDo("PUT", path, body, model.RoleContributor, 200, &got)
	if ss := got.Properties.Properties.ScaleSettings; *ss.MinNodeCount != 1 || *ss.MaxNodeCount != 3 {
		t.Errorf("scale after overwrite = %d..%d, want 1..3", *ss.MinNodeCount, *ss.MaxNodeCount)
	}
	h.reconcile()
	after, err := h.st.ComputeGet(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Credentials != before.Credentials {
		t.Errorf("credentials changed by an overwrite that repeated them")
	}
	if after.State != model.StateSucceeded {
		t.Errorf("state after overwrite and a provisioner pass = %s, want Succeeded", after.State)
	}
}

func TestComputeQuotaRejectsNodeThatCanNeverFit(t *testing.T) {
	h := newHarness(t)
	upd := api.QuotaUpdateParameters{Value: []api.QuotaBaseProperties{{ID: wsBase + "/quotas/standardDSv2Family", Limit: 2}}}
	// A contributor may not change quotas; the owner may.
	if status, _, _ := h.do("POST", "/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/locations/local/updateQuotas", upd, model.RoleContributor); status != 403 {
		t.Fatalf("contributor updateQuotas status = %d, want 403", status)
	}
	h.mustDo("POST", "/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/locations/local/updateQuotas", upd, model.RoleOwner, 200, nil)

	status, raw, _ := h.do("PUT", wsBase+"/computes/big", computeBody("Standard_DS3_v2", 0, 1), model.RoleContributor)
	var e api.ErrorResponse
	_ = json.Unmarshal(raw, &e)
	if status != 400 || e.Error == nil || e.Error.Code != "QuotaExceeded" {
		t.Fatalf("got %d %s, want 400 QuotaExceeded", status, raw)
	}
	for _, want := range []string{"standardDSv2Family", "quota of 2", "4 vCPUs"} {
		if !strings.Contains(e.Error.Message, want) {
			t.Errorf("message %q lacks %q", e.Error.Message, want)
		}
	}
	// A 2-vCPU size of the same family fits.
	h.mustDo("PUT", wsBase+"/computes/small", computeBody("Standard_DS2_v2", 0, 1), model.RoleContributor, 201, nil)

	var q api.QuotaList
	h.mustDo("GET", "/subscriptions/"+testSub+"/providers/Microsoft.MachineLearningServices/locations/local/quotas", nil, model.RoleReader, 200, &q)
	found := false
	for _, v := range q.Value {
		if v.Name.Value == "standardDSv2Family" && strings.HasPrefix(v.ID, wsBase) {
			found = v.Limit == 2
		}
	}
	if !found {
		t.Errorf("quotas list does not show the DSv2 limit of 2: %+v", q.Value)
	}
}
