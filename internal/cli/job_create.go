package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
${{inputs.NAME}}), resources.instance_count, distribution, limits.timeout
(seconds), name, display_name, experiment_name, description and tags. It warns
about keys it does not use and prints the job's name.

` + streamNote,
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, jobCreateRun),
	}
	cmd.Flags().StringVarP(&opts.File, "file", "f", "", "command-job YAML file (required)")
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
	jf, err := parseJobYAML(opts.File, data)
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
	Resources            struct {
		InstanceCount int            `yaml:"instance_count"`
		Rest          map[string]any `yaml:",inline"`
	} `yaml:"resources"`
	Distribution *struct {
		Type                    string         `yaml:"type"`
		ProcessCountPerInstance int            `yaml:"process_count_per_instance"`
		Rest                    map[string]any `yaml:",inline"`
	} `yaml:"distribution"`
	Limits struct {
		Timeout int            `yaml:"timeout"` // seconds
		Rest    map[string]any `yaml:",inline"`
	} `yaml:"limits"`
	Rest map[string]any `yaml:",inline"`
}

// errNonLiteral is the message for inputs kumo cannot pass.
const errNonLiteral = "only literal inputs are supported (a number, string or boolean), not data assets or paths"

// parseJobYAML reads an AML v2 command-job YAML file at path (used for
// messages and to resolve code) with content data.
func parseJobYAML(path string, data []byte) (*jobFile, error) {
	var y jobYAML
	if err := yaml.Unmarshal(data, &y); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
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
		spec.Distribution = &api.Distribution{DistributionType: y.Distribution.Type, ProcessCountPerInstance: y.Distribution.ProcessCountPerInstance}
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
	jf.Spec = spec
	return jf, nil
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
