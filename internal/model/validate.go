package model

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Limits that bound a cluster's settings.
const (
	// MaxNodesPerCluster is the largest maxNodeCount a cluster may have
	// (AML's default per-cluster limit).
	MaxNodesPerCluster = 100
	// MaxIdleTime is the longest nodeIdleTimeBeforeScaleDown accepted.
	MaxIdleTime = 7 * 24 * time.Hour
	// DefaultIdleTime is used when a create omits the idle time (AML's
	// default for new clusters).
	DefaultIdleTime = 120 * time.Second
	// MinPasswordLength and MaxPasswordLength bound an admin password.
	MinPasswordLength = 12
	MaxPasswordLength = 123
)

// Error codes of validation failures (the ARM error body's "code").
const (
	CodeInvalidName       = "InvalidComputeName"
	CodeInvalidParameter  = "InvalidParameter"
	CodeUnsupportedVMSize = "UnsupportedVMSize"
	CodeInvalidLocation   = "InvalidLocation"
	CodeImmutable         = "PropertyChangeNotAllowed"
	CodeQuotaExceeded     = "QuotaExceeded"
	CodeUnsupportedType   = "UnsupportedComputeType"
)

// FieldError is a rejected input: Code is machine-readable, Field is the
// JSON path of the offending field, Message says what is wrong and names the
// field. The API answers it with 400 and the ARM error body.
type FieldError struct {
	Code    string
	Field   string
	Message string
	// Info carries typed details for machine readers (quota numbers), or nil.
	Info map[string]any
}

func (e *FieldError) Error() string { return e.Message }

func fieldErr(code, field, format string, args ...any) *FieldError {
	return &FieldError{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

var computeNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,15}$`)

// ValidateComputeName checks the naming rule: 2 to 16 characters, letters,
// digits and '-', starting with a letter.
func ValidateComputeName(name string) error {
	if !computeNameRE.MatchString(name) {
		return fieldErr(CodeInvalidName, "name",
			"compute name %s is invalid: name must be 2 to 16 characters of letters, digits and '-', starting with a letter", Quote(name))
	}
	if strings.EqualFold(name, LocalCompute) {
		return fieldErr(CodeInvalidName, "name", "compute name %q is reserved for the built-in target that runs jobs on the control plane's host", name)
	}
	return nil
}

var workspaceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$`)

// ValidateWorkspaceName checks ARM's workspace naming rule: 3 to 33
// characters of letters, digits, '_' and '-', starting with a letter or digit.
func ValidateWorkspaceName(name string) error {
	if !workspaceNameRE.MatchString(name) {
		return fieldErr("InvalidWorkspaceName", "name",
			"workspace name %s is invalid: name must be 3 to 33 characters of letters, digits, '_' and '-', starting with a letter or digit", Quote(name))
	}
	return nil
}

// ComputeRequest is a compute PUT as received, before validation: nil
// pointers mean the field was absent.
type ComputeRequest struct {
	Name        string
	Location    *string
	ComputeType string
	Description *string
	Tags        map[string]string
	VMSize      *string
	VMPriority  *string
	MinNodes    *int64
	MaxNodes    *int64
	IdleTime    *string
	AdminUser   *string
	Password    *string
	SSHKey      *string
	RemoteLogin *string
}

// ComputeSpec is a validated, normalised compute definition. Password holds
// the plain-text password only until the caller hashes it.
type ComputeSpec struct {
	Name        string
	Description string
	Tags        map[string]string
	VMSize      VMSize
	Priority    Priority
	Scale       ScaleSettings
	AdminUser   string
	Password    string
	SSHKey      string
	RemoteLogin string
}

