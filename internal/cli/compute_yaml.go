package cli

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// computeYAML is the AML v2 compute YAML schema for type amlcompute
// (amlCompute.schema.json), the parts kumo reads. Pointer fields are nil
// when the file leaves them out. Rest collects the keys kumo does not know.
type computeYAML struct {
	Schema                  string            `yaml:"$schema"`
	Name                    string            `yaml:"name"`
	Type                    string            `yaml:"type"`
	Description             *string           `yaml:"description"`
	Tags                    map[string]string `yaml:"tags"`
	Location                *string           `yaml:"location"`
	Size                    *string           `yaml:"size"`
	MinInstances            *int              `yaml:"min_instances"`
	MaxInstances            *int              `yaml:"max_instances"`
	IdleTimeBeforeScaleDown *int              `yaml:"idle_time_before_scale_down"` // seconds
	Tier                    *string           `yaml:"tier"`
	SSHPublicAccessEnabled  *bool             `yaml:"ssh_public_access_enabled"`
	SSHSettings             *struct {
		AdminUsername string         `yaml:"admin_username"`
		AdminPassword string         `yaml:"admin_password"`
		SSHKeyValue   string         `yaml:"ssh_key_value"`
		Rest          map[string]any `yaml:",inline"`
	} `yaml:"ssh_settings"`
	Rest map[string]any `yaml:",inline"`
}

// readComputeFile reads the compute YAML file at path, writing a warning
// to warn for keys kumo does not use.
func readComputeFile(path string, warn io.Writer) (*computeYAML, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read compute file: %w", err)
	}
	y, unknown, err := parseComputeYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(unknown) > 0 {
		fmt.Fprintf(warn, "Warning: %s: ignoring keys kumo does not support: %s\n", path, escapeControl(strings.Join(unknown, ", ")))
	}
	return y, nil
}

// parseComputeYAML parses an AML v2 compute YAML document and lists the
// keys it ignores, sorted.
func parseComputeYAML(data []byte) (*computeYAML, []string, error) {
	var y computeYAML
	if err := yaml.Unmarshal(data, &y); err != nil {
		return nil, nil, err
	}
	if y.Type == "" {
		return nil, nil, fmt.Errorf("type is required: kumo creates type: amlcompute")
	}
	if !strings.EqualFold(y.Type, "amlcompute") {
		return nil, nil, fmt.Errorf("type %q is not supported: kumo creates type: amlcompute", y.Type)
	}
	var unknown []string
	for k := range y.Rest {
		unknown = append(unknown, k)
	}
	if y.SSHSettings != nil {
		for k := range y.SSHSettings.Rest {
			unknown = append(unknown, "ssh_settings."+k)
		}
	}
	sort.Strings(unknown)
	return &y, unknown, nil
}

// applyTo fills the options that the command line did not set with the
// file's values.
func (y *computeYAML) applyTo(o *ComputeCreateOptions) {
	str := func(flag string, dst *string, v *string) {
		if v != nil && !o.Set[flag] {
			*dst = *v
		}
	}
	num := func(flag string, dst *int, v *int) {
		if v != nil && !o.Set[flag] {
			*dst = *v
		}
	}
	if y.Name != "" && !o.Set["name"] {
		o.Name = y.Name
	}
	if !o.Set["type"] {
		o.Type = y.Type
	}
	str("description", &o.Description, y.Description)
	str("location", &o.Location, y.Location)
	str("size", &o.Size, y.Size)
	str("tier", &o.Tier, y.Tier)
	num("min-instances", &o.MinInstances, y.MinInstances)
	num("max-instances", &o.MaxInstances, y.MaxInstances)
	num("idle-time-before-scale-down", &o.IdleTimeBeforeScaleDown, y.IdleTimeBeforeScaleDown)
	if y.SSHPublicAccessEnabled != nil && !o.Set["ssh-public-access-enabled"] {
		v := *y.SSHPublicAccessEnabled
		o.SSHPublicAccessEnabled = &v
	}
	if s := y.SSHSettings; s != nil {
		str("admin-username", &o.AdminUsername, &s.AdminUsername)
		str("admin-password", &o.AdminPassword, &s.AdminPassword)
		str("ssh-key-value", &o.SSHKeyValue, &s.SSHKeyValue)
	}
	if len(y.Tags) > 0 && !o.Set["tags"] {
		o.Tags = nil
		for _, k := range sortedKeys(y.Tags) {
			o.Tags = append(o.Tags, k+"="+y.Tags[k])
		}
	}
}
