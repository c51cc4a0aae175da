package daemon

import (
	"strings"
	"testing"
)

func TestParseRegionsErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", ``, "regions: at least one region"},
		{"bad name", "regions:\n- {name: On Prem, provider: fake}", "regions[0].name"},
		{"duplicate", "regions:\n- {name: a, provider: fake}\n- {name: a, provider: fake}", "regions[1].name: region \"a\" is defined twice"},
		{"unknown provider", "regions:\n- {name: a, provider: nope}", "regions[0].provider: unknown provider \"nope\""},
		{"unknown field", "regions:\n- {name: a, provider: fake, colour: blue}", "field colour not found"},
		{"bad capacity", "regions:\n- {name: a, provider: fake, capacity: {vcpus: 0, memory_gb: 1}}", "regions[0].capacity"},
		{"unknown size", "regions:\n- {name: a, provider: fake, sizes: [Standard_Nope]}", "regions[0].sizes[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRegions([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseRegions = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestBuildRegions(t *testing.T) {
	f, err := ParseRegions([]byte(`
regions:
  - name: lab
    provider: fake
    settings: {capacity: 3, boot_delay: 10ms}
    capacity: {vcpus: 4, memory_gb: 16}
    sizes: [standard_d2_v2, Standard_D3_v2]
  - name: nocap
    provider: fake
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildRegion(f.Regions[0], t.TempDir(), nil, hostCapacity(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range b.region.Sizes {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "Standard_D2_v2,Standard_D3_v2" || b.region.Provider != "fake" || b.region.Host.VCPUs != 4 {
		t.Errorf("region lab = %+v (sizes %s), want provider fake, 4 vCPUs, sizes D2_v2 and D3_v2", b.region, got)
	}
	if _, err := buildRegion(f.Regions[1], t.TempDir(), nil, hostCapacity(1, 1)); err == nil || !strings.Contains(err.Error(), "capacity: required") {
		t.Errorf("region without capacity on provider fake: %v, want capacity required", err)
	}
	bad := f.Regions[0]
	bad.Settings = map[string]any{"wings": 2}
	if _, err := buildRegion(bad, t.TempDir(), nil, hostCapacity(1, 1)); err == nil || !strings.Contains(err.Error(), "wings") {
		t.Errorf("unknown setting: %v, want an error naming it", err)
	}
}
