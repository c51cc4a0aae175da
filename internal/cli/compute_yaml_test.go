package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/api"
	"kumo/client"
)

const computeFile = `$schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json
name: cpu-cluster
type: amlcompute
size: STANDARD_D2_V2
min_instances: 1
max_instances: 3
idle_time_before_scale_down: 2400
tier: low_priority
location: local
description: team cluster
tags: {team: ml}
ssh_public_access_enabled: true
ssh_settings:
  admin_username: azureuser
  ssh_key_value: ssh-ed25519 AAAA test
  color: blue
identity: {type: system_assigned}
`

func TestParseComputeYAML(t *testing.T) {
	y, unknown, err := parseComputeYAML([]byte(computeFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"identity", "ssh_settings.color"}; !cmp.Equal(unknown, want) {
		t.Errorf("unknown keys = %v, want %v", unknown, want)
	}
	// Flags given on the command line win over the file.
	opts := &ComputeCreateOptions{Size: client.DefaultVMSize, MaxInstances: 9, IdleTimeBeforeScaleDown: 120, Tier: "dedicated",
		Set: map[string]bool{"max-instances": true}}
	y.applyTo(opts)
	got := ComputeCreateOptions{Name: opts.Name, Type: opts.Type, Size: opts.Size, MinInstances: opts.MinInstances,
		MaxInstances: opts.MaxInstances, IdleTimeBeforeScaleDown: opts.IdleTimeBeforeScaleDown, Tier: opts.Tier,
		AdminUsername: opts.AdminUsername, SSHKeyValue: opts.SSHKeyValue, Description: opts.Description,
		Tags: opts.Tags, Location: opts.Location, SSHPublicAccessEnabled: opts.SSHPublicAccessEnabled}
	want := ComputeCreateOptions{Name: "cpu-cluster", Type: "amlcompute", Size: "STANDARD_D2_V2", MinInstances: 1,
		MaxInstances: 9, IdleTimeBeforeScaleDown: 2400, Tier: "low_priority", AdminUsername: "azureuser",
		SSHKeyValue: "ssh-ed25519 AAAA test", Description: "team cluster", Tags: []string{"team=ml"}, Location: "local",
		SSHPublicAccessEnabled: ptr(true)}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(ComputeCreateOptions{}, commonOptions{})); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
}

func TestParseComputeYAMLErrors(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"name: x\n", "type is required"},
		{"type: computeinstance\nname: x\n", `type "computeinstance" is not supported`},
		{"type: amlcompute\nmax_instances: many\n", "cannot unmarshal"},
		{"type: [\n", "yaml"},
	} {
		_, _, err := parseComputeYAML([]byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseComputeYAML(%q) = %v, want an error containing %q", tt.doc, err, tt.want)
		}
	}
}

func TestComputeChanges(t *testing.T) {
	existing := cluster("c", api.ProvisioningSucceeded, 0, 0, 4)
	existing.Properties.Properties.ScaleSettings.NodeIdleTimeBeforeScaleDown = ptr("PT40M")
	tests := []struct {
		name string
		cfg  client.AmlComputeProvisioningConfiguration
		want []fieldChange
	}{
		{"same", client.AmlComputeProvisioningConfiguration{VMSize: "Standard_D2_v2", MaxNodes: 4, IdleSecondsBeforeScaledown: 2400}, nil},
		{"scale", client.AmlComputeProvisioningConfiguration{MaxNodes: 2, IdleSecondsBeforeScaledown: 60, Description: "d"}, []fieldChange{
			{Field: "max_instances", Old: "4", New: "2"},
			{Field: "idle_time_before_scale_down", Old: "2400s", New: "60s"},
			{Field: "description", Old: `""`, New: `"d"`},
		}},
		{"fixed", client.AmlComputeProvisioningConfiguration{VMSize: "Standard_D4_v2", VMPriority: "low_priority", MaxNodes: 4, IdleSecondsBeforeScaledown: 2400}, []fieldChange{
			{Field: "size", Old: "STANDARD_D2_V2", New: "Standard_D4_v2", Fixed: true},
			{Field: "tier", Old: "dedicated", New: "low_priority", Fixed: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := computeChanges(existing, tt.cfg)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			err := checkFixed("c", got)
			if fixed := tt.name == "fixed"; (err != nil) != fixed {
				t.Errorf("checkFixed = %v, want an error %v", err, fixed)
			}
			if err != nil && !strings.Contains(err.Error(), "its size cannot change") {
				t.Errorf("checkFixed = %v, want it to name the size", err)
			}
		})
	}
}
