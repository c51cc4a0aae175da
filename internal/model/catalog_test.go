package model

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Catalog {
		if seen[strings.ToLower(s.Name)] {
			t.Errorf("Catalog has %s twice", s.Name)
		}
		seen[strings.ToLower(s.Name)] = true
		if s.VCPUs <= 0 || s.MemoryGB <= 0 || s.PriceDedicated <= 0 || s.Family == "" {
			t.Errorf("Catalog entry %+v has a zero shape, price or family", s)
		}
		if s.IsGPU() != (s.GPUModel != "") {
			t.Errorf("%s: IsGPU() = %v but GPUModel = %q", s.Name, s.IsGPU(), s.GPUModel)
		}
		if want := math.Round(s.PriceDedicated*lowPriorityDiscount*10000) / 10000; s.PriceLowPriority != want {
			t.Errorf("%s: PriceLowPriority = %v, want %v", s.Name, s.PriceLowPriority, want)
		}
		if s.Family == LowPriorityFamily {
			t.Errorf("%s: family %q is the low-priority quota's name", s.Name, s.Family)
		}
	}
}

func TestHostFits(t *testing.T) {
	d2 := VMSize{Name: "D2", VCPUs: 2, MemoryGB: 7}
	gpu := VMSize{Name: "NC6", VCPUs: 6, MemoryGB: 56, GPUs: 1}
	tests := []struct {
		host Host
		size VMSize
		want bool
	}{
		{Host{VCPUs: 2, MemoryGB: 7}, d2, true}, // exactly
		{Host{VCPUs: 16, MemoryGB: 64}, d2, true},
		{Host{VCPUs: 1.9, MemoryGB: 64}, d2, false},
		{Host{VCPUs: 16, MemoryGB: 6.9}, d2, false},
		{Host{VCPUs: 16, MemoryGB: 64}, gpu, false}, // no GPU
		{Host{VCPUs: 16, MemoryGB: 64, GPUs: 1}, gpu, true},
		{Host{VCPUs: 16, MemoryGB: 64, GPUs: 4}, d2, true},
		{Host{}, d2, false},
	}
	for _, tt := range tests {
		if got := tt.host.Fits(tt.size); got != tt.want {
			t.Errorf("%+v.Fits(%s) = %v, want %v", tt.host, tt.size.Name, got, tt.want)
		}
	}
}

func sizeNames(sizes []VMSize) []string {
	var names []string
	for _, s := range sizes {
		names = append(names, s.Name)
	}
	return names
}

func TestNewRegion(t *testing.T) {
	tests := []struct {
		name         string
		host         Host
		wantSizes    []string
		wantFamilies []string
	}{
		{"empty host", Host{}, nil, nil},
		{"two cores", Host{VCPUs: 2, MemoryGB: 8}, []string{"Standard_D2_v2", "Standard_DS2_v2", "Standard_D2s_v3"},
			[]string{"standardDSv2Family", "standardDSv3Family", "standardDv2Family"}},
		{"four cores", Host{VCPUs: 4, MemoryGB: 16}, []string{
			"Standard_D2_v2", "Standard_D3_v2", "Standard_DS2_v2", "Standard_DS3_v2", "Standard_DS11_v2",
			"Standard_D2s_v3", "Standard_D4s_v3", "Standard_F4s_v2",
		}, []string{"standardDSv2Family", "standardDSv3Family", "standardDv2Family", "standardFSv2Family"}},
	}
	for _, tt := range tests {
		r := NewRegion("local", "fake", tt.host)
		if r.Name != "local" || r.Provider != "fake" {
			t.Errorf("%s: NewRegion name/provider = %q/%q, want local/fake", tt.name, r.Name, r.Provider)
		}
		if diff := cmp.Diff(tt.wantSizes, sizeNames(r.Sizes)); diff != "" {
			t.Errorf("%s: sizes mismatch (-want +got):\n%s", tt.name, diff)
		}
		if diff := cmp.Diff(tt.wantFamilies, r.Families()); diff != "" {
			t.Errorf("%s: Families() mismatch (-want +got):\n%s", tt.name, diff)
		}
	}

	// A host that fits everything offers the whole catalog, in order.
	all := NewRegion("big", "fake", Host{VCPUs: 1e6, MemoryGB: 1e6, GPUs: 64})
	if diff := cmp.Diff(sizeNames(Catalog), sizeNames(all.Sizes)); diff != "" {
		t.Errorf("big host sizes mismatch (-want +got):\n%s", diff)
	}
}

