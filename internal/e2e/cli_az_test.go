package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"kumo/api"
)

// cliResult is what one run of the kumo CLI printed, and its exit status.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// kumoCLI runs the kumo CLI in dir and returns stdout and stderr apart.
func kumoCLI(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kumo, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kumo %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCLI runs the kumo CLI and fails the test unless it exits 0.
func mustCLI(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	r := kumoCLI(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("kumo %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// wantContains fails unless s holds every one of wants.
func wantContains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// TestCLICommandsBehaveAsAz checks the az habits: unknown commands fail
// with suggestions, help lists commands and flags, names are positional
// or -n, -w and -g are accepted everywhere.
func TestCLICommandsBehaveAsAz(t *testing.T) {
	s := startServer(t, "")
	dir := s.dir

	for _, tt := range []struct {
		args    []string
		suggest string
	}{
		{[]string{"compute", "lst"}, "list"},
		{[]string{"cmpute", "list"}, "compute"},
		{[]string{"token", "revok", "x"}, "revoke"},
		{[]string{"workspace", "shw"}, "show"},
		{[]string{"job", "lsit"}, "list"},
	} {
		r := kumoCLI(t, dir, tt.args...)
		if r.code == 0 || r.stdout != "" {
			t.Errorf("kumo %s: want a non-zero exit and nothing on stdout; %s", strings.Join(tt.args, " "), r)
		}
		wantContains(t, "kumo "+strings.Join(tt.args, " "), r.stderr, "unknown command", "Did you mean this?", tt.suggest)
	}

	help := mustCLI(t, dir, "--help").stdout
	wantContains(t, "kumo --help", help, "compute", "job", "login", "token", "workspace", "--output", "--query")
	help = mustCLI(t, dir, "compute", "--help").stdout
	wantContains(t, "kumo compute --help", help, "create", "show", "list", "update", "delete", "list-nodes", "list-sizes",
		"list-usage", "events", "--workspace-name", "--resource-group", "--output", "--query")
	help = mustCLI(t, dir, "compute", "create", "--help").stdout
	wantContains(t, "kumo compute create --help", help, "-f, --file", "-n, --name", "--size", "--min-instances", "--max-instances",
		"--idle-time-before-scale-down", "--tier", "-w, --workspace-name", "-g, --resource-group", "-o, --output", "--query")
	for group, cmds := range map[string][]string{
		"job":       {"create", "submit", "list", "show", "logs", "cancel", "download"},
		"workspace": {"create", "show", "list", "delete"},
		"token":     {"create", "list", "revoke"},
	} {
		help := mustCLI(t, dir, group, "--help").stdout
		wantContains(t, "kumo "+group+" --help", help, append(cmds, "-w, --workspace-name", "-g, --resource-group", "-o, --output", "--query")...)
	}
	help = mustCLI(t, dir, "login", "--help").stdout
	wantContains(t, "kumo login --help", help, "--endpoint", "--token", "--ca-file", "-w, --workspace-name", "-g, --resource-group")
	// A group alone prints its help and succeeds, as az does.
	if r := mustCLI(t, dir, "compute"); !strings.Contains(r.stdout, "list-usage") {
		t.Errorf("kumo compute: %s", r)
	}

	mustCLI(t, dir, "compute", "create", "-n", "cpu-cluster", "--max-instances", "2", "--no-wait")
	for _, args := range [][]string{
		{"compute", "show", "cpu-cluster"},
		{"compute", "show", "-n", "cpu-cluster"},
		{"compute", "show", "--name", "cpu-cluster"},
		{"compute", "show", "cpu-cluster", "-w", "default", "-g", "default"},
		{"compute", "list-nodes", "cpu-cluster"},
		{"compute", "events", "cpu-cluster"},
	} {
		mustCLI(t, dir, args...)
	}
	r := kumoCLI(t, dir, "compute", "show", "cpu-cluster", "-n", "other")
	if r.code == 0 || !strings.Contains(r.stderr, "given twice") {
		t.Errorf("show NAME -n OTHER: %s", r)
	}
	r = kumoCLI(t, dir, "compute", "show")
	if r.code == 0 || !strings.Contains(r.stderr, "a compute name is required") {
		t.Errorf("show without a name: %s", r)
	}
	// -w and -g override the configuration on every command.
	for _, args := range [][]string{
		{"compute", "list", "-w", "nosuch"},
		{"compute", "show", "cpu-cluster", "--workspace-name", "nosuch"},
		{"job", "list", "-w", "nosuch"},
		{"job", "list", "-g", "nosuch"},
		{"workspace", "show", "-w", "nosuch"},
	} {
		r := kumoCLI(t, dir, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "nosuch") {
			t.Errorf("kumo %s: want an error naming the missing workspace or group; %s", strings.Join(args, " "), r)
		}
	}
	// ... and reach another workspace when it exists.
	mustCLI(t, dir, "workspace", "create", "-n", "team")
	mustCLI(t, dir, "compute", "create", "-n", "team-cluster", "--max-instances", "1", "--no-wait", "-w", "team")
	if r := mustCLI(t, dir, "compute", "list", "-w", "team", "--query", "[].name", "-o", "tsv"); r.stdout != "team-cluster\n" {
		t.Errorf("compute list -w team: %s", r)
	}
	if r := mustCLI(t, dir, "compute", "list", "--query", "[].name", "-o", "tsv"); r.stdout != "cpu-cluster\n" {
		t.Errorf("compute list in the config's workspace: %s", r)
	}
	mustCLI(t, dir, "compute", "delete", "team-cluster", "-w", "team", "--yes")
	mustCLI(t, dir, "compute", "update", "cpu-cluster", "--max-instances", "3")
	if r := mustCLI(t, dir, "compute", "show", "cpu-cluster", "--query", "properties.properties.scaleSettings.maxNodeCount", "-o", "tsv"); r.stdout != "3\n" {
		t.Errorf("max after update: %s", r)
	}
	mustCLI(t, dir, "compute", "delete", "cpu-cluster", "--yes")
	r = kumoCLI(t, dir, "compute", "show", "cpu-cluster")
	if r.code == 0 || !strings.Contains(r.stderr, "ResourceNotFound") {
		t.Errorf("show after delete: %s", r)
	}
}

// TestCLIOutputFormats checks -o table|json|yaml|tsv, --query, durations
// in seconds, progress on stderr and escaped control characters.
func TestCLIOutputFormats(t *testing.T) {
	s := startServer(t, "")
	dir := s.dir

	r := mustCLI(t, dir, "compute", "create", "--name", "cpu-cluster", "--max-instances", "4", "--idle-time-before-scale-down", "2400", "-o", "json")
	var created api.ComputeResource
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("create -o json: stdout is not one JSON object (progress must go to stderr): %v\n%s", err, r)
	}
	// JSON keeps the ARM shape of the API.
	if created.Type != api.TypeCompute || created.Properties.ComputeType != api.ComputeTypeAmlCompute ||
		*created.Properties.Properties.ScaleSettings.NodeIdleTimeBeforeScaleDown != "PT40M" {
		t.Errorf("create -o json is not the ARM resource: %s", r.stdout)
	}
	wantContains(t, "create progress on stderr", r.stderr, "Minimum number of nodes requested have been provisioned")

	table := mustCLI(t, dir, "compute", "list").stdout
	wantContains(t, "compute list", table, "IDLE", "2400s")
	if strings.Contains(table, "PT40M") {
		t.Errorf("compute list shows the ISO duration, not seconds:\n%s", table)
	}
	wantContains(t, "compute show", mustCLI(t, dir, "compute", "show", "cpu-cluster").stdout, "idle time before scale down 2400s")

	yaml := mustCLI(t, dir, "compute", "show", "cpu-cluster", "-o", "yaml").stdout
	wantContains(t, "compute show -o yaml", yaml, "name: cpu-cluster\n", "  computeType: AmlCompute\n", "nodeIdleTimeBeforeScaleDown: PT40M\n")
	if r := mustCLI(t, dir, "compute", "list", "--query", "[].name", "-o", "tsv"); r.stdout != "cpu-cluster\n" {
		t.Errorf("list --query [].name -o tsv: %s", r)
	}
	if r := mustCLI(t, dir, "compute", "list", "--query", "[].[name, properties.properties.vmSize]", "-o", "tsv"); r.stdout != "cpu-cluster\tStandard_D2_v2\n" {
		t.Errorf("list --query -o tsv: %s", r)
	}
	r = mustCLI(t, dir, "compute", "list", "--query", "[0].properties.properties.scaleSettings", "-o", "json")
	var ss api.ScaleSettings
	if err := json.Unmarshal([]byte(r.stdout), &ss); err != nil || ss.MaxNodeCount == nil || *ss.MaxNodeCount != 4 {
		t.Errorf("--query -o json: %v %s", err, r)
	}
	r = mustCLI(t, dir, "compute", "list", "--query", "[].{name:name, max:properties.properties.scaleSettings.maxNodeCount}", "-o", "table")
	wantContains(t, "--query -o table", r.stdout, "NAME", "MAX", "cpu-cluster", "4")
	if r := mustCLI(t, dir, "compute", "list-sizes", "-o", "tsv", "--query", "[?name=='Standard_D2_v2'].vCPUs"); r.stdout != "2\n" {
		t.Errorf("list-sizes --query: %s", r)
	}
	for _, args := range [][]string{
		{"compute", "list", "-o", "xml"},
		{"compute", "list", "--query", "[?"},
	} {
		r := kumoCLI(t, dir, args...)
		if r.code == 0 || r.stdout != "" {
			t.Errorf("kumo %s: want an error and no output: %s", strings.Join(args, " "), r)
		}
	}

	// A name with control characters is escaped in tables and tsv, and
	// kept as it is in JSON.
	evil := "evil\x1b[2J\x1b]0;pwned\x07\nname"
	mustCLI(t, dir, "token", "create", "--name", evil)
	for _, args := range [][]string{{"token", "list"}, {"token", "list", "-o", "tsv"}} {
		out := mustCLI(t, dir, args...).stdout
		if strings.ContainsAny(out, "\x1b\x07") {
			t.Errorf("kumo %s prints raw control characters: %q", strings.Join(args, " "), out)
		}
		wantContains(t, "kumo "+strings.Join(args, " "), out, `evil\x1b[2J\x1b]0;pwned\a\nname`)
	}
	var toks []api.TokenInfo
	if err := json.Unmarshal([]byte(mustCLI(t, dir, "token", "list", "-o", "json").stdout), &toks); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tok := range toks {
		found = found || tok.Name == evil
	}
	if !found {
		t.Errorf("token list -o json lost the name's exact bytes: %+v", toks)
	}
}

// TestCLIComputeCreateOnExistingName checks that create from flags or a
// YAML file on an existing name says it updated the cluster, lists what
// changed, and refuses fields fixed at creation.
func TestCLIComputeCreateOnExistingName(t *testing.T) {
	s := startServer(t, "")
	dir := s.dir
	file := filepath.Join(dir, "compute.yml")
	yml := fmt.Sprintf(`$schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json
name: yaml-cluster
type: amlcompute
size: STANDARD_D2_V2
min_instances: 0
max_instances: 3
idle_time_before_scale_down: 2400
tier: dedicated
description: from yaml
tags:
  team: ml
ssh_settings:
  admin_username: azureuser
  ssh_key_value: %s
network_settings:
  vnet_name: none
`, testSSHKey(1))
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustCLI(t, dir, "compute", "create", "-f", file)
	wantContains(t, "create -f", r.stderr, "ignoring keys kumo does not support: network_settings")
	if strings.Contains(r.stderr, "updated") {
		t.Errorf("a new cluster is reported as updated: %s", r)
	}
	c := getCompute(t, s, "yaml-cluster")
	a := c.Properties.Properties
	if *a.ScaleSettings.MaxNodeCount != 3 || *a.ScaleSettings.NodeIdleTimeBeforeScaleDown != "PT40M" || c.Tags["team"] != "ml" ||
		*c.Properties.Description != "from yaml" || a.UserAccountCredentials == nil || *a.UserAccountCredentials.AdminUserName != "azureuser" {
		t.Errorf("cluster from YAML: %+v %+v", c, a)
	}

	// The same file again changes nothing and says so.
	r = mustCLI(t, dir, "compute", "create", "-f", file)
	wantContains(t, "create -f again", r.stderr, "already exists with these settings; nothing changed")

	// Flags override the file; the change is reported field by field.
	r = mustCLI(t, dir, "compute", "create", "-f", file, "--max-instances", "2", "--idle-time-before-scale-down", "60")
	wantContains(t, "create -f --max-instances 2", r.stderr, "Compute yaml-cluster already existed and was updated:",
		"max_instances: 3 -> 2", "idle_time_before_scale_down: 2400s -> 60s")
	a = getCompute(t, s, "yaml-cluster").Properties.Properties
	if *a.ScaleSettings.MaxNodeCount != 2 || *a.ScaleSettings.NodeIdleTimeBeforeScaleDown != "PT1M" {
		t.Errorf("after update: %+v", a.ScaleSettings)
	}

	// Fields fixed at creation are refused by name, and nothing changes.
	for _, tt := range []struct {
		args  []string
		field string
	}{
		{[]string{"--size", "Standard_D1_v2"}, "size"},
		{[]string{"--tier", "low_priority"}, "tier"},
		{[]string{"--admin-username", "root2"}, "ssh_settings.admin_username"},
		{[]string{"--ssh-key-value", testSSHKey(2)}, "ssh_settings.ssh_key_value"},
	} {
		args := append([]string{"compute", "create", "-f", file, "--max-instances", "5"}, tt.args...)
		r := kumoCLI(t, dir, args...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.field) || !strings.Contains(r.stderr, "cannot change") {
			t.Errorf("kumo %s: want a refusal naming %s; %s", strings.Join(args, " "), tt.field, r)
		}
	}
	if a := getCompute(t, s, "yaml-cluster").Properties.Properties; *a.ScaleSettings.MaxNodeCount != 2 {
		t.Errorf("a refused create changed the cluster: max %d", *a.ScaleSettings.MaxNodeCount)
	}

	// Flags alone on an existing name: PUT semantics, reported.
	mustCLI(t, dir, "compute", "create", "--name", "flags", "--max-instances", "4", "--idle-time-before-scale-down", "2400")
	r = mustCLI(t, dir, "compute", "create", "--name", "flags", "--max-instances", "2", "--idle-time-before-scale-down", "60")
	wantContains(t, "create on existing name", r.stderr, "already existed and was updated", "max_instances: 4 -> 2")
	if !strings.Contains(r.stdout, "flags") {
		t.Errorf("create prints the cluster on stdout: %s", r)
	}
}

// TestCLIBlockedClusterAndHostCapacity checks that compute list names what
// blocks a cluster (quota, then host capacity) instead of Resizing, and
// that list-usage shows the host's capacity beside the quotas.
func TestCLIBlockedClusterAndHostCapacity(t *testing.T) {
	memGB := hostMemGB(t)
	// Room for one Standard_D2_v2 (7 GB) node, not two.
	ratio := 10.0 / memGB
	s := startServer(t, "", append([]string{"--cpu-overcommit", "1", "--memory-overcommit", strconv.FormatFloat(ratio, 'f', 6, 64)}, fastNodes...)...)
	dir := s.dir

	usage := mustCLI(t, dir, "compute", "list-usage")
	wantContains(t, "list-usage", usage.stdout, "Standard Dv2 Family vCPUs", "quota", "Host vCPUs (region local)",
		"Host memory GB (region local)", "host capacity", fmt.Sprintf("  %d ", runtime.NumCPU()))
	r := mustCLI(t, dir, "compute", "list-usage", "--query", "[?name.value=='hostVCPUs'].limit", "-o", "tsv")
	if r.stdout != fmt.Sprintf("%d\n", runtime.NumCPU()) {
		t.Errorf("host vCPUs limit: %s, want %d", r, runtime.NumCPU())
	}

	// Quota: one D2 node's worth of dedicated vCPUs.
	setQuota(t, s, "standardDv2Family", 2)
	mustCLI(t, dir, "compute", "create", "--name", "quota", "--min-instances", "2", "--max-instances", "2", "--no-wait")
	waitAllocation(t, dir, "quota", "Blocked: QuotaExceeded")
	wantContains(t, "compute show", mustCLI(t, dir, "compute", "show", "quota").stdout, "blocked by QuotaExceeded")
	mustCLI(t, dir, "compute", "delete", "quota", "--yes")
	setQuota(t, s, "standardDv2Family", 100)

	// Host capacity: memory for one D2 node.
	mustCLI(t, dir, "compute", "create", "--name", "capacity", "--min-instances", "2", "--max-instances", "2", "--no-wait")
	waitAllocation(t, dir, "capacity", "Blocked: CapacityExhausted")
	// The one node that fits holds its vCPUs of the host.
	waitFor(t, 60*time.Second, "one D2 node on the host", func() (bool, string) {
		r := mustCLI(t, dir, "compute", "list-usage", "-o", "json")
		var us []api.Usage
		if err := json.Unmarshal([]byte(r.stdout), &us); err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if u.Name.Value == "hostVCPUs" {
				return u.CurrentValue == 2, r.stdout
			}
		}
		return false, r.stdout
	})
	mustCLI(t, dir, "compute", "delete", "capacity", "--yes")
}

// testSSHKey returns a well-formed ed25519 public key line, different for
// each seed.
func testSSHKey(seed byte) string {
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), bytes.Repeat([]byte{seed}, 32)} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " test"
}

