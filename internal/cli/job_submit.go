package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"kumo/client"
)

// JobSubmitOptions are the inputs of kumo job submit.
type JobSubmitOptions struct {
	submitOptions
	Compute string
	Command string
	// Code is a local directory uploaded as the job's code; "" for none.
	Code string
	// Env and Inputs are KEY=VALUE pairs, one per flag.
	Env    []string
	Inputs []string
	// InstanceCount is the number of nodes; 0 means 1.
	InstanceCount  int
	DisplayName    string
	ExperimentName string
}

// NewCmdJobSubmit returns "kumo job submit".
func NewCmdJobSubmit(f *Factory, runF func(*JobSubmitOptions) error) *cobra.Command {
	opts := &JobSubmitOptions{submitOptions: submitOptions{commonOptions: f.options()}}
	cmd := &cobra.Command{
		Use:   "submit",
		Short: "Submit a command job given by flags",
		Long: `Submit a command job given by flags, without a YAML file, and print its name:

  kumo job submit --compute cpu-cluster --code ./src --command "python train.py" --env SEED=1

--stream follows the job until it ends. ` + streamNote,
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, jobSubmitRun),
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Compute, "compute", "", "compute target: a cluster's name, azureml:NAME, or local (required)")
	fl.StringVar(&opts.Command, "command", "", "shell command to run (required)")
	fl.StringVar(&opts.Code, "code", "", "local directory to upload and run the command in")
	fl.StringArrayVar(&opts.Env, "env", nil, "environment variable as KEY=VALUE (repeatable)")
	fl.StringArrayVar(&opts.Inputs, "input", nil, "literal input as NAME=VALUE, substituted into ${{inputs.NAME}} (repeatable)")
	fl.IntVar(&opts.InstanceCount, "instance-count", 0, "number of nodes (default 1)")
	fl.StringVar(&opts.DisplayName, "display-name", "", "display name")
	fl.StringVar(&opts.ExperimentName, "experiment-name", "", "experiment name")
	fl.StringVarP(&opts.Name, "name", "n", "", "job name (default: a generated one)")
	fl.BoolVar(&opts.Stream, "stream", false, "follow the job until it ends: queue position and name on stderr, output on stdout; fail unless it completes")
	_ = cmd.MarkFlagRequired("compute")
	_ = cmd.MarkFlagRequired("command")
	return cmd
}

func jobSubmitRun(opts *JobSubmitOptions) error {
	env, err := parsePairs("--env", opts.Env)
	if err != nil {
		return err
	}
	inputs, err := parsePairs("--input", opts.Inputs)
	if err != nil {
		return err
	}
	return submitAndReport(&opts.submitOptions, client.CommandJob{
		Command:        opts.Command,
		CodeDir:        opts.Code,
		Compute:        strings.TrimPrefix(opts.Compute, "azureml:"),
		Env:            env,
		Inputs:         inputs,
		InstanceCount:  opts.InstanceCount,
		DisplayName:    opts.DisplayName,
		ExperimentName: opts.ExperimentName,
	})
}

// parsePairs turns KEY=VALUE flag values into a map; the value may hold
// "=" and commas.
func parsePairs(flag string, pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q is not KEY=VALUE", flag, p)
		}
		m[k] = v
	}
	return m, nil
}
