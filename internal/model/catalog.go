package model

import (
	"math"
	"sort"
	"strings"
)

// VMSize is one entry of the VM size catalog: real Azure size names with
// their shape and an hourly price per priority (USD, Linux).
type VMSize struct {
	Name             string  // canonical case, e.g. "Standard_D2_v2"
	Family           string  // quota family, e.g. "standardDv2Family"
	VCPUs            int     // virtual CPUs
	MemoryGB         float64 // GiB of memory
	GPUs             int     // 0 for CPU sizes
	GPUModel         string  // e.g. "NVIDIA V100 16 GB"; empty for CPU sizes
	PriceDedicated   float64 // USD per hour
	PriceLowPriority float64 // USD per hour
}

// IsGPU reports whether the size has GPUs.
func (s VMSize) IsGPU() bool { return s.GPUs > 0 }

// lowPriorityDiscount is the share of the dedicated price a low-priority
// node costs (Azure advertises up to 80% off).
const lowPriorityDiscount = 0.2

func size(name, family string, vcpus int, mem float64, gpus int, gpuModel string, price float64) VMSize {
	return VMSize{Name: name, Family: family, VCPUs: vcpus, MemoryGB: mem, GPUs: gpus, GPUModel: gpuModel,
		PriceDedicated: price, PriceLowPriority: math.Round(price*lowPriorityDiscount*10000) / 10000}
}

// Catalog is every VM size kumo knows, in a stable order.
var Catalog = []VMSize{
	size("Standard_D2_v2", "standardDv2Family", 2, 7, 0, "", 0.146),
	size("Standard_D3_v2", "standardDv2Family", 4, 14, 0, "", 0.293),
	size("Standard_D4_v2", "standardDv2Family", 8, 28, 0, "", 0.585),
	size("Standard_DS2_v2", "standardDSv2Family", 2, 7, 0, "", 0.146),
	size("Standard_DS3_v2", "standardDSv2Family", 4, 14, 0, "", 0.293),
	size("Standard_DS4_v2", "standardDSv2Family", 8, 28, 0, "", 0.585),
	size("Standard_DS11_v2", "standardDSv2Family", 2, 14, 0, "", 0.185),
	size("Standard_DS12_v2", "standardDSv2Family", 4, 28, 0, "", 0.371),
	size("Standard_D2s_v3", "standardDSv3Family", 2, 8, 0, "", 0.096),
	size("Standard_D4s_v3", "standardDSv3Family", 4, 16, 0, "", 0.192),
	size("Standard_D8s_v3", "standardDSv3Family", 8, 32, 0, "", 0.384),
	size("Standard_F4s_v2", "standardFSv2Family", 4, 8, 0, "", 0.169),
	size("Standard_F8s_v2", "standardFSv2Family", 8, 16, 0, "", 0.338),
	size("Standard_E4ds_v4", "standardEDSv4Family", 4, 32, 0, "", 0.288),
	size("Standard_NC6", "standardNCFamily", 6, 56, 1, "NVIDIA K80 12 GB", 0.90),
	size("Standard_NC6s_v3", "standardNCSv3Family", 6, 112, 1, "NVIDIA V100 16 GB", 3.06),
	size("Standard_NC4as_T4_v3", "standardNCASv3_T4Family", 4, 28, 1, "NVIDIA T4 16 GB", 0.526),
	size("Standard_NC24ads_A100_v4", "standardNCADSA100v4Family", 24, 220, 1, "NVIDIA A100 80 GB", 3.673),
	size("Standard_ND96asr_v4", "standardNDASv4_A100Family", 96, 900, 8, "NVIDIA A100 40 GB", 27.197),
	size("Standard_NC40ads_H100_v5", "standardNCadsH100v5Family", 40, 320, 1, "NVIDIA H100 NVL 94 GB", 6.98),
}

// Host is the capacity a node provider offers for one node: what a single
// VM size must fit into to be offered.
type Host struct {
	VCPUs    float64 // schedulable vCPUs (cores × CPU overcommit ratio)
	MemoryGB float64 // schedulable GiB (memory × memory overcommit ratio)
	GPUs     int     // GPUs on the host
}

// Fits reports whether one node of size s fits on h.
func (h Host) Fits(s VMSize) bool {
	return float64(s.VCPUs) <= h.VCPUs && s.MemoryGB <= h.MemoryGB && s.GPUs <= h.GPUs
}

// Region is a location compute can live in: a name, the node provider that
// serves it, and the VM sizes it offers.
type Region struct {
	Name     string   // e.g. "local"
	Provider string   // node provider name, e.g. "local"
	Sizes    []VMSize // offered sizes, in catalog order
	// Host is the capacity the provider offers for all nodes of the
	// region together; zero when unknown (no limit is reported).
	Host Host
}

// Size finds an offered size by name, case-insensitively.
func (r Region) Size(name string) (VMSize, bool) {
	for _, s := range r.Sizes {
		if strings.EqualFold(s.Name, name) {
			return s, true
		}
	}
	return VMSize{}, false
}

// NewRegion returns a region offering the catalog sizes that fit host.
func NewRegion(name, provider string, host Host) Region {
	r := Region{Name: name, Provider: provider, Host: host}
	for _, s := range Catalog {
		if host.Fits(s) {
			r.Sizes = append(r.Sizes, s)
		}
	}
	return r
}

// Families returns the distinct quota families of the region's sizes,
// sorted.
func (r Region) Families() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range r.Sizes {
		if !seen[s.Family] {
			seen[s.Family] = true
			out = append(out, s.Family)
		}
	}
	sort.Strings(out)
	return out
}

// Default quota limits, in vCPUs, for a workspace that has not set its own:
// per dedicated VM family, and for all low-priority nodes together.
const (
	DefaultDedicatedQuota   = 100
	DefaultLowPriorityQuota = 300
)

// QuotaLimit returns the vCPU limit that applies to a node of size s with
// priority p, given a workspace's stored quotas (missing entries take the
// defaults), and the quota's name.
func QuotaLimit(quotas []Quota, s VMSize, p Priority) (family string, limit int64) {
	family = s.Family
	if p == PriorityLowPriority {
		family = LowPriorityFamily
	}
	return family, FamilyLimit(quotas, family)
}

// FamilyLimit returns a quota family's vCPU limit from a workspace's stored
// quotas, or the default when it has set none.
func FamilyLimit(quotas []Quota, family string) int64 {
	for _, q := range quotas {
		if q.Family == family {
			return q.Limit
		}
	}
	if family == LowPriorityFamily {
		return DefaultLowPriorityQuota
	}
	return DefaultDedicatedQuota
}

// CheckQuota rejects a cluster one node of which could never fit the
// workspace's vCPU quota for its family (or the low-priority quota).
func CheckQuota(quotas []Quota, s VMSize, p Priority) error {
	family, limit := QuotaLimit(quotas, s, p)
	if int64(s.VCPUs) <= limit {
		return nil
	}
	what := "a " + family + " vCPU quota"
	if p == PriorityLowPriority {
		what = "a low-priority vCPU quota"
	}
	e := fieldErr(CodeQuotaExceeded, "properties.properties.vmSize",
		"The workspace has %s of %d, which is less than the requested node count of 1 which maps to %d vCPUs of %s; ask the workspace owner to raise the quota ('kumo compute list-usage' shows it) or pick a smaller properties.properties.vmSize",
		what, limit, s.VCPUs, s.Name)
	e.Info = map[string]any{"family": family, "limit": limit, "requestedVCPUs": s.VCPUs, "vmSize": s.Name}
	return e
}
