package model

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

// wantFieldError fails the test unless err is a *FieldError with code and
// field.
func wantFieldError(t *testing.T, name string, err error, code, field string) *FieldError {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("%s error = %v (%T), want a *FieldError %s on %s", name, err, err, code, field)
		return nil
	}
	if fe.Code != code || fe.Field != field {
		t.Errorf("%s error code/field = %s/%s, want %s/%s (message %q)", name, fe.Code, fe.Field, code, field, fe.Message)
	}
	if fe.Error() != fe.Message {
		t.Errorf("%s Error() = %q, want the message %q", name, fe.Error(), fe.Message)
	}
	return fe
}

func TestValidateComputeName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"ab", true},
		{"cpu-cluster", true},
		{"A1", true},
		{"Gpu-Cluster-01", true},
		{"a-", true},
		{"abcdefghijklmnop", true}, // 16
		{"", false},
		{"a", false},
		{"abcdefghijklmnopq", false}, // 17
		{"1abc", false},
		{"-ab", false},
		{"ab_c", false},
		{"ab.c", false},
		{"ab c", false},
		{"ab\n", false},
		{"\nab", false},
		{"ñandú", false},
	}
	for _, tt := range tests {
		err := ValidateComputeName(tt.name)
		if tt.ok {
			if err != nil {
				t.Errorf("ValidateComputeName(%q) error: %v", tt.name, err)
			}
			continue
		}
		wantFieldError(t, "ValidateComputeName("+tt.name+")", err, CodeInvalidName, "name")
	}
}

func TestValidateWorkspaceName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"abc", true},
		{"1ws", true},
		{"my_ws-1", true},
		{"WS_", true},
		{strings.Repeat("w", 33), true},
		{"", false},
		{"ab", false},
		{"_ws", false},
		{"-ws", false},
		{strings.Repeat("w", 34), false},
		{"ws.1", false},
		{"ws 1", false},
		{"ws1\n", false},
	}
	for _, tt := range tests {
		err := ValidateWorkspaceName(tt.name)
		if tt.ok {
			if err != nil {
				t.Errorf("ValidateWorkspaceName(%q) error: %v", tt.name, err)
			}
			continue
		}
		wantFieldError(t, "ValidateWorkspaceName("+tt.name+")", err, "InvalidWorkspaceName", "name")
	}
}

func TestValidatePassword(t *testing.T) {
	tests := []struct {
		pw      string
		wantErr string // "" means valid; else a substring of the error
	}{
		{"Abcdefghijk1", ""},                   // 12: lower, upper, digit
		{"abcdefghij1!", ""},                   // lower, digit, special
		{"ABCDEFGHIJ1!", ""},                   // upper, digit, special
		{"Abcdefghij!!", ""},                   // lower, upper, special
		{"Ab1!Ab1!Ab1!", ""},                   // all four
		{"Ñandúñandú12", ""},                   // non-ASCII letters count as letters; 12 runes
		{"pass word W1", ""},                   // space is special
		{"Ab1" + strings.Repeat("x", 120), ""}, // 123
		{"Ab1" + strings.Repeat("x", 121), "must be 12 to 123 characters long (got 124)"},
		{"Abcdefghij1", "must be 12 to 123 characters long (got 11)"},
		{"", "must be 12 to 123 characters long (got 0)"},
		{"ééééééé", "must be 12 to 123 characters long (got 7)"}, // 14 bytes, 7 runes
		{"abcdefghijkl1", "too simple"},
		{"abcdefghijklm", "too simple"},
		{"ABCDEFGHIJKL!", "too simple"},
		{"123456789012!", "too simple"},
		{"Abcdefghijk1\x00", "control characters"},
		{"Abcdefghijk1\t", "control characters"},
		{"Abcdefghijk1\n", "control characters"},
		{"Abcdefghijk1\x7f", "control characters"},
		{"Abcdefghijk1\u0085", "control characters"},
	}
	for _, tt := range tests {
		err := ValidatePassword(tt.pw)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidatePassword(%q) error: %v", tt.pw, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ValidatePassword(%q) = nil, want an error containing %q", tt.pw, tt.wantErr)
		case err != nil:
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidatePassword(%q) error = %q, want it to contain %q", tt.pw, err, tt.wantErr)
			}
			if tt.pw != "" && strings.Contains(err.Error(), tt.pw) {
				t.Errorf("ValidatePassword(%q) error = %q, which repeats the password", tt.pw, err)
			}
		}
	}
}