// ValidateCompute checks every rule a compute PUT must satisfy in workspace
// ws, whose region offers the sizes in region, and returns the normalised
// spec, or a *FieldError for the first broken rule. When the PUT overwrites
// existing, the settings fixed at creation (vmSize, vmPriority, credentials)
// must not change; credentials the request omits are kept, and a password
// given again is compared with passwordMatches.
func ValidateCompute(req ComputeRequest, ws Workspace, region Region, existing *Compute, passwordMatches func(hash, password string) bool) (ComputeSpec, error) {
	var spec ComputeSpec
	if err := ValidateComputeName(req.Name); err != nil {
		return spec, err
	}
	spec.Name = req.Name
	if !strings.EqualFold(req.ComputeType, "AmlCompute") {
		if req.ComputeType == "" {
			return spec, fieldErr(CodeInvalidParameter, "properties.computeType", "properties.computeType is required and must be \"AmlCompute\"")
		}
		return spec, fieldErr(CodeUnsupportedType, "properties.computeType",
			"properties.computeType %s is not supported: kumo serves \"AmlCompute\" clusters", Quote(req.ComputeType))
	}
	if req.Location != nil && *req.Location != "" && !SameLocation(*req.Location, ws.Location) {
		return spec, fieldErr(CodeInvalidLocation, "location",
			"location %s differs from the workspace's location %q: compute is always created in the workspace's region; omit location or use %q",
			Quote(*req.Location), ws.Location, ws.Location)
	}
	if req.Description != nil {
		if len(*req.Description) > 1024 {
			return spec, fieldErr(CodeInvalidParameter, "properties.description", "properties.description is longer than 1024 characters")
		}
		spec.Description = *req.Description
	}
	if err := validateTags(req.Tags); err != nil {
		return spec, err
	}
	spec.Tags = req.Tags

	if req.VMSize == nil || *req.VMSize == "" {
		return spec, fieldErr(CodeInvalidParameter, "properties.properties.vmSize", "properties.properties.vmSize is required")
	}
	size, ok := region.Size(*req.VMSize)
	if !ok {
		return spec, fieldErr(CodeUnsupportedVMSize, "properties.properties.vmSize",
			"properties.properties.vmSize %s is not offered in region %q; list the sizes with 'kumo compute list-sizes'", Quote(*req.VMSize), region.Name)
	}
	spec.VMSize = size

	// An omitted priority means Dedicated on create and "unchanged" on an
	// overwrite: the priority is fixed at creation.
	spec.Priority = PriorityDedicated
	if existing != nil {
		spec.Priority = existing.Priority
	}
	if req.VMPriority != nil && *req.VMPriority != "" {
		p, ok := ParsePriority(*req.VMPriority)
		if !ok {
			return spec, fieldErr(CodeInvalidParameter, "properties.properties.vmPriority",
				"properties.properties.vmPriority %s is invalid: use \"Dedicated\" or \"LowPriority\"", Quote(*req.VMPriority))
		}
		spec.Priority = p
	}

	scale, err := validateScale(req.MinNodes, req.MaxNodes, req.IdleTime, "properties.properties.scaleSettings")
	if err != nil {
		return spec, err
	}
	spec.Scale = scale

	if existing != nil {
		if err := checkImmutable(req, spec, *existing, passwordMatches); err != nil {
			return spec, err
		}
		spec.AdminUser, spec.SSHKey = existing.Credentials.AdminUser, existing.Credentials.SSHPublicKey
	} else if err := validateCredentials(req, &spec); err != nil {
		return spec, err
	}

	// Left out, the nodes' SSH ports are reached only through the control
	// plane's tunnel. NotSpecified behaves as AML documents for a cluster
	// outside a virtual network: the port is open when credentials are set.
	spec.RemoteLogin = "Disabled"
	if existing != nil {
		spec.RemoteLogin = existing.RemoteLogin
	}
	if req.RemoteLogin != nil && *req.RemoteLogin != "" {
		switch strings.ToLower(*req.RemoteLogin) {
		case "enabled":
			spec.RemoteLogin = "Enabled"
		case "disabled":
			spec.RemoteLogin = "Disabled"
		case "notspecified":
			if spec.AdminUser != "" {
				spec.RemoteLogin = "Enabled"
			}
		default:
			return spec, fieldErr(CodeInvalidParameter, "properties.properties.remoteLoginPortPublicAccess",
				"properties.properties.remoteLoginPortPublicAccess %s is invalid: use \"Enabled\", \"Disabled\" or \"NotSpecified\"", Quote(*req.RemoteLogin))
		}
	}
	return spec, nil
}

