package cli

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"kumo/api"
	"kumo/client"
)

// JobCreateOptions are the inputs of kumo job create.
type JobCreateOptions struct {
	submitOptions
	// File is the command-job YAML file.
	File string
	// Sets are PATH=VALUE overrides of the file's fields, applied in
	// order, as "az ml job create --set" takes them.
	Sets []string
}

// NewCmdJobCreate returns "kumo job create".
func NewCmdJobCreate(f *Factory, runF func(*JobCreateOptions) error) *cobra.Command {
	opts := &JobCreateOptions{submitOptions: submitOptions{commonOptions: f.options()}}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Submit a command job described by an AML v2 job YAML file",
		Long: `Submit a command job described by an AML v2 command-job YAML file, as for
"az ml job create -f job.yml". kumo reads command, code (a local directory,
relative to the file, uploaded as a snapshot), compute (NAME or azureml:NAME),
environment, environment_variables, literal inputs (substituted into
${{inputs.NAME}}), outputs of type uri_folder (${{outputs.NAME}} becomes the
folder outputs/NAME, kept with the job: kumo job download), resources.instance_count,
distribution, limits.timeout (seconds), name, display_name, experiment_name,
description and tags. It warns about keys it does not use and prints the
job's name.

--set overrides the file's fields by their dotted path, as az ml does:

  kumo job create -f job.yml --set compute=azureml:gpu-cluster \
      --set environment_variables.SEED=2 --set display_name=run-2

--stream follows the job until it ends. ` + streamNote,
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, jobCreateRun),
	}
	cmd.Flags().StringVarP(&opts.File, "file", "f", "", "command-job YAML file (required)")
	cmd.Flags().StringArrayVar(&opts.Sets, "set", nil, "override a field of the file: PATH=VALUE, PATH dotted as in environment_variables.FOO (repeatable)")
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "job name (default: the file's name key, or a generated one)")
	cmd.Flags().BoolVar(&opts.Stream, "stream", false, "follow the job until it ends: queue position and name on stderr, output on stdout; fail unless it completes")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func jobCreateRun(opts *JobCreateOptions) error {
	data, err := os.ReadFile(opts.File)
	if err != nil {
		return err
	}
	jf, err := parseJobYAML(opts.File, data, opts.Sets...)
	if err != nil {
		return err
	}
	for _, w := range jf.Warnings {
		fmt.Fprintf(opts.IO.ErrOut, "Warning: %s\n", w)
	}
	if opts.Name == "" {
		opts.Name = jf.Name
	}
	return submitAndReport(&opts.submitOptions, jf.Spec)
}

// jobFile is a parsed command-job YAML file.
type jobFile struct {
	// Name is the file's name key; "" when absent.
	Name string
	// Spec is the job to submit; Spec.CodeDir is resolved against the
	// file's directory.
	Spec client.CommandJob
	// Warnings name what the file asks for that kumo does not do.
	Warnings []string
}

// jobYAML is the AML v2 command-job schema, the parts kumo reads. Rest
// fields collect the keys it does not know.
type jobYAML struct {
	Schema               string               `yaml:"$schema"`
	Type                 string               `yaml:"type"`
	Name                 string               `yaml:"name"`
	DisplayName          string               `yaml:"display_name"`
	ExperimentName       string               `yaml:"experiment_name"`
	Description          string               `yaml:"description"`
	Tags                 map[string]string    `yaml:"tags"`
	Command              string               `yaml:"command"`
	Code                 string               `yaml:"code"`
	Compute              string               `yaml:"compute"`
	Environment          yaml.Node            `yaml:"environment"`
	EnvironmentVariables map[string]string    `yaml:"environment_variables"`
	Inputs               map[string]yaml.Node `yaml:"inputs"`
	Outputs              map[string]yaml.Node `yaml:"outputs"`
	Resources            struct {
		InstanceCount int            `yaml:"instance_count"`
		Rest          map[string]any `yaml:",inline"`
	} `yaml:"resources"`
	Distribution *struct {
		Type                    string         `yaml:"type"`
		ProcessCountPerInstance int            `yaml:"process_count_per_instance"`
		WorkerCount             int            `yaml:"worker_count"`           // tensorflow
		ParameterServerCount    int            `yaml:"parameter_server_count"` // tensorflow
		Rest                    map[string]any `yaml:",inline"`
	} `yaml:"distribution"`
	Limits struct {
		Timeout int            `yaml:"timeout"` // seconds
		Rest    map[string]any `yaml:",inline"`
	} `yaml:"limits"`
	// Kumo holds kumo's extensions, which AML does not read.
	Kumo *struct {
		CheckpointDir string         `yaml:"checkpoint_dir"` // sets KUMO_CHECKPOINT_DIR
		MaxRetries    int            `yaml:"max_retries"`
		Rest          map[string]any `yaml:",inline"`
	} `yaml:"kumo"`
	Rest map[string]any `yaml:",inline"`
}

// errNonLiteral is the message for inputs kumo cannot pass.
const errNonLiteral = "only literal inputs are supported (a number, string or boolean), not data assets or paths"