// authorizedKey returns pub as one authorized_keys line without the newline.
func authorizedKey(t *testing.T, pub any) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("ssh.NewPublicKey(%T): %v", pub, err)
	}
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n")
}

// sshWire encodes fields as SSH wire-format strings.
func sshWire(fields ...[]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// keyBlob returns the decoded key data of an authorized_keys line.
func keyBlob(t *testing.T, line string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.Fields(line)[1])
	if err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	return b
}

func TestValidateSSHPublicKey(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKeys := map[string]*ecdsa.PrivateKey{}
	for name, c := range map[string]elliptic.Curve{"nistp256": elliptic.P256(), "nistp384": elliptic.P384(), "nistp521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ecKeys[name] = k
	}
	ed := authorizedKey(t, edPub)
	rsaLine := authorizedKey(t, &rsaKey.PublicKey)
	p256 := authorizedKey(t, &ecKeys["nistp256"].PublicKey)
	p384 := authorizedKey(t, &ecKeys["nistp384"].PublicKey)
	p521 := authorizedKey(t, &ecKeys["nistp521"].PublicKey)
	b64 := base64.StdEncoding.EncodeToString
	edBlob, rsaBlob, p256Blob := keyBlob(t, ed), keyBlob(t, rsaLine), keyBlob(t, p256)
	p256ECDH, err := ecKeys["nistp256"].PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	p256Point := p256ECDH.Bytes() // uncompressed, as the wire format wants
	skEd := "sk-ssh-ed25519@openssh.com " + b64(sshWire([]byte("sk-ssh-ed25519@openssh.com"), edPub, []byte("ssh:")))
	skEC := "sk-ecdsa-sha2-nistp256@openssh.com " + b64(sshWire([]byte("sk-ecdsa-sha2-nistp256@openssh.com"), []byte("nistp256"), p256Point, []byte("ssh:")))

	tests := []struct {
		name    string
		key     string
		wantErr string // "" means valid; else a substring of the error
	}{
		{"ed25519", ed, ""},
		{"ed25519 with comment", ed + " alice@laptop", ""},
		{"ed25519 comment with spaces", ed + " alice on her laptop", ""},
		{"ed25519 tabs", strings.Replace(ed, " ", "\t", 1), ""},
		{"rsa", rsaLine, ""},
		{"ecdsa p256", p256, ""},
		{"ecdsa p384", p384, ""},
		{"ecdsa p521", p521, ""},
		{"sk ed25519", skEd, ""},
		{"sk ecdsa", skEC, ""},

		{"empty", "", "expected"},
		{"type only", "ssh-ed25519", "expected"},
		{"wrong type", "ssh-dss " + strings.Fields(ed)[1], "not supported"},
		{"unknown type", "ssh-foo AAAA", "not supported"},
		{"options prefix", `command="ls" ` + ed, "not supported"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "not supported"},
		{"bad base64", "ssh-ed25519 AAAA!!!!", "not base64"},
		{"bad base64 padding", "ssh-ed25519 " + strings.TrimRight(strings.Fields(rsaLine)[1], "=") + "=", "not base64"},
		{"too short", "ssh-ed25519 AAA=", "too short"},
		{"type mismatch", "ssh-rsa " + strings.Fields(ed)[1], "does not match key type"},
		{"ecdsa curve mismatch", "ecdsa-sha2-nistp384 " + strings.Fields(p256)[1], "does not match key type"},
		{"embedded length past end", "ssh-ed25519 " + b64([]byte{0, 0, 1, 0, 's', 's', 'h'}), "does not match key type"},
		{"truncated ed25519", "ssh-ed25519 " + b64(edBlob[:len(edBlob)-10]), "truncated"},
		{"truncated ed25519 to type", "ssh-ed25519 " + b64(edBlob[:4+len("ssh-ed25519")]), "truncated"},
		{"truncated rsa", "ssh-rsa " + b64(rsaBlob[:len(rsaBlob)/2]), "truncated"},
		{"truncated ecdsa", "ecdsa-sha2-nistp256 " + b64(p256Blob[:len(p256Blob)-1]), "truncated"},
		{"trailing bytes", "ssh-ed25519 " + b64(append(append([]byte{}, edBlob...), 0, 0, 0, 0)), "trailing bytes"},
		{"short ed25519 key", "ssh-ed25519 " + b64(sshWire([]byte("ssh-ed25519"), edPub[:31])), "malformed"},
		{"empty rsa modulus", "ssh-rsa " + b64(sshWire([]byte("ssh-rsa"), []byte{1, 0, 1}, nil)), "malformed"},
		{"ecdsa wrong curve name", "ecdsa-sha2-nistp256 " + b64(sshWire([]byte("ecdsa-sha2-nistp256"), []byte("nistp384"), p256Point)), "curve"},
		{"ecdsa point off curve", "ecdsa-sha2-nistp256 " + b64(sshWire([]byte("ecdsa-sha2-nistp256"), []byte("nistp256"), append([]byte{4}, make([]byte, 64)...))), "no valid nistp256 point"},
		{"sk without application", "sk-ssh-ed25519@openssh.com " + b64(sshWire([]byte("sk-ssh-ed25519@openssh.com"), edPub)), "truncated"},
		{"two lines", ed + "\n" + rsaLine, "one line"},
		{"trailing newline", ed + "\n", "one line"},
		{"carriage return", ed + "\r", "one line"},
	}
	for _, tt := range tests {
		err := ValidateSSHPublicKey(tt.key)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: ValidateSSHPublicKey(%q) error: %v", tt.name, tt.key, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("%s: ValidateSSHPublicKey(%q) = nil, want an error containing %q", tt.name, tt.key, tt.wantErr)
		case err != nil && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("%s: ValidateSSHPublicKey error = %q, want it to contain %q", tt.name, err, tt.wantErr)
		}
		// Whatever we accept, x/crypto/ssh must parse too.
		if err == nil {
			if _, _, _, rest, perr := ssh.ParseAuthorizedKey([]byte(tt.key)); perr != nil || len(rest) != 0 {
				t.Errorf("%s: ValidateSSHPublicKey accepts %q but ssh.ParseAuthorizedKey says %v (rest %q)", tt.name, tt.key, perr, rest)
			}
		}
	}
}