func TestRegionSize(t *testing.T) {
	r := NewRegion("local", "fake", Host{VCPUs: 4, MemoryGB: 16})
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"Standard_DS3_v2", "Standard_DS3_v2", true},
		{"standard_ds3_v2", "Standard_DS3_v2", true},
		{"STANDARD_D2S_V3", "Standard_D2s_v3", true},
		{"Standard_D8s_v3", "", false}, // in the catalog, not in the region
		{"Standard_Z1", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := r.Size(tt.in)
		if got.Name != tt.want || ok != tt.wantOK {
			t.Errorf("Size(%q) = %q, %v; want %q, %v", tt.in, got.Name, ok, tt.want, tt.wantOK)
		}
	}
}

func TestQuotaLimit(t *testing.T) {
	ds3 := VMSize{Name: "Standard_DS3_v2", Family: "standardDSv2Family", VCPUs: 4}
	quotas := []Quota{
		{WorkspaceID: "ws", Family: "standardDSv2Family", Limit: 8},
		{WorkspaceID: "ws", Family: LowPriorityFamily, Limit: 2},
		{WorkspaceID: "ws", Family: "standardNCFamily", Limit: 0},
	}
	tests := []struct {
		name       string
		quotas     []Quota
		size       VMSize
		priority   Priority
		wantFamily string
		wantLimit  int64
	}{
		{"default dedicated", nil, ds3, PriorityDedicated, "standardDSv2Family", DefaultDedicatedQuota},
		{"default low priority", nil, ds3, PriorityLowPriority, LowPriorityFamily, DefaultLowPriorityQuota},
		{"stored dedicated", quotas, ds3, PriorityDedicated, "standardDSv2Family", 8},
		{"stored low priority", quotas, ds3, PriorityLowPriority, LowPriorityFamily, 2},
		{"other family keeps default", quotas[2:], ds3, PriorityDedicated, "standardDSv2Family", DefaultDedicatedQuota},
		{"stored zero", quotas, VMSize{Family: "standardNCFamily", VCPUs: 6}, PriorityDedicated, "standardNCFamily", 0},
	}
	for _, tt := range tests {
		family, limit := QuotaLimit(tt.quotas, tt.size, tt.priority)
		if family != tt.wantFamily || limit != tt.wantLimit {
			t.Errorf("%s: QuotaLimit = %q, %d; want %q, %d", tt.name, family, limit, tt.wantFamily, tt.wantLimit)
		}
	}
}

func TestCheckQuota(t *testing.T) {
	ds3 := VMSize{Name: "Standard_DS3_v2", Family: "standardDSv2Family", VCPUs: 4}
	tests := []struct {
		name     string
		quotas   []Quota
		priority Priority
		wantErr  bool
		wantText []string // substrings of the message
		wantInfo map[string]any
	}{
		{"default fits", nil, PriorityDedicated, false, nil, nil},
		{"exactly fits", []Quota{{Family: "standardDSv2Family", Limit: 4}}, PriorityDedicated, false, nil, nil},
		{"dedicated too small", []Quota{{Family: "standardDSv2Family", Limit: 3}}, PriorityDedicated, true,
			[]string{"standardDSv2Family", "of 3", "4 vCPUs", "Standard_DS3_v2"},
			map[string]any{"family": "standardDSv2Family", "limit": int64(3), "requestedVCPUs": 4, "vmSize": "Standard_DS3_v2"}},
		{"low priority too small", []Quota{{Family: LowPriorityFamily, Limit: 0}}, PriorityLowPriority, true,
			[]string{"low-priority", "of 0", "4 vCPUs", "Standard_DS3_v2"},
			map[string]any{"family": LowPriorityFamily, "limit": int64(0), "requestedVCPUs": 4, "vmSize": "Standard_DS3_v2"}},
		{"low priority ignores dedicated quota", []Quota{{Family: "standardDSv2Family", Limit: 0}}, PriorityLowPriority, false, nil, nil},
	}
	for _, tt := range tests {
		err := CheckQuota(tt.quotas, ds3, tt.priority)
		if !tt.wantErr {
			if err != nil {
				t.Errorf("%s: CheckQuota error: %v", tt.name, err)
			}
			continue
		}
		fe := wantFieldError(t, tt.name, err, CodeQuotaExceeded, "properties.properties.vmSize")
		if fe == nil {
			continue
		}
		for _, s := range tt.wantText {
			if !strings.Contains(fe.Message, s) {
				t.Errorf("%s: message %q does not contain %q", tt.name, fe.Message, s)
			}
		}
		if diff := cmp.Diff(tt.wantInfo, fe.Info); diff != "" {
			t.Errorf("%s: Info mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}