// parseJobYAML reads an AML v2 command-job YAML file at path (used for
// messages and to resolve code) with content data, overridden by sets
// (PATH=VALUE, see applySets).
func parseJobYAML(path string, data []byte, sets ...string) (*jobFile, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := applySets(&doc, sets); err != nil {
		return nil, err
	}
	var y jobYAML
	if doc.Kind != 0 {
		if err := doc.Decode(&y); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	jf := &jobFile{Name: y.Name}
	var unknown []string
	for prefix, rest := range map[string]map[string]any{"": y.Rest, "resources.": y.Resources.Rest, "limits.": y.Limits.Rest} {
		for k := range rest {
			unknown = append(unknown, prefix+k)
		}
	}
	if y.Distribution != nil {
		for k := range y.Distribution.Rest {
			unknown = append(unknown, "distribution."+k)
		}
	}
	if y.Kumo != nil {
		for k := range y.Kumo.Rest {
			unknown = append(unknown, "kumo."+k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		jf.Warnings = append(jf.Warnings, fmt.Sprintf("%s: ignoring keys kumo does not support: %s", path, strings.Join(unknown, ", ")))
	}
	if y.Type != "" && !strings.EqualFold(y.Type, "command") {
		return nil, fmt.Errorf("%s: type %q: kumo runs only command jobs", path, y.Type)
	}
	spec := client.CommandJob{
		Command:        strings.TrimSpace(y.Command),
		Compute:        strings.TrimPrefix(y.Compute, "azureml:"),
		Env:            y.EnvironmentVariables,
		InstanceCount:  y.Resources.InstanceCount,
		Timeout:        time.Duration(y.Limits.Timeout) * time.Second,
		DisplayName:    y.DisplayName,
		ExperimentName: y.ExperimentName,
		Description:    y.Description,
		Tags:           y.Tags,
	}
	if spec.Command == "" {
		return nil, fmt.Errorf("%s: command is required", path)
	}
	if k := y.Kumo; k != nil {
		// Reported as what they are: kumo's, not AML's.
		if k.CheckpointDir != "" {
			if spec.Env == nil {
				spec.Env = map[string]string{}
			}
			spec.Env["KUMO_CHECKPOINT_DIR"] = k.CheckpointDir
			jf.Warnings = append(jf.Warnings, fmt.Sprintf("%s: kumo.checkpoint_dir is a kumo extension (AML ignores it): sets KUMO_CHECKPOINT_DIR=%s", path, k.CheckpointDir))
		}
		if k.MaxRetries != 0 {
			spec.MaxRetries = k.MaxRetries
			jf.Warnings = append(jf.Warnings, fmt.Sprintf("%s: kumo.max_retries is a kumo extension (AML ignores it): a failing job is retried up to %d times", path, k.MaxRetries))
		}
	}
	if spec.Compute == "" {
		return nil, fmt.Errorf("%s: compute is required (a cluster's name, azureml:NAME, or local)", path)
	}
	if y.Limits.Timeout < 0 {
		return nil, fmt.Errorf("%s: limits.timeout %d is negative", path, y.Limits.Timeout)
	}
	if y.Code != "" {
		if strings.HasPrefix(y.Code, "azureml:") || strings.Contains(y.Code, "://") {
			return nil, fmt.Errorf("%s: code %q: only a local directory is supported", path, y.Code)
		}
		spec.CodeDir = y.Code
		if !filepath.IsAbs(spec.CodeDir) {
			spec.CodeDir = filepath.Join(filepath.Dir(path), spec.CodeDir)
		}
	}
	switch env := y.Environment; env.Kind {
	case 0:
	case yaml.ScalarNode:
		spec.Environment = env.Value
	case yaml.MappingNode:
		jf.Warnings = append(jf.Warnings, fmt.Sprintf("%s: environment: kumo cannot build an inline environment (image, conda_file, build); the command runs in the node's own environment", path))
	default:
		return nil, fmt.Errorf("%s: environment: want a name such as azureml:NAME:VERSION or a mapping", path)
	}
	if y.Distribution != nil {
		spec.Distribution = &api.Distribution{DistributionType: y.Distribution.Type, ProcessCountPerInstance: y.Distribution.ProcessCountPerInstance,
			WorkerCount: y.Distribution.WorkerCount, ParameterServerCount: y.Distribution.ParameterServerCount}
	}
	if len(y.Inputs) > 0 {
		spec.Inputs = make(map[string]string, len(y.Inputs))
		names := make([]string, 0, len(y.Inputs))
		for k := range y.Inputs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v, err := literalInput(y.Inputs[k])
			if err != nil {
				return nil, fmt.Errorf("%s: input %s: %w", path, k, err)
			}
			spec.Inputs[k] = v
		}
	}
	if len(y.Outputs) > 0 {
		spec.Outputs = make(map[string]api.JobOutput, len(y.Outputs))
		for _, k := range slices.Sorted(maps.Keys(y.Outputs)) {
			o, warn, err := outputFromYAML(y.Outputs[k])
			if err != nil {
				return nil, fmt.Errorf("%s: output %s: %w", path, k, err)
			}
			if warn != "" {
				jf.Warnings = append(jf.Warnings, fmt.Sprintf("%s: output %s: %s", path, k, warn))
			}
			spec.Outputs[k] = o
		}
	}
	jf.Spec = spec
	return jf, nil
}

// outputYAML is a job output as AML v2 YAML writes it.
type outputYAML struct {
	Type        string `yaml:"type"`
	Mode        string `yaml:"mode"`
	Path        string `yaml:"path"`
	Name        string `yaml:"name"`
	Version     string `yaml:"version"`
	Description string `yaml:"description"`
}

// outputFromYAML reads one output: empty, or a mapping of type uri_folder
// and mode rw_mount or upload. It refuses a path (kumo keeps the folder
// with the job) and other types; it warns that name/version (registering
// the output as a data asset) are not done.
func outputFromYAML(n yaml.Node) (api.JobOutput, string, error) {
	if isNull(n) {
		return api.JobOutput{JobOutputType: "uri_folder"}, "", nil
	}
	if n.Kind != yaml.MappingNode {
		return api.JobOutput{}, "", errors.New("want a mapping such as {type: uri_folder, mode: rw_mount}")
	}
	var y outputYAML
	if err := n.Decode(&y); err != nil {
		return api.JobOutput{}, "", err
	}
	if y.Type != "" && !strings.EqualFold(y.Type, "uri_folder") {
		return api.JobOutput{}, "", fmt.Errorf("type %q is not supported: kumo supports uri_folder outputs, a folder kept with the job", y.Type)
	}
	switch strings.ToLower(y.Mode) {
	case "", "rw_mount", "upload":
	default:
		return api.JobOutput{}, "", fmt.Errorf("mode %q is not supported: use rw_mount or upload", y.Mode)
	}
	if y.Path != "" {
		return api.JobOutput{}, "", fmt.Errorf("path %q is not supported: kumo keeps outputs with the job (kumo job download)", y.Path)
	}
	warn := ""
	if y.Name != "" || y.Version != "" {
		warn = "name and version are ignored: kumo does not register outputs as data assets"
	}
	return api.JobOutput{JobOutputType: "uri_folder", Mode: y.Mode}, warn, nil
}

// applySets applies "az ml --set" overrides to the YAML document doc. Each
// is PATH=VALUE: PATH names a field by its keys joined with dots
// (environment_variables.FOO), creating mappings that are missing; VALUE
// is taken as YAML would take it unquoted (2 is a number, azureml:x a
// string), and one starting with { or [ as a YAML flow mapping or list.
func applySets(doc *yaml.Node, sets []string) error {
	for _, set := range sets {
		path, value, ok := strings.Cut(set, "=")
		if !ok || path == "" {
			return fmt.Errorf("--set %q is not PATH=VALUE", set)
		}
		keys := strings.Split(path, ".")
		if slices.Contains(keys, "") {
			return fmt.Errorf("--set %q: the path has an empty key", set)
		}
		if doc.Kind == 0 {
			*doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
		}
		node := doc.Content[0]
		for i, key := range keys {
			if node.Kind != yaml.MappingNode {
				return fmt.Errorf("--set %q: %s is not a mapping", set, strings.Join(keys[:i], "."))
			}
			at := -1
			for j := 0; j+1 < len(node.Content); j += 2 {
				if node.Content[j].Value == key {
					at = j + 1
				}
			}
			next := &yaml.Node{Kind: yaml.MappingNode}
			switch {
			case i == len(keys)-1:
				v, err := setValue(value)
				if err != nil {
					return fmt.Errorf("--set %q: %w", set, err)
				}
				next = v
			case at < 0 || isNull(*node.Content[at]):
			case node.Content[at].Kind == yaml.MappingNode:
				next = node.Content[at]
			default:
				return fmt.Errorf("--set %q: %s is not a mapping", set, strings.Join(keys[:i+1], "."))
			}
			if at >= 0 {
				node.Content[at] = next
			} else {
				node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, next)
			}
			node = next
		}
	}
	return nil
}

// isNull reports whether n is absent or null.
func isNull(n yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// setValue is the YAML node of a --set value.
func setValue(v string) (*yaml.Node, error) {
	if !strings.HasPrefix(v, "{") && !strings.HasPrefix(v, "[") {
		return &yaml.Node{Kind: yaml.ScalarNode, Value: v}, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(v), &doc); err != nil {
		return nil, err
	}
	return doc.Content[0], nil
}

// literalInput returns the value of a literal input, refusing data assets
// ("azureml:NAME:VERSION") and typed inputs ({type: uri_folder, path: ...}).
func literalInput(n yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", errors.New(errNonLiteral)
	}
	if n.Tag == "!!null" {
		return "", errors.New("no value")
	}
	if strings.HasPrefix(n.Value, "azureml:") {
		return "", errors.New(errNonLiteral)
	}
	return n.Value, nil
}
