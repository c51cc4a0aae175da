package model

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Limits of a job request.
const (
	MaxCommandLength = 64 << 10
	MaxJobTimeout    = 21 * 24 * time.Hour // AML's overall job lifetime
)

var (
	jobNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	inputRefRE = regexp.MustCompile(`\$\{\{\s*inputs\.([A-Za-z0-9_]+)\s*\}\}`)
)

// ValidateJobName checks AML's job naming rule: 1 to 255 letters, digits,
// '_' and '-', starting with a letter or digit.
func ValidateJobName(name string) error {
	if !jobNameRE.MatchString(name) {
		return fieldErr("InvalidJobName", "name",
			"job name %s is invalid: use 1 to 255 letters, digits, '_' and '-', starting with a letter or digit", Quote(name))
	}
	return nil
}

// ComputeRef resolves a job's computeId: a compute name, "azureml:NAME",
// or a compute's ARM ID; it returns the compute's name.
func ComputeRef(ref string) (string, error) {
	name := strings.TrimSpace(ref)
	name = strings.TrimPrefix(name, "azureml:")
	if i := strings.LastIndex(strings.ToLower(name), "/computes/"); i >= 0 {
		name = name[i+len("/computes/"):]
	}
	if name == "" {
		return "", fieldErr(CodeInvalidParameter, "properties.computeId", "properties.computeId is required: name the compute target to run on (or \"local\")")
	}
	return name, nil
}

// Limits of a job's environment and labels.
const (
	MaxEnvVars   = 256      // variables per job
	MaxEnvName   = 256      // bytes per variable name
	MaxEnvValue  = 32 << 10 // bytes per variable value
	MaxJobLabel  = 256      // bytes of a display or experiment name
	envFieldName = "properties.environmentVariables"
)

// ValidateJobLabels checks a job's display and experiment names.
func ValidateJobLabels(displayName, experimentName string) error {
	if len(displayName) > MaxJobLabel {
		return fieldErr(CodeInvalidParameter, "properties.displayName", "properties.displayName is longer than %d bytes", MaxJobLabel)
	}
	if len(experimentName) > MaxJobLabel {
		return fieldErr(CodeInvalidParameter, "properties.experimentName", "properties.experimentName is longer than %d bytes", MaxJobLabel)
	}
	return nil
}

// ValidateEnv checks environment variable names and sizes.
func ValidateEnv(env map[string]string) error {
	if len(env) > MaxEnvVars {
		return fieldErr(CodeInvalidParameter, envFieldName, "%s has %d variables: at most %d are allowed", envFieldName, len(env), MaxEnvVars)
	}
	for k, v := range env {
		if len(k) > MaxEnvName {
			return fieldErr(CodeInvalidParameter, envFieldName, "%s has a name longer than %d bytes: %s", envFieldName, MaxEnvName, Quote(k))
		}
		if len(v) > MaxEnvValue {
			return fieldErr(CodeInvalidParameter, envFieldName+"."+k, "%s.%s is longer than %d bytes", envFieldName, k, MaxEnvValue)
		}
		if !envNameRE.MatchString(k) {
			return fieldErr(CodeInvalidParameter, "properties.environmentVariables",
				"properties.environmentVariables has an invalid name %s: use letters, digits and '_', not starting with a digit", Quote(k))
		}
	}
	return nil
}

// secretEnvWords mark an environment variable name as holding a secret.
var secretEnvWords = []string{"PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"}

// SecretEnvName reports whether a job environment variable holds a secret
// by its name: the name contains PASSWORD, SECRET, TOKEN, KEY or
// CREDENTIAL, in any case ("DB_PASSWORD", "hf_token", "AWS_SECRET_ACCESS_KEY").
// The API shows such values only to owners and the token that submitted
// the job; other readers see MaskedValue.
func SecretEnvName(name string) bool {
	up := strings.ToUpper(name)
	for _, w := range secretEnvWords {
		if strings.Contains(up, w) {
			return true
		}
	}
	return false
}

// MaskedValue replaces a secret value shown to a reader who may not see it.
const MaskedValue = "***"

// MaskSecretEnv returns env with the values of secret names (see
// SecretEnvName) replaced by MaskedValue; env itself is not changed.
func MaskSecretEnv(env map[string]string) map[string]string {
	if env == nil {
		return nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		if SecretEnvName(k) {
			v = MaskedValue
		}
		out[k] = v
	}
	return out
}

// SubstituteInputs replaces ${{inputs.NAME}} in command with the literal
// inputs' values; a reference to an input that was not given is an error.
func SubstituteInputs(command string, inputs map[string]string) (string, error) {
	var missing []string
	out := inputRefRE.ReplaceAllStringFunc(command, func(m string) string {
		name := inputRefRE.FindStringSubmatch(m)[1]
		v, ok := inputs[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		sort.Strings(missing)
		return "", fieldErr(CodeInvalidParameter, "properties.inputs",
			"properties.command refers to inputs that properties.inputs does not give: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// ValidateCommand checks a job's command.
func ValidateCommand(cmd string) error {
	if strings.TrimSpace(cmd) == "" {
		return fieldErr(CodeInvalidParameter, "properties.command", "properties.command is required")
	}
	if len(cmd) > MaxCommandLength {
		return fieldErr(CodeInvalidParameter, "properties.command", "properties.command is longer than %d bytes", MaxCommandLength)
	}
	if strings.ContainsRune(cmd, 0) {
		return fieldErr(CodeInvalidParameter, "properties.command", "properties.command contains a NUL byte")
	}
	return nil
}

// ParseJobTimeout parses limits.timeout (ISO-8601), 0 when empty.
func ParseJobTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fieldErr(CodeInvalidParameter, "properties.limits.timeout", "properties.limits.timeout %s is not an ISO-8601 duration such as \"PT1H\": %v", Quote(s), err)
	}
	if d <= 0 || d > MaxJobTimeout {
		return 0, fieldErr(CodeInvalidParameter, "properties.limits.timeout", "properties.limits.timeout %q is out of range: it must be more than 0 and at most 21 days", s)
	}
	return d, nil
}

// ValidateInstanceCount accepts one node per job until gang scheduling.
func ValidateInstanceCount(n int) error {
	if n < 0 {
		return fieldErr(CodeInvalidParameter, "properties.resources.instanceCount", "properties.resources.instanceCount %d is negative", n)
	}
	if n > 1 {
		return fieldErr(CodeInvalidParameter, "properties.resources.instanceCount",
			"properties.resources.instanceCount %d is not supported yet: kumo runs each job on one node (multi-node gang jobs are planned); use 1", n)
	}
	return nil
}

// JobCompute is the ARM ID of the compute a job of workspace wsID names.
func JobCompute(wsID, name string) string {
	return fmt.Sprintf("%s/computes/%s", wsID, name)
}
