package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
	"kumo/internal/model"
)

func putJob(h *harness, name string, p *api.JobProperties) {
	h.t.Helper()
	p.JobType = "Command"
	if p.ComputeID == "" {
		p.ComputeID = "local"
	}
	h.mustDo("PUT", wsBase+"/jobs/"+name, api.JobResource{Properties: p}, model.RoleContributor, 201, nil)
}

// listJobs follows nextLink from path and returns the names in order and
// the number of pages.
func listJobs(h *harness, path string) ([]string, int) {
	h.t.Helper()
	var names []string
	pages := 0
	for path != "" {
		var l api.JobList
		h.mustDo("GET", path, nil, model.RoleReader, 200, &l)
		pages++
		for _, j := range l.Value {
			names = append(names, j.Name)
		}
		path = strings.TrimPrefix(l.NextLink, h.srv.URL)
	}
	return names, pages
}

func TestJobListNewestFirst(t *testing.T) {
	h := newHarness(t)
	// Names sort the other way round from their submission.
	for i, name := range []string{"e", "d", "c", "b", "a"} {
		putJob(h, name, &api.JobProperties{Command: fmt.Sprintf("echo %d", i)})
	}
	tests := []struct {
		name      string
		query     string
		wantNames []string
		wantPages int
	}{
		{name: "all, over pages of 3", wantNames: []string{"a", "b", "c", "d", "e"}, wantPages: 2},
		{name: "status", query: "status=queued", wantNames: []string{"a", "b", "c", "d", "e"}, wantPages: 2},
		{name: "statuses none match", query: "status=Running,Failed", wantPages: 1},
		{name: "compute", query: "compute=azureml:local", wantNames: []string{"a", "b", "c", "d", "e"}, wantPages: 2},
		{name: "other compute", query: "compute=cpu-cluster", wantPages: 1},
		{name: "top", query: "$top=2", wantNames: []string{"a", "b", "c", "d", "e"}, wantPages: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := wsBase + "/jobs"
			if tt.query != "" {
				path += "?" + tt.query
			}
			names, pages := listJobs(h, path)
			if diff := cmp.Diff(tt.wantNames, names); diff != "" || pages != tt.wantPages {
				t.Errorf("names (-want +got):\n%s\npages %d, want %d", diff, pages, tt.wantPages)
			}
		})
	}

	// A job submitted between pages does not shift the next page.
	var first api.JobList
	h.mustDo("GET", wsBase+"/jobs", nil, model.RoleReader, 200, &first)
	putJob(h, "late", &api.JobProperties{Command: "true"})
	rest, _ := listJobs(h, strings.TrimPrefix(first.NextLink, h.srv.URL))
	if diff := cmp.Diff([]string{"d", "e"}, rest); diff != "" {
		t.Errorf("second page after a new submit (-want +got):\n%s", diff)
	}

	// Queued jobs say where they stand.
	var j api.JobResource
	h.mustDo("GET", wsBase+"/jobs/c", nil, model.RoleReader, 200, &j)
	if j.Properties.QueuePosition != 3 {
		t.Errorf("c's queue position = %d, want 3", j.Properties.QueuePosition)
	}
}

func TestJobListRefusesBadParameters(t *testing.T) {
	h := newHarness(t)
	for _, q := range []string{"status=Done", "$top=0", "$top=x", "$skipToken=abc"} {
		status, body, _ := h.do("GET", wsBase+"/jobs?"+q, nil, model.RoleReader)
		if status != 400 || !strings.Contains(string(body), `"code":"InvalidParameter"`) {
			t.Errorf("GET jobs?%s: %d %s, want 400 InvalidParameter", q, status, body)
		}
	}
}

func TestJobOutputs(t *testing.T) {
	h := newHarness(t)
	var got api.JobResource
	h.mustDo("PUT", wsBase+"/jobs/out", api.JobResource{Properties: &api.JobProperties{JobType: "Command", ComputeID: "local",
		Command: "train --out ${{outputs.model}} --lr ${{inputs.lr}}", Inputs: map[string]*api.JobInput{"lr": {JobInputType: "literal", Value: "0.1"}},
		Outputs: map[string]*api.JobOutput{"model": {JobOutputType: "uri_folder", Mode: "ReadWriteMount"}, "logs": nil}}},
		model.RoleContributor, 201, &got)
	p := got.Properties
	if p.Command != "train --out outputs/model --lr 0.1" {
		t.Errorf("command = %q", p.Command)
	}
	wantEnv := map[string]string{"AZURE_ML_OUTPUT_model": "outputs/model", "AZURE_ML_OUTPUT_logs": "outputs/logs"}
	if diff := cmp.Diff(wantEnv, p.EnvironmentVariables); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}
	wantOut := map[string]*api.JobOutput{
		"model": {JobOutputType: "uri_folder", Mode: "ReadWriteMount", URI: "outputs/model"},
		"logs":  {JobOutputType: "uri_folder", Mode: "ReadWriteMount", URI: "outputs/logs"},
	}
	if diff := cmp.Diff(wantOut, p.Outputs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}

	tests := []struct {
		name    string
		props   api.JobProperties
		wantMsg string
	}{
		{"undeclared", api.JobProperties{Command: "ls ${{outputs.model}}"}, "does not declare: model"},
		{"mlflow", api.JobProperties{Command: "true", Outputs: map[string]*api.JobOutput{"m": {JobOutputType: "mlflow_model"}}}, "supports only uri_folder"},
		{"direct", api.JobProperties{Command: "true", Outputs: map[string]*api.JobOutput{"m": {Mode: "Direct"}}}, `mode \"Direct\"`},
		{"uri", api.JobProperties{Command: "true", Outputs: map[string]*api.JobOutput{"m": {URI: "azureml://datastores/d/paths/p"}}}, "cannot write to"},
		{"bad name", api.JobProperties{Command: "true", Outputs: map[string]*api.JobOutput{"a-b": nil}}, "output name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.props.JobType, tt.props.ComputeID = "Command", "local"
			status, body, _ := h.do("PUT", wsBase+"/jobs/bad", api.JobResource{Properties: &tt.props}, model.RoleContributor)
			if status != 400 || !strings.Contains(string(body), tt.wantMsg) || !strings.Contains(string(body), `"error":{`) {
				t.Errorf("PUT: %d %s, want 400 with %q", status, body, tt.wantMsg)
			}
			if status, _, _ := h.do("GET", wsBase+"/jobs/bad", nil, model.RoleReader); status != 404 {
				t.Errorf("the refused job was stored: GET %d", status)
			}
		})
	}
}
