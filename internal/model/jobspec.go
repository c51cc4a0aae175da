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
			"job name %q is invalid: use 1 to 255 letters, digits, '_' and '-', starting with a letter or digit", name)
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

// ValidateEnv checks environment variable names.
func ValidateEnv(env map[string]string) error {
	for k := range env {
		if !envNameRE.MatchString(k) {
			return fieldErr(CodeInvalidParameter, "properties.environmentVariables",
				"properties.environmentVariables has an invalid name %q: use letters, digits and '_', not starting with a digit", k)
		}
	}
	return nil
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
		return 0, fieldErr(CodeInvalidParameter, "properties.limits.timeout", "properties.limits.timeout %q is not an ISO-8601 duration such as \"PT1H\": %v", s, err)
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
