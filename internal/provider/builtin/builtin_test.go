package builtin

import (
	"testing"

	"kumo/internal/provider"
)

func TestProviders(t *testing.T) {
	tests := []struct {
		name    string
		params  provider.Params
		wantErr bool
	}{
		{name: "fake", params: provider.Params{Settings: map[string]string{"boot_delay": "1s", "capacity": "3", "seed": "7"}}},
		{name: "fake", params: provider.Params{Settings: map[string]string{"bogus": "1"}}, wantErr: true},
		{name: "local", params: provider.Params{Settings: map[string]string{"cpu_overcommit": "2", "argv": `["sleep","1000"]`, "disable_limits": "true"}}},
		{name: "local", params: provider.Params{}, wantErr: true}, // no directory
		{name: "local", params: provider.Params{Settings: map[string]string{"argv": `not json`}}, wantErr: true},
		{name: "kubernetes", params: provider.Params{Settings: map[string]string{"owner": "cp1", "namespace": "Not_A_Name"}}, wantErr: true},
		{name: "kubernetes", params: provider.Params{Settings: map[string]string{"owner": "cp1", "spot_tolerations": `[{"nope":1}]`}}, wantErr: true},
		{name: "sshhosts", params: provider.Params{DataDir: "x", Settings: map[string]string{"hosts": `[]`}}, wantErr: true}, // no hosts
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := Providers[tt.name]
			if !ok {
				t.Fatalf("no provider %q", tt.name)
			}
			if tt.name == "local" && !tt.wantErr {
				tt.params.DataDir = t.TempDir()
			}
			p, err := f(tt.params)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Factory(%+v) = %v, %v; want error %v", tt.params, p, err, tt.wantErr)
			}
		})
	}
}