// hostMemGB is the host's memory as kumo up reads it.
func hostMemGB(t *testing.T) float64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip("no /proc/meminfo")
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err == nil {
				return kb / (1024 * 1024)
			}
		}
	}
	t.Skip("no MemTotal in /proc/meminfo")
	return 0
}

// setQuota sets the default workspace's vCPU quota of family.
func setQuota(t *testing.T, s *server, family string, limit int64) {
	t.Helper()
	body := api.QuotaUpdateParameters{Value: []api.QuotaBaseProperties{{ID: workspacePath + "/quotas/" + family, Limit: limit}}}
	if status, raw := s.request(context.Background(), "POST", "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.MachineLearningServices/locations/local/updateQuotas", body); status != 200 {
		t.Fatalf("update quota: %d %s", status, raw)
	}
}

// waitAllocation waits until compute list shows want in name's
// ALLOCATION column.
func waitAllocation(t *testing.T, dir, name, want string) {
	t.Helper()
	waitFor(t, 60*time.Second, name+" allocation "+want, func() (bool, string) {
		out := mustCLI(t, dir, "compute", "list").stdout
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, name+" ") {
				return strings.HasSuffix(strings.TrimSpace(line), want), line
			}
		}
		return false, out
	})
}

// TestCLILogin checks that kumo login tests the endpoint, CA and token
// with one request before it writes anything.
func TestCLILogin(t *testing.T) {
	s := startServer(t, "")
	ca := filepath.Join(s.dir, ".kumo", "ca.pem")
	dir := t.TempDir()
	cfg := filepath.Join(dir, ".kumo", "config.json")
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"bogus token", []string{"--endpoint", s.base, "--token", "kumo_bogus", "--ca-file", ca}, []string{"AuthenticationFailed", "nothing written"}},
		{"unknown CA", []string{"--endpoint", s.base, "--token", s.cfg.Token}, []string{"unknown authority", "--ca-file", "ca.pem"}},
		{"http off loopback", []string{"--endpoint", "http://192.0.2.10:8443", "--token", s.cfg.Token}, []string{"plain http", "https://"}},
		{"nobody listens", []string{"--endpoint", "https://127.0.0.1:1", "--token", s.cfg.Token, "--ca-file", ca}, []string{"connection refused"}},
		{"no such workspace", []string{"--endpoint", s.base, "--token", s.cfg.Token, "--ca-file", ca, "-w", "nosuch"}, []string{"nosuch"}},
	} {
		r := kumoCLI(t, dir, append([]string{"login"}, tt.args...)...)
		if r.code == 0 {
			t.Errorf("%s: login succeeded: %s", tt.name, r)
		}
		wantContains(t, tt.name, r.stderr, tt.want...)
		if _, err := os.Stat(cfg); err == nil {
			t.Fatalf("%s: login wrote %s", tt.name, cfg)
		}
	}
	// A command run with a config that lacks the CA explains it too.
	r := mustCLI(t, dir, "login", "--endpoint", s.base, "--token", s.cfg.Token, "--ca-file", ca)
	wantContains(t, "login", r.stderr, "Logged in to "+s.base, "workspace default/default in local")
	mustCLI(t, dir, "compute", "list")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var c clientConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	c.CAFile = ""
	raw, _ = json.Marshal(c)
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r = kumoCLI(t, dir, "compute", "list")
	if r.code == 0 {
		t.Fatalf("compute list without the CA succeeded: %s", r)
	}
	wantContains(t, "compute list without the CA", r.stderr, "certificate authority this client does not trust", "--ca-file")
}
