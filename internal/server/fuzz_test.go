package server_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"kumo/internal/model"
)

// FuzzComputePut sends arbitrary names and bodies to the compute PUT route:
// decoding and validation must never panic or answer 5xx, and every 4xx
// must carry the ARM error body.
func FuzzComputePut(f *testing.F) {
	seeds := []string{
		`{"properties":{"computeType":"AmlCompute","properties":{"vmSize":"Standard_D2_v2","scaleSettings":{"maxNodeCount":2}}}}`,
		`{"location":"local","properties":{"computeType":"amlcompute","properties":{"vmSize":"standard_ds3_v2","vmPriority":"lowpriority","scaleSettings":{"minNodeCount":1,"maxNodeCount":3,"nodeIdleTimeBeforeScaleDown":"PT1H30M"}}}}`,
		`{"properties":{"computeType":"AmlCompute","properties":{"vmSize":"Standard_D2_v2","scaleSettings":{"maxNodeCount":2},"userAccountCredentials":{"adminUserName":"u","adminUserSshPublicKey":"ssh-rsa AAAA"}}}}`,
		`{"properties":{"properties":{"scaleSettings":{"maxNodeCount":1e99,"nodeIdleTimeBeforeScaleDown":"P99999999999999999999D"}}}}`,
		`{"properties":null}`, `[]`, `null`, `{"tags":{"":"x"}}`, `{"properties":{"computeType":"AmlCompute","properties":{"vmSize":"Standard_D2_v2","scaleSettings":{"maxNodeCount":2,"nodeIdleTimeBeforeScaleDown":"PT.S"}}}}`,
	}
	for _, s := range seeds {
		f.Add("c1", []byte(s))
	}
	f.Add("a-very-long-name-indeed", []byte(seeds[0]))
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		h.t = t
		status, raw, _ := h.do("PUT", wsBase+"/computes/"+url.PathEscape(name), string(body), model.RoleContributor)
		if status >= 500 || status == 0 {
			t.Fatalf("PUT %q %q: status %d %s", name, body, status, raw)
		}
		if status >= 400 {
			var e struct {
				Error *struct{ Code, Message string } `json:"error"`
			}
			if json.Unmarshal(raw, &e) != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("PUT %q: %d without an ARM error body: %s", name, status, raw)
			}
		}
	})
}