// ValidateScale checks scale settings from a PATCH. min and idle default to
// the current settings when nil; max is required.
func ValidateScale(min, max *int64, idle *string, current ScaleSettings) (ScaleSettings, error) {
	const field = "properties.properties.scaleSettings"
	if min == nil {
		m := int64(current.MinNodes)
		min = &m
	}
	if idle == nil {
		s := FormatDuration(current.IdleTime)
		idle = &s
	}
	return validateScale(min, max, idle, field)
}

func validateScale(min, max *int64, idle *string, field string) (ScaleSettings, error) {
	var s ScaleSettings
	if max == nil {
		return s, fieldErr(CodeInvalidParameter, field+".maxNodeCount", "%s.maxNodeCount is required", field)
	}
	if *max < 0 || *max > MaxNodesPerCluster {
		return s, fieldErr(CodeInvalidParameter, field+".maxNodeCount",
			"%s.maxNodeCount %d is out of range: it must be between 0 and %d", field, *max, MaxNodesPerCluster)
	}
	var mn int64
	if min != nil {
		mn = *min
	}
	if mn < 0 {
		return s, fieldErr(CodeInvalidParameter, field+".minNodeCount", "%s.minNodeCount %d is negative: it must be 0 or more", field, mn)
	}
	if mn > *max {
		return s, fieldErr(CodeInvalidParameter, field+".minNodeCount",
			"%s.minNodeCount %d is greater than maxNodeCount %d", field, mn, *max)
	}
	s.MinNodes, s.MaxNodes = int(mn), int(*max)
	s.IdleTime = DefaultIdleTime
	if idle != nil && *idle != "" {
		d, err := ParseDuration(*idle)
		if err != nil {
			return s, fieldErr(CodeInvalidParameter, field+".nodeIdleTimeBeforeScaleDown",
				"%s.nodeIdleTimeBeforeScaleDown %s is not an ISO-8601 duration such as \"PT2M\": %v", field, Quote(*idle), err)
		}
		if d < 0 || d > MaxIdleTime {
			return s, fieldErr(CodeInvalidParameter, field+".nodeIdleTimeBeforeScaleDown",
				"%s.nodeIdleTimeBeforeScaleDown %q is out of range: it must be from PT0S to P7D", field, *idle)
		}
		s.IdleTime = d
	}
	return s, nil
}

func validateTags(tags map[string]string) error {
	if len(tags) > 50 {
		return fieldErr(CodeInvalidParameter, "tags", "tags has %d entries: at most 50 are allowed", len(tags))
	}
	for k, v := range tags {
		if k == "" || len(k) > 512 {
			return fieldErr(CodeInvalidParameter, "tags", "tag name %s is invalid: it must be 1 to 512 characters", Quote(k))
		}
		if len(v) > 256 {
			return fieldErr(CodeInvalidParameter, "tags."+k, "tag %q has a value longer than 256 characters", k)
		}
	}
	return nil
}

// checkImmutable rejects an overwrite that changes what is fixed at
// creation. Omitted credential fields mean "unchanged".
func checkImmutable(req ComputeRequest, spec ComputeSpec, old Compute, passwordMatches func(hash, password string) bool) error {
	const cred = "properties.properties.userAccountCredentials"
	if spec.VMSize.Name != old.VMSize {
		return fieldErr(CodeImmutable, "properties.properties.vmSize",
			"properties.properties.vmSize cannot change after creation (compute %q has %q, the request asks for %q); delete and recreate the compute to change it", old.Name, old.VMSize, spec.VMSize.Name)
	}
	if req.VMPriority != nil && *req.VMPriority != "" && spec.Priority != old.Priority {
		return fieldErr(CodeImmutable, "properties.properties.vmPriority",
			"properties.properties.vmPriority cannot change after creation (compute %q is %s); delete and recreate the compute to change it", old.Name, old.Priority)
	}
	changed := ""
	switch {
	case req.AdminUser != nil && *req.AdminUser != old.Credentials.AdminUser:
		changed = "adminUserName"
	case req.SSHKey != nil && *req.SSHKey != "" && strings.TrimSpace(*req.SSHKey) != old.Credentials.SSHPublicKey:
		changed = "adminUserSshPublicKey"
	case req.Password != nil && *req.Password != "" &&
		(old.Credentials.PasswordHash == "" || passwordMatches == nil || !passwordMatches(old.Credentials.PasswordHash, *req.Password)):
		changed = "adminUserPassword"
	}
	if changed != "" {
		return fieldErr(CodeImmutable, cred+"."+changed,
			"%s.%s cannot change after creation: SSH credentials are fixed when the compute is created; delete and recreate the compute to change them", cred, changed)
	}
	return nil
}

var adminUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// reservedUsers cannot be admin accounts on a node.
var reservedUsers = map[string]bool{"root": true, "admin": true, "administrator": true, "daemon": true, "bin": true, "sys": true, "nobody": true, "sshd": true}

func validateCredentials(req ComputeRequest, spec *ComputeSpec) error {
	const field = "properties.properties.userAccountCredentials"
	user := deref(req.AdminUser)
	pw := deref(req.Password)
	key := strings.TrimSpace(deref(req.SSHKey))
	if user == "" {
		if pw != "" || key != "" {
			return fieldErr(CodeInvalidParameter, field+".adminUserName",
				"%s.adminUserName is required when a password or SSH key is given", field)
		}
		return nil
	}
	if !adminUserRE.MatchString(user) || reservedUsers[user] {
		return fieldErr(CodeInvalidParameter, field+".adminUserName",
			"%s.adminUserName %s is invalid: use 1 to 32 lower-case letters, digits, '_', '.' or '-', starting with a letter or '_', and not a reserved name such as root or admin", field, Quote(user))
	}
	if pw == "" && key == "" {
		return fieldErr(CodeInvalidParameter, field,
			"%s: admin user %q needs adminUserPassword or adminUserSshPublicKey", field, user)
	}
	if pw != "" {
		if err := ValidatePassword(pw); err != nil {
			return fieldErr(CodeInvalidParameter, field+".adminUserPassword", "%s.adminUserPassword %v", field, err)
		}
	}
	if key != "" {
		if err := ValidateSSHPublicKey(key); err != nil {
			return fieldErr(CodeInvalidParameter, field+".adminUserSshPublicKey", "%s.adminUserSshPublicKey is not a valid SSH public key: %v", field, err)
		}
	}
	spec.AdminUser, spec.Password, spec.SSHKey = user, pw, key
	return nil
}

// ValidatePassword checks the admin password rule: 12 to 123 characters,
// with at least three of lower-case letters, upper-case letters, digits and
// special characters. The error never repeats the password.
func ValidatePassword(pw string) error {
	n := len([]rune(pw))
	if n < MinPasswordLength || n > MaxPasswordLength {
		return fmt.Errorf("must be %d to %d characters long (got %d)", MinPasswordLength, MaxPasswordLength, n)
	}
	var lower, upper, digit, special bool
	for _, r := range pw {
		switch {
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsControl(r):
			return fmt.Errorf("must not contain control characters")
		default:
			special = true
		}
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, special} {
		if b {
			classes++
		}
	}
	if classes < 3 {
		return fmt.Errorf("is too simple: it needs at least three of lower-case letters, upper-case letters, digits and special characters")
	}
	return nil
}

var sshKeyTypes = map[string]bool{
	"ssh-rsa": true, "ssh-ed25519": true, "ecdsa-sha2-nistp256": true, "ecdsa-sha2-nistp384": true,
	"ecdsa-sha2-nistp521": true, "sk-ssh-ed25519@openssh.com": true, "sk-ecdsa-sha2-nistp256@openssh.com": true,
}