func TestParsePriority(t *testing.T) {
	tests := []struct {
		in     string
		want   Priority
		wantOK bool
	}{
		{"Dedicated", PriorityDedicated, true},
		{"dedicated", PriorityDedicated, true},
		{"DEDICATED", PriorityDedicated, true},
		{"LowPriority", PriorityLowPriority, true},
		{"lowpriority", PriorityLowPriority, true},
		{"low_priority", PriorityLowPriority, true},
		{"LOW_PRIORITY", PriorityLowPriority, true},
		{"", "", false},
		{"low", "", false},
		{"low priority", "", false},
		{"low-priority", "", false},
		{"Spot", "", false},
	}
	for _, tt := range tests {
		got, ok := ParsePriority(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParsePriority(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestSameLocation(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"local", "local", true},
		{"Local", "LOCAL", true},
		{"East US", "eastus", true},
		{"eastus", "East US", true},
		{"West Europe", "westeurope", true},
		{"eastus", "eastus2", false},
		{"eastus", "westus", false},
		{"", "local", false},
		{"", "", true},
	}
	for _, tt := range tests {
		if got := SameLocation(tt.a, tt.b); got != tt.want {
			t.Errorf("SameLocation(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestRoleAllows(t *testing.T) {
	tests := []struct {
		role, min Role
		want      bool
	}{
		{RoleReader, RoleReader, true},
		{RoleReader, RoleContributor, false},
		{RoleReader, RoleOwner, false},
		{RoleContributor, RoleReader, true},
		{RoleContributor, RoleContributor, true},
		{RoleContributor, RoleOwner, false},
		{RoleOwner, RoleReader, true},
		{RoleOwner, RoleContributor, true},
		{RoleOwner, RoleOwner, true},
		{"", RoleReader, false},
		{"admin", RoleReader, false},
		{"Owner", RoleReader, false}, // roles are exact, lower-case words
		{RoleOwner, "", false},
		{RoleOwner, "superuser", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := tt.role.Allows(tt.min); got != tt.want {
			t.Errorf("Role(%q).Allows(%q) = %v, want %v", tt.role, tt.min, got, tt.want)
		}
	}
}

// testRegion offers every catalog size.
var testRegion = NewRegion("local", "local", Host{VCPUs: 1000, MemoryGB: 10000, GPUs: 8})

var testWorkspace = Workspace{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws", Name: "ws", Location: "local"}

func ptr[T any](v T) *T { return &v }

// validRequest returns a minimal valid create request for name.
func validRequest(name string) ComputeRequest {
	return ComputeRequest{Name: name, ComputeType: "AmlCompute", VMSize: ptr("Standard_DS3_v2"), MaxNodes: ptr(int64(4))}
}

func mustSize(t *testing.T, name string) VMSize {
	t.Helper()
	s, ok := testRegion.Size(name)
	if !ok {
		t.Fatalf("testRegion.Size(%q) not found", name)
	}
	return s
}

func TestValidateComputeCreate(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := authorizedKey(t, edPub)

	tests := []struct {
		name string
		req  func(*ComputeRequest)
		want func(*ComputeSpec) // applied to the spec of validRequest's defaults
	}{
		{"defaults", func(*ComputeRequest) {}, func(*ComputeSpec) {}},
		{"case-insensitive vmSize stored canonical", func(r *ComputeRequest) { r.VMSize = ptr("standard_ds3_V2") }, func(*ComputeSpec) {}},
		{"computeType any case", func(r *ComputeRequest) { r.ComputeType = "amlcompute" }, func(*ComputeSpec) {}},
		{"priority normalised", func(r *ComputeRequest) { r.VMPriority = ptr("low_priority") }, func(s *ComputeSpec) { s.Priority = PriorityLowPriority }},
		{"empty priority is dedicated", func(r *ComputeRequest) { r.VMPriority = ptr("") }, func(*ComputeSpec) {}},
		{"location matches loosely", func(r *ComputeRequest) { r.Location = ptr("LOCAL") }, func(*ComputeSpec) {}},
		{"empty location", func(r *ComputeRequest) { r.Location = ptr("") }, func(*ComputeSpec) {}},
		{"description and tags", func(r *ComputeRequest) {
			r.Description, r.Tags = ptr("training"), map[string]string{"team": "ml"}
		}, func(s *ComputeSpec) { s.Description, s.Tags = "training", map[string]string{"team": "ml"} }},
		{"scale", func(r *ComputeRequest) {
			r.MinNodes, r.MaxNodes, r.IdleTime = ptr(int64(1)), ptr(int64(100)), ptr("PT30M")
		}, func(s *ComputeSpec) { s.Scale = ScaleSettings{MinNodes: 1, MaxNodes: 100, IdleTime: 30 * time.Minute} }},
		{"idle zero", func(r *ComputeRequest) { r.IdleTime = ptr("PT0S") }, func(s *ComputeSpec) { s.Scale.IdleTime = 0 }},
		{"idle max", func(r *ComputeRequest) { r.IdleTime = ptr("P7D") }, func(s *ComputeSpec) { s.Scale.IdleTime = MaxIdleTime }},
		{"password, public port closed by default", func(r *ComputeRequest) {
			r.AdminUser, r.Password = ptr("azureuser"), ptr("Sup3rSecret!!")
		}, func(s *ComputeSpec) {
			s.AdminUser, s.Password, s.RemoteLogin = "azureuser", "Sup3rSecret!!", "Disabled"
		}},
		{"ssh key trimmed, public port closed by default", func(r *ComputeRequest) {
			r.AdminUser, r.SSHKey = ptr("azureuser"), ptr("  "+key+"\n")
		}, func(s *ComputeSpec) { s.AdminUser, s.SSHKey, s.RemoteLogin = "azureuser", key, "Disabled" }},
		{"remote login enabled explicitly", func(r *ComputeRequest) {
			r.AdminUser, r.SSHKey, r.RemoteLogin = ptr("azureuser"), ptr(key), ptr("Enabled")
		}, func(s *ComputeSpec) { s.AdminUser, s.SSHKey, s.RemoteLogin = "azureuser", key, "Enabled" }},
		{"remote login disabled explicitly", func(r *ComputeRequest) {
			r.AdminUser, r.SSHKey, r.RemoteLogin = ptr("azureuser"), ptr(key), ptr("disabled")
		}, func(s *ComputeSpec) { s.AdminUser, s.SSHKey, s.RemoteLogin = "azureuser", key, "Disabled" }},
		{"remote login NotSpecified opens the port, as AML outside a virtual network", func(r *ComputeRequest) {
			r.AdminUser, r.SSHKey, r.RemoteLogin = ptr("azureuser"), ptr(key), ptr("NotSpecified")
		}, func(s *ComputeSpec) { s.AdminUser, s.SSHKey, s.RemoteLogin = "azureuser", key, "Enabled" }},
		{"remote login enabled without credentials", func(r *ComputeRequest) { r.RemoteLogin = ptr("ENABLED") }, func(s *ComputeSpec) { s.RemoteLogin = "Enabled" }},
		{"empty credentials are none", func(r *ComputeRequest) {
			r.AdminUser, r.Password, r.SSHKey = ptr(""), ptr(""), ptr("")
		}, func(*ComputeSpec) {}},
	}
	for _, tt := range tests {
		req := validRequest("Cpu-Cluster")
		tt.req(&req)
		want := ComputeSpec{
			Name:        "Cpu-Cluster",
			VMSize:      mustSize(t, "Standard_DS3_v2"),
			Priority:    PriorityDedicated,
			Scale:       ScaleSettings{MinNodes: 0, MaxNodes: 4, IdleTime: 120 * time.Second},
			RemoteLogin: "Disabled",
		}
		tt.want(&want)
		got, err := ValidateCompute(req, testWorkspace, testRegion, nil, nil)
		if err != nil {
			t.Errorf("%s: ValidateCompute error: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: ValidateCompute spec mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestValidateComputeCreateErrors(t *testing.T) {
	const (
		pp   = "properties.properties."
		cred = pp + "userAccountCredentials"
		ss   = pp + "scaleSettings"
	)
	manyTags := map[string]string{}
	for i := range 51 {
		manyTags[strings.Repeat("k", i+1)] = "v"
	}
	small := NewRegion("small", "local", Host{VCPUs: 2, MemoryGB: 8})
	tests := []struct {
		name        string
		req         func(*ComputeRequest)
		region      Region
		code, field string
	}{
		{"bad name", func(r *ComputeRequest) { r.Name = "1bad" }, testRegion, CodeInvalidName, "name"},
		{"no computeType", func(r *ComputeRequest) { r.ComputeType = "" }, testRegion, CodeInvalidParameter, "properties.computeType"},
		{"other computeType", func(r *ComputeRequest) { r.ComputeType = "ComputeInstance" }, testRegion, CodeUnsupportedType, "properties.computeType"},
		{"other location", func(r *ComputeRequest) { r.Location = ptr("eastus") }, testRegion, CodeInvalidLocation, "location"},
		{"long description", func(r *ComputeRequest) { r.Description = ptr(strings.Repeat("d", 1025)) }, testRegion, CodeInvalidParameter, "properties.description"},
		{"too many tags", func(r *ComputeRequest) { r.Tags = manyTags }, testRegion, CodeInvalidParameter, "tags"},
		{"empty tag name", func(r *ComputeRequest) { r.Tags = map[string]string{"": "v"} }, testRegion, CodeInvalidParameter, "tags"},
		{"long tag value", func(r *ComputeRequest) { r.Tags = map[string]string{"k": strings.Repeat("v", 257)} }, testRegion, CodeInvalidParameter, "tags.k"},
		{"no vmSize", func(r *ComputeRequest) { r.VMSize = nil }, testRegion, CodeInvalidParameter, pp + "vmSize"},
		{"empty vmSize", func(r *ComputeRequest) { r.VMSize = ptr("") }, testRegion, CodeInvalidParameter, pp + "vmSize"},
		{"unknown vmSize", func(r *ComputeRequest) { r.VMSize = ptr("Standard_Z9") }, testRegion, CodeUnsupportedVMSize, pp + "vmSize"},
		{"vmSize not in region", func(*ComputeRequest) {}, small, CodeUnsupportedVMSize, pp + "vmSize"},
		{"bad priority", func(r *ComputeRequest) { r.VMPriority = ptr("Spot") }, testRegion, CodeInvalidParameter, pp + "vmPriority"},
		{"no maxNodes", func(r *ComputeRequest) { r.MaxNodes = nil }, testRegion, CodeInvalidParameter, ss + ".maxNodeCount"},
		{"negative maxNodes", func(r *ComputeRequest) { r.MaxNodes = ptr(int64(-1)) }, testRegion, CodeInvalidParameter, ss + ".maxNodeCount"},
		{"maxNodes too big", func(r *ComputeRequest) { r.MaxNodes = ptr(int64(MaxNodesPerCluster + 1)) }, testRegion, CodeInvalidParameter, ss + ".maxNodeCount"},
		{"negative minNodes", func(r *ComputeRequest) { r.MinNodes = ptr(int64(-1)) }, testRegion, CodeInvalidParameter, ss + ".minNodeCount"},
		{"min above max", func(r *ComputeRequest) { r.MinNodes = ptr(int64(5)) }, testRegion, CodeInvalidParameter, ss + ".minNodeCount"},
		{"bad idle", func(r *ComputeRequest) { r.IdleTime = ptr("2 minutes") }, testRegion, CodeInvalidParameter, ss + ".nodeIdleTimeBeforeScaleDown"},
		{"idle too long", func(r *ComputeRequest) { r.IdleTime = ptr("P7DT1S") }, testRegion, CodeInvalidParameter, ss + ".nodeIdleTimeBeforeScaleDown"},
		{"password without user", func(r *ComputeRequest) { r.Password = ptr("Sup3rSecret!!") }, testRegion, CodeInvalidParameter, cred + ".adminUserName"},
		{"reserved user", func(r *ComputeRequest) { r.AdminUser, r.Password = ptr("root"), ptr("Sup3rSecret!!") }, testRegion, CodeInvalidParameter, cred + ".adminUserName"},
		{"upper-case user", func(r *ComputeRequest) { r.AdminUser, r.Password = ptr("Alice"), ptr("Sup3rSecret!!") }, testRegion, CodeInvalidParameter, cred + ".adminUserName"},
		{"user without secret", func(r *ComputeRequest) { r.AdminUser = ptr("azureuser") }, testRegion, CodeInvalidParameter, cred},
		{"weak password", func(r *ComputeRequest) { r.AdminUser, r.Password = ptr("azureuser"), ptr("password") }, testRegion, CodeInvalidParameter, cred + ".adminUserPassword"},
		{"bad key", func(r *ComputeRequest) { r.AdminUser, r.SSHKey = ptr("azureuser"), ptr("ssh-rsa AAAA") }, testRegion, CodeInvalidParameter, cred + ".adminUserSshPublicKey"},
		{"bad remote login", func(r *ComputeRequest) { r.RemoteLogin = ptr("sometimes") }, testRegion, CodeInvalidParameter, pp + "remoteLoginPortPublicAccess"},
	}
	for _, tt := range tests {
		req := validRequest("cpu-cluster")
		tt.req(&req)
		_, err := ValidateCompute(req, testWorkspace, tt.region, nil, nil)
		fe := wantFieldError(t, tt.name, err, tt.code, tt.field)
		if fe != nil && req.Password != nil && *req.Password != "" && strings.Contains(fe.Message, *req.Password) {
			t.Errorf("%s: error %q repeats the password", tt.name, fe.Message)
		}
	}
}

// fakeHash stands in for secret.HashPassword: model may not import secret.
func fakeHash(pw string) string { return "hash:" + pw }

func fakeMatches(hash, pw string) bool { return hash == fakeHash(pw) }

func TestValidateComputeOverwrite(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := authorizedKey(t, edPub)
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := authorizedKey(t, otherPub)

	existing := Compute{
		ID: testWorkspace.ID + "/computes/cpu-cluster", Name: "cpu-cluster", VMSize: "Standard_DS3_v2", Priority: PriorityLowPriority,
		Scale:       ScaleSettings{MaxNodes: 2, IdleTime: time.Hour},
		Credentials: Credentials{AdminUser: "azureuser", PasswordHash: fakeHash("Sup3rSecret!!"), SSHPublicKey: key},
		RemoteLogin: "Disabled", State: StateSucceeded,
	}
	const (
		pp   = "properties.properties."
		cred = pp + "userAccountCredentials."
	)
	tests := []struct {
		name      string
		req       func(*ComputeRequest)
		matches   func(hash, pw string) bool
		wantField string             // "" means accepted
		want      func(*ComputeSpec) // applied to the expected spec when accepted
	}{
		{"omitted credentials and priority kept", func(*ComputeRequest) {}, fakeMatches, "", func(*ComputeSpec) {}},
		{"same settings in another case", func(r *ComputeRequest) {
			r.VMSize, r.VMPriority = ptr("STANDARD_DS3_V2"), ptr("lowpriority")
		}, fakeMatches, "", func(*ComputeSpec) {}},
		{"same credentials repeated", func(r *ComputeRequest) {
			r.AdminUser, r.Password, r.SSHKey = ptr("azureuser"), ptr("Sup3rSecret!!"), ptr(key+"\n")
		}, fakeMatches, "", func(*ComputeSpec) {}},
		{"scale and description may change", func(r *ComputeRequest) {
			r.MaxNodes, r.Description = ptr(int64(10)), ptr("bigger")
		}, fakeMatches, "", func(s *ComputeSpec) { s.Scale.MaxNodes, s.Description = 10, "bigger" }},
		{"remote login may change", func(r *ComputeRequest) { r.RemoteLogin = ptr("Enabled") }, fakeMatches, "", func(s *ComputeSpec) { s.RemoteLogin = "Enabled" }},
		{"vmSize change", func(r *ComputeRequest) { r.VMSize = ptr("Standard_D2_v2") }, fakeMatches, pp + "vmSize", nil},
		{"priority change", func(r *ComputeRequest) { r.VMPriority = ptr("Dedicated") }, fakeMatches, pp + "vmPriority", nil},
		{"admin user change", func(r *ComputeRequest) { r.AdminUser = ptr("bob") }, fakeMatches, cred + "adminUserName", nil},
		{"ssh key change", func(r *ComputeRequest) { r.SSHKey = ptr(otherKey) }, fakeMatches, cred + "adminUserSshPublicKey", nil},
		{"password change", func(r *ComputeRequest) { r.Password = ptr("An0therSecret!") }, fakeMatches, cred + "adminUserPassword", nil},
		{"password without a matcher", func(r *ComputeRequest) { r.Password = ptr("Sup3rSecret!!") }, nil, cred + "adminUserPassword", nil},
	}
	for _, tt := range tests {
		req := validRequest("cpu-cluster")
		tt.req(&req)
		got, err := ValidateCompute(req, testWorkspace, testRegion, &existing, tt.matches)
		if tt.wantField != "" {
			fe := wantFieldError(t, tt.name, err, CodeImmutable, tt.wantField)
			if fe != nil && req.Password != nil && strings.Contains(fe.Message, *req.Password) {
				t.Errorf("%s: error %q repeats the password", tt.name, fe.Message)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: ValidateCompute error: %v", tt.name, err)
			continue
		}
		want := ComputeSpec{
			Name:        "cpu-cluster",
			VMSize:      mustSize(t, "Standard_DS3_v2"),
			Priority:    PriorityLowPriority,
			Scale:       ScaleSettings{MaxNodes: 4, IdleTime: DefaultIdleTime},
			AdminUser:   "azureuser",
			SSHKey:      key,
			RemoteLogin: "Disabled",
		}
		tt.want(&want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: ValidateCompute spec mismatch (-want +got):\n%s", tt.name, diff)
		}
	}

	// A compute created without credentials cannot gain them.
	bare := existing
	bare.Credentials = Credentials{}
	req := validRequest("cpu-cluster")
	req.AdminUser, req.Password = ptr("azureuser"), ptr("Sup3rSecret!!")
	_, err = ValidateCompute(req, testWorkspace, testRegion, &bare, fakeMatches)
	wantFieldError(t, "adding credentials", err, CodeImmutable, cred+"adminUserName")
	req.AdminUser = nil
	_, err = ValidateCompute(req, testWorkspace, testRegion, &bare, fakeMatches)
	wantFieldError(t, "adding a password", err, CodeImmutable, cred+"adminUserPassword")
}

func TestValidateScale(t *testing.T) {
	current := ScaleSettings{MinNodes: 1, MaxNodes: 4, IdleTime: 5 * time.Minute}
	tests := []struct {
		name      string
		min, max  *int64
		idle      *string
		want      ScaleSettings
		wantField string
	}{
		{"max only keeps min and idle", nil, ptr(int64(8)), nil, ScaleSettings{MinNodes: 1, MaxNodes: 8, IdleTime: 5 * time.Minute}, ""},
		{"all given", ptr(int64(0)), ptr(int64(2)), ptr("PT1H"), ScaleSettings{MaxNodes: 2, IdleTime: time.Hour}, ""},
		{"no max", nil, nil, nil, ScaleSettings{}, "properties.properties.scaleSettings.maxNodeCount"},
		{"max below current min", nil, ptr(int64(0)), nil, ScaleSettings{}, "properties.properties.scaleSettings.minNodeCount"},
	}
	for _, tt := range tests {
		got, err := ValidateScale(tt.min, tt.max, tt.idle, current)
		if tt.wantField != "" {
			wantFieldError(t, tt.name, err, CodeInvalidParameter, tt.wantField)
			continue
		}
		if err != nil {
			t.Errorf("%s: ValidateScale error: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: ValidateScale mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}
