package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"kumo/internal/jobuser"
	"kumo/internal/model"
	"kumo/internal/provider"
	"kumo/internal/provider/builtin"
)

// RegionsFile is the document `kumo up --regions` reads; docs/providers.md
// describes it.
type RegionsFile struct {
	Regions []RegionConfig `yaml:"regions"`
}

// RegionConfig is one region of a [RegionsFile].
type RegionConfig struct {
	Name     string `yaml:"name"`     // lower-case letters, digits and '-'; what workspaces' location names
	Provider string `yaml:"provider"` // a name in builtin.Providers
	// Settings are the provider's settings. Scalars reach the provider as
	// their text; lists and maps as JSON. Nil means defaults.
	Settings map[string]any `yaml:"settings"`
	// Capacity is the region's total for providers that cannot tell it
	// themselves (those that are not a provider.Offerer); nil means the
	// provider's own, or no limit reported.
	Capacity *CapacityConfig `yaml:"capacity"`
	// Sizes, if set, restricts the catalog sizes the region offers to
	// these names; nil means every size that fits.
	Sizes []string `yaml:"sizes"`
	// Prices override the catalog's hourly prices (USD) of the named
	// sizes in this region, e.g. 0 for machines already paid for; nil
	// means the catalog's.
	Prices map[string]PriceConfig `yaml:"prices"`
}

// PriceConfig is a size's hourly price per priority; a nil field keeps the
// catalog's.
type PriceConfig struct {
	Dedicated   *float64 `yaml:"dedicated"`
	LowPriority *float64 `yaml:"low_priority"`
}

// CapacityConfig is a region's capacity when its provider cannot tell it.
type CapacityConfig struct {
	VCPUs    float64 `yaml:"vcpus"`
	MemoryGB float64 `yaml:"memory_gb"`
	GPUs     int     `yaml:"gpus"`
}

var regionNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// LoadRegions reads and checks a regions file. Errors name the file and the
// field, e.g. "regions.yaml: regions[1].provider: ...".
func LoadRegions(path string) (*RegionsFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("regions file: %w", err)
	}
	f, err := ParseRegions(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return f, nil
}

// ParseRegions parses and checks a regions document. Unknown fields are
// errors.
func ParseRegions(b []byte) (*RegionsFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f RegionsFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(f.Regions) == 0 {
		return nil, errors.New("regions: at least one region is required")
	}
	seen := map[string]bool{}
	for i, r := range f.Regions {
		field := fmt.Sprintf("regions[%d]", i)
		switch {
		case !regionNameRE.MatchString(r.Name):
			return nil, fmt.Errorf("%s.name: %q is not 1 to 63 lower-case letters, digits and '-'", field, r.Name)
		case seen[r.Name]:
			return nil, fmt.Errorf("%s.name: region %q is defined twice", field, r.Name)
		case builtin.Providers[r.Provider] == nil:
			return nil, fmt.Errorf("%s.provider: unknown provider %q; built-in: %s", field, r.Provider, strings.Join(providerNames(), ", "))
		}
		seen[r.Name] = true
		if c := r.Capacity; c != nil && (c.VCPUs <= 0 || c.MemoryGB <= 0 || c.GPUs < 0) {
			return nil, fmt.Errorf("%s.capacity: vcpus and memory_gb must be positive and gpus not negative", field)
		}
		for j, name := range r.Sizes {
			if _, ok := (model.Region{Sizes: model.Catalog}).Size(name); !ok {
				return nil, fmt.Errorf("%s.sizes[%d]: %q is not a size kumo knows", field, j, name)
			}
		}
		for name, pr := range r.Prices {
			if _, ok := (model.Region{Sizes: model.Catalog}).Size(name); !ok {
				return nil, fmt.Errorf("%s.prices.%s: not a size kumo knows", field, name)
			}
			if pr.Dedicated != nil && *pr.Dedicated < 0 || pr.LowPriority != nil && *pr.LowPriority < 0 {
				return nil, fmt.Errorf("%s.prices.%s: prices must not be negative", field, name)
			}
		}
		if _, err := r.settings(); err != nil {
			return nil, fmt.Errorf("%s.settings: %w", field, err)
		}
	}
	return &f, nil
}

func providerNames() []string {
	var names []string
	for n := range builtin.Providers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// settings flattens the YAML settings to the provider's string map.
func (r RegionConfig) settings() (map[string]string, error) {
	out := make(map[string]string, len(r.Settings))
	for k, v := range r.Settings {
		switch v := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = v
		case bool:
			out[k] = strconv.FormatBool(v)
		case int, int64, uint64, float64:
			out[k] = fmt.Sprint(v)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = string(b)
		}
	}
	return out, nil
}

// builtRegion is a region with its provider.
type builtRegion struct {
	region model.Region
	prov   provider.Provider
}