// ValidateSSHPublicKey checks that key is one authorized_keys line: a known
// key type, then base64 key data whose embedded type matches and which holds
// exactly that type's fields (so truncated or padded keys are refused), then
// an optional comment.
func ValidateSSHPublicKey(key string) error {
	if strings.ContainsAny(key, "\r\n") {
		return fmt.Errorf("give exactly one key on one line")
	}
	fields := strings.Fields(key)
	if len(fields) < 2 {
		return fmt.Errorf("expected \"<type> <base64 data> [comment]\"")
	}
	typ := fields[0]
	if !sshKeyTypes[typ] {
		return fmt.Errorf("key type %q is not supported", truncate(typ, 40))
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return fmt.Errorf("key data is not base64")
	}
	if len(blob) < 4 {
		return fmt.Errorf("key data is too short")
	}
	return checkSSHKeyData(typ, blob)
}

// checkSSHKeyData checks the wire-format public key blob of a key of type
// typ (RFC 4253 section 6.6, RFC 5656, RFC 8709, OpenSSH PROTOCOL.u2f): the
// embedded type, then exactly the fields that type has, and nothing after.
func checkSSHKeyData(typ string, blob []byte) error {
	embedded, rest, ok := sshString(blob)
	if !ok || string(embedded) != typ {
		return fmt.Errorf("key data does not match key type %q", typ)
	}
	// fields lists the lengths the type's fields must have, in order; 0
	// means any non-empty length, -1 any length.
	var fields []int
	curve := ""
	switch typ {
	case "ssh-rsa":
		fields = []int{0, 0} // e, n
	case "ssh-ed25519":
		fields = []int{32}
	case "sk-ssh-ed25519@openssh.com":
		fields = []int{32, -1} // key, application
	case "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521":
		curve = strings.TrimPrefix(typ, "ecdsa-sha2-")
	case "sk-ecdsa-sha2-nistp256@openssh.com":
		curve = "nistp256"
	}
	if curve != "" {
		name, r, ok := sshString(rest)
		if !ok {
			return fmt.Errorf("key data is truncated")
		}
		if string(name) != curve {
			return fmt.Errorf("key data names curve %q, want %q", truncate(string(name), 40), curve)
		}
		point, r, ok := sshString(r)
		if !ok {
			return fmt.Errorf("key data is truncated")
		}
		if err := checkECPoint(curve, point); err != nil {
			return err
		}
		rest = r
		if strings.HasPrefix(typ, "sk-") {
			fields = []int{-1} // application
		}
	}
	for _, want := range fields {
		f, r, ok := sshString(rest)
		if !ok {
			return fmt.Errorf("key data is truncated")
		}
		if want == 0 && len(f) == 0 || want > 0 && len(f) != want {
			return fmt.Errorf("key data is malformed")
		}
		rest = r
	}
	if len(rest) != 0 {
		return fmt.Errorf("key data has %d unexpected trailing bytes", len(rest))
	}
	return nil
}

// checkECPoint checks that point is an uncompressed point on curve.
func checkECPoint(curve string, point []byte) error {
	c := map[string]ecdh.Curve{"nistp256": ecdh.P256(), "nistp384": ecdh.P384(), "nistp521": ecdh.P521()}[curve]
	if _, err := c.NewPublicKey(point); err != nil {
		return fmt.Errorf("key data holds no valid %s point", curve)
	}
	return nil
}

// sshString reads one SSH wire-format string (a big-endian uint32 length,
// then that many bytes) from the front of b.
func sshString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// ParsePriority accepts Dedicated or LowPriority in any case, with or
// without '_' (the v2 SDK's "low_priority").
func ParsePriority(s string) (Priority, bool) {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "")) {
	case "dedicated":
		return PriorityDedicated, true
	case "lowpriority":
		return PriorityLowPriority, true
	}
	return "", false
}

// SameLocation compares region names the way ARM does: case and spaces do
// not matter ("East US" is "eastus").
func SameLocation(a, b string) bool {
	return strings.EqualFold(strings.ReplaceAll(a, " ", ""), strings.ReplaceAll(b, " ", ""))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
