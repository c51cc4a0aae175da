package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
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
		{"price of unknown size", "regions:\n- {name: a, provider: fake, prices: {Standard_Nope: {dedicated: 1}}}", "regions[0].prices.Standard_Nope"},
		{"negative price", "regions:\n- {name: a, provider: fake, prices: {Standard_D2_v2: {dedicated: -1}}}", "regions[0].prices.Standard_D2_v2: prices must not be negative"},
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
    prices: {standard_d2_v2: {dedicated: 0}}
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
	if d2, _ := b.region.Size("Standard_D2_v2"); d2.PriceDedicated != 0 || d2.PriceLowPriority == 0 {
		t.Errorf("Standard_D2_v2 prices = %v dedicated, %v low priority; want 0 (set) and the catalog's", d2.PriceDedicated, d2.PriceLowPriority)
	}
	if _, err := buildRegion(f.Regions[1], t.TempDir(), nil, hostCapacity(1, 1)); err == nil || !strings.Contains(err.Error(), "capacity: required") {
		t.Errorf("region without capacity on provider fake: %v, want capacity required", err)
	}
	ssh, err := ParseRegions([]byte(`
regions:
  - name: onprem
    provider: sshhosts
    settings:
      hosts:
        - {name: h1, address: 10.0.0.5, user: kumo, key_file: /nonexistent, vcpus: 4, memory_gb: 8}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildRegion(ssh.Regions[0], t.TempDir(), nil, hostCapacity(1, 1)); err == nil || !strings.Contains(err.Error(), "region onprem: provider sshhosts: hosts[0].host_key: required") {
		t.Errorf("sshhosts region without a host key: %v, want the field named", err)
	}
	bad := f.Regions[0]
	bad.Settings = map[string]any{"wings": 2}
	if _, err := buildRegion(bad, t.TempDir(), nil, hostCapacity(1, 1)); err == nil || !strings.Contains(err.Error(), "wings") {
		t.Errorf("unknown setting: %v, want an error naming it", err)
	}
}

// TestBuildRegionsFromHosts: a region of SSH hosts offers the catalog sizes
// that fit on one of its hosts, and reports their total.
func TestBuildRegionsFromHosts(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	f, err := ParseRegions([]byte(fmt.Sprintf(`
regions:
  - name: onprem
    provider: sshhosts
    settings:
      hosts:
        - {name: big, address: 10.0.0.5, user: kumo, key_file: %[1]s, host_key: %[2]q, vcpus: 4, memory_gb: 16}
        - {name: small, address: 10.0.0.6, user: kumo, key_file: %[1]s, host_key: %[2]q, vcpus: 2, memory_gb: 8}
`, key, hostKey)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildRegion(f.Regions[0], t.TempDir(), nil, hostCapacity(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if h := b.region.Host; h.VCPUs != 6 || h.MemoryGB != 24 {
		t.Errorf("region capacity = %+v, want 6 vCPUs, 24 GB", h)
	}
	if _, ok := b.region.Size("Standard_D3_v2"); !ok {
		t.Errorf("Standard_D3_v2 (4 vCPUs, 14 GB) not offered; it fits on host big")
	}
	if _, ok := b.region.Size("Standard_D4_v2"); ok {
		t.Errorf("Standard_D4_v2 (8 vCPUs) offered; it fits on no host")
	}
}