// buildRegion constructs r's provider through builtin.Providers, with
// defaults (dir, and for local the command line's settings) under r's own
// settings, and the region it serves.
func buildRegion(r RegionConfig, dir string, defaults map[string]string, localHost model.Host) (builtRegion, error) {
	field := "region " + r.Name
	settings, err := r.settings()
	if err != nil {
		return builtRegion{}, fmt.Errorf("%s: settings: %w", field, err)
	}
	for k, v := range defaults {
		if _, ok := settings[k]; !ok {
			settings[k] = v
		}
	}
	p, err := builtin.Providers[r.Provider](provider.Params{DataDir: dir, Settings: settings})
	if err != nil {
		return builtRegion{}, fmt.Errorf("%s: provider %s: %w", field, r.Provider, err)
	}
	var reg model.Region
	switch o, ok := p.(provider.Offerer); {
	case r.Capacity != nil:
		reg = model.NewRegion(r.Name, r.Provider, model.Host{VCPUs: r.Capacity.VCPUs, MemoryGB: r.Capacity.MemoryGB, GPUs: r.Capacity.GPUs})
	case ok:
		t := o.Total()
		reg = model.Region{Name: r.Name, Provider: r.Provider,
			Host: model.Host{VCPUs: float64(t.VCPUs), MemoryGB: float64(t.MemoryMB) / 1024, GPUs: t.GPUs}}
		for _, s := range model.Catalog {
			if o.Offers(provider.Size{Name: s.Name, VCPUs: s.VCPUs, MemoryMB: int64(s.MemoryGB * 1024), GPUs: s.GPUs}) {
				reg.Sizes = append(reg.Sizes, s)
			}
		}
	case r.Provider == "local":
		reg = model.NewRegion(r.Name, r.Provider, localHost)
	default:
		return builtRegion{}, fmt.Errorf("%s: capacity: required for provider %s, which cannot tell its own", field, r.Provider)
	}
	if r.Sizes != nil {
		reg.Sizes = slices.DeleteFunc(reg.Sizes, func(s model.VMSize) bool {
			return !slices.ContainsFunc(r.Sizes, func(n string) bool { return strings.EqualFold(n, s.Name) })
		})
	}
	for i, sz := range reg.Sizes {
		for name, pr := range r.Prices {
			if strings.EqualFold(name, sz.Name) {
				if pr.Dedicated != nil {
					reg.Sizes[i].PriceDedicated = *pr.Dedicated
				}
				if pr.LowPriority != nil {
					reg.Sizes[i].PriceLowPriority = *pr.LowPriority
				}
			}
		}
	}
	if len(reg.Sizes) == 0 {
		return builtRegion{}, fmt.Errorf("%s: offers no size: none of kumo's sizes fits its capacity", field)
	}
	return builtRegion{region: reg, prov: p}, nil
}

// buildRegions returns the regions served and their providers, keyed by
// name: those of o.RegionsFile, and region local built from o's settings
// unless the file defines it. nodeUIDs, if set, is the uid range the local
// provider's nodes' jobs run as.
func (o Options) buildRegions(nodeUIDs *jobuser.Range) (map[string]model.Region, map[string]provider.Provider, error) {
	var cfgs []RegionConfig
	if o.RegionsFile != "" {
		f, err := LoadRegions(o.RegionsFile)
		if err != nil {
			return nil, nil, err
		}
		cfgs = f.Regions
	}
	if !slices.ContainsFunc(cfgs, func(r RegionConfig) bool { return r.Name == DefaultRegion }) {
		cfgs = append(cfgs, RegionConfig{Name: DefaultRegion, Provider: "local"})
	}
	regions := map[string]model.Region{}
	provs := map[string]provider.Provider{}
	for _, r := range cfgs {
		dir, work := filepath.Join(o.DataDir, "regions", r.Name), filepath.Join(o.WorkDir, "regions", r.Name)
		if r.Name == DefaultRegion {
			dir, work = filepath.Join(o.DataDir, "nodes"), filepath.Join(o.WorkDir, "nodes")
		}
		var defaults map[string]string
		if r.Provider == "local" {
			defaults = map[string]string{"work_dir": work,
				"cpu_overcommit":    strconv.FormatFloat(o.CPUOvercommit, 'g', -1, 64),
				"memory_overcommit": strconv.FormatFloat(o.MemoryOvercommit, 'g', -1, 64)}
			if o.EvictionLead > 0 {
				defaults["eviction_lead_time"] = o.EvictionLead.String()
			}
			if o.MeanTimeBetweenEvictions > 0 {
				defaults["eviction_mean_interval"] = o.MeanTimeBetweenEvictions.String()
			}
			if nodeUIDs != nil {
				defaults["job_uid_range"] = nodeUIDs.String()
			}
		}
		b, err := buildRegion(r, dir, defaults, hostCapacity(o.CPUOvercommit, o.MemoryOvercommit))
		if err != nil {
			return nil, nil, err
		}
		regions[r.Name], provs[r.Name] = b.region, b.prov
	}
	return regions, provs, nil
}

// printRegions tells the person who started kumo which regions it serves,
// with each one's provider and sizes.
func printRegions(w io.Writer, regions map[string]model.Region) {
	names := make([]string, 0, len(regions))
	for n := range regions {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := regions[n]
		fmt.Fprintf(w, "Region %q: provider %s, %d sizes (%.0f vCPUs, %.0f GB, %d GPUs in all)\n",
			n, r.Provider, len(r.Sizes), r.Host.VCPUs, r.Host.MemoryGB, r.Host.GPUs)
	}
}
