package model

import (
	"fmt"
	"path/filepath"
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
	jobNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// bindingRE matches ${{inputs.NAME}} and ${{outputs.NAME}}.
	bindingRE     = regexp.MustCompile(`\$\{\{\s*(inputs|outputs)\.([A-Za-z0-9_]+)\s*\}\}`)
	bindingNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)
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
	if _, err := CheckpointDir(env); err != nil {
		return err
	}
	return nil
}

// CheckpointEnv names the job environment variable that names a job's
// checkpoint directory, relative to its working directory: its contents are
// saved when an attempt ends (for any reason, after the lead time on an
// eviction) and restored before the next attempt starts. The job sees the
// variable set to the directory's absolute path.
const CheckpointEnv = "KUMO_CHECKPOINT_DIR"

// CheckpointDir returns the checkpoint directory env names (cleaned,
// relative to the job's working directory), or "" when it names none. A
// path that leaves the job's directory, or is outputs/ or logs/ or inside
// them (already kept as artifacts), is refused.
func CheckpointDir(env map[string]string) (string, error) {
	v, ok := env[CheckpointEnv]
	if !ok || v == "" {
		return "", nil
	}
	field := envFieldName + "." + CheckpointEnv
	c := filepath.Clean(v)
	if !filepath.IsLocal(c) || c == "." || strings.ContainsRune(c, 0) {
		return "", fieldErr(CodeInvalidParameter, field, "%s must be a directory inside the job's working directory, like \"checkpoints\"; got %s", field, Quote(v))
	}
	first, _, _ := strings.Cut(c, "/")
	if first == OutputsDir || first == "logs" || first == "user_logs" {
		return "", fieldErr(CodeInvalidParameter, field, "%s may not be in %s/: that folder is kept already", field, first)
	}
	return c, nil
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

// Job outputs. kumo supports AML's default output, a uri_folder: a folder
// the command writes and kumo keeps with the job's artifacts.
const (
	// OutputsDir is the folder of the job's working directory that holds
	// its outputs; it is collected with the job's artifacts.
	OutputsDir = "outputs"
	// OutputEnvPrefix starts the environment variable that, as in AML,
	// gives the command each output's path: AZURE_ML_OUTPUT_<NAME>. The
	// node creates the folder such a variable names before the command
	// starts.
	OutputEnvPrefix = "AZURE_ML_OUTPUT_"
)

// OutputPath is where output name lives, relative to the job's working
// directory: "outputs/NAME".
func OutputPath(name string) string { return OutputsDir + "/" + name }

// Output types and modes kumo accepts, in AML's REST and YAML spellings.
var (
	outputTypes = []string{"uri_folder", "UriFolder"}
	outputModes = []string{"rw_mount", "upload", "ReadWriteMount", "Upload"}
)

// ValidateOutput checks output name of type typ and mode mode (either
// empty for the default: uri_folder, rw_mount).
func ValidateOutput(name, typ, mode string) error {
	field := "properties.outputs." + name
	if !bindingNameRE.MatchString(name) {
		return fieldErr(CodeInvalidParameter, field, "output name %q is invalid: use letters, digits and '_'", name)
	}
	if typ != "" && !foldIn(typ, outputTypes) {
		return fieldErr(CodeInvalidParameter, field+".jobOutputType",
			"output %s has type %q: kumo supports only uri_folder outputs (a folder under outputs/ kept with the job)", name, typ)
	}
	if mode != "" && !foldIn(mode, outputModes) {
		return fieldErr(CodeInvalidParameter, field+".mode",
			"output %s has mode %q: kumo supports rw_mount and upload (both write a folder kept with the job)", name, mode)
	}
	return nil
}

func foldIn(s string, set []string) bool {
	for _, v := range set {
		if strings.EqualFold(s, v) {
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

// SubstituteBindings replaces ${{inputs.NAME}} in command with the literal
// inputs' values and ${{outputs.NAME}} with OutputPath(NAME) for each name
// in outputs. A reference to an input or output that was not given is an
// error.
func SubstituteBindings(command string, inputs map[string]string, outputs map[string]bool) (string, error) {
	var missingIn, missingOut []string
	out := bindingRE.ReplaceAllStringFunc(command, func(m string) string {
		sub := bindingRE.FindStringSubmatch(m)
		kind, name := sub[1], sub[2]
		if kind == "outputs" {
			if !outputs[name] {
				missingOut = append(missingOut, name)
				return m
			}
			return OutputPath(name)
		}
		v, ok := inputs[name]
		if !ok {
			missingIn = append(missingIn, name)
			return m
		}
		return v
	})
	if len(missingIn) > 0 {
		sort.Strings(missingIn)
		return "", fieldErr(CodeInvalidParameter, "properties.inputs",
			"properties.command refers to inputs that properties.inputs does not give: %s", strings.Join(missingIn, ", "))
	}
	if len(missingOut) > 0 {
		sort.Strings(missingOut)
		return "", fieldErr(CodeInvalidParameter, "properties.outputs",
			"properties.command refers to outputs that properties.outputs does not declare: %s", strings.Join(missingOut, ", "))
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

// JobCompute is the ARM ID of the compute a job of workspace wsID names.
func JobCompute(wsID, name string) string {
	return fmt.Sprintf("%s/computes/%s", wsID, name)
}

// jobStatuses are the job statuses in the order a job goes through them.
var jobStatuses = []JobStatus{JobNotStarted, JobQueued, JobPreparing, JobRunning, JobFinalizing, JobCompleted, JobFailed, JobCanceled}

// ParseJobStatus returns the status named s, matched case-insensitively;
// false when s names none. "Cancelled" is accepted for Canceled.
func ParseJobStatus(s string) (JobStatus, bool) {
	if strings.EqualFold(s, "Cancelled") {
		return JobCanceled, true
	}
	for _, st := range jobStatuses {
		if strings.EqualFold(s, string(st)) {
			return st, true
		}
	}
	return "", false
}

// JobStatusNames lists the job statuses for messages: "NotStarted, Queued, ...".
func JobStatusNames() string {
	names := make([]string, len(jobStatuses))
	for i, st := range jobStatuses {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}
