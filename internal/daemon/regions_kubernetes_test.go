package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildKubernetesRegion: a kubernetes region as docs/providers.md shows
// it (maps and lists among its settings) builds without reaching the
// cluster, and a bad setting is named.
func TestBuildKubernetesRegion(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tolerations, wantErr string
	}{
		{name: "ok", tolerations: `[{key: kubernetes.azure.com/scalesetpriority, operator: Equal, value: spot, effect: NoSchedule}]`},
		{name: "bad toleration", tolerations: `[{wings: 2}]`, wantErr: "setting spot_tolerations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseRegions([]byte(`
regions:
  - name: k8s
    provider: kubernetes
    settings:
      kubeconfig: ` + kubeconfig + `
      namespace: kumo-nodes
      image: kumo-agent:test
      spot_node_selector: {kubernetes.azure.com/scalesetpriority: spot}
      spot_tolerations: ` + tt.tolerations + `
    capacity: {vcpus: 64, memory_gb: 256, gpus: 8}
`))
			if err != nil {
				t.Fatal(err)
			}
			_, err = buildRegion(f.Regions[0], t.TempDir(), nil, hostCapacity(1, 1))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("buildRegion: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("buildRegion: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
