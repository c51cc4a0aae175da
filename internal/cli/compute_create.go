package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"kumo/api"
	"kumo/client"
)

// ComputeCreateOptions are the inputs of kumo compute create.
type ComputeCreateOptions struct {
	commonOptions
	// File is an AML v2 compute YAML file whose fields the flags override;
	// "" reads none.
	File                    string
	Name                    string
	Type                    string
	Size                    string
	MinInstances            int
	MaxInstances            int
	IdleTimeBeforeScaleDown int // seconds
	Tier                    string
	AdminUsername           string
	AdminPassword           string
	SSHKeyValue             string // a public key, or @file
	// SSHPublicAccessEnabled is nil when the flag is not given.
	SSHPublicAccessEnabled *bool
	Description            string
	Tags                   []string
	Location               string
	// NoWait returns once the server accepted the request.
	NoWait bool
	// Set lists the flags given on the command line, by name; a flag not
	// in it takes the file's value when the file has one.
	Set map[string]bool
}

// NewCmdComputeCreate returns "kumo compute create".
func NewCmdComputeCreate(f *Factory, runF func(*ComputeCreateOptions) error) *cobra.Command {
	opts := &ComputeCreateOptions{commonOptions: f.options()}
	var sshPublic bool
	run := runE(f, opts, runF, computeCreateRun)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a compute cluster, or change an existing one, and wait for it",
		Long: "Create an AmlCompute cluster from flags or from an AML v2 compute YAML file\n" +
			"(-f; flags override the file's fields). Without --no-wait, print the progress\n" +
			"on stderr as the AML SDK's wait_for_completion(show_output=True) does until the\n" +
			"minimum number of nodes is ready.\n\n" +
			"On an existing name, create changes the cluster to the settings given (flags\n" +
			"not given take their defaults, as a PUT does), says it was updated and lists\n" +
			"what changed. It refuses to change what is fixed at creation (size, tier,\n" +
			"admin credentials), naming the field.",
		Example: "  kumo compute create --name cpu-cluster --size STANDARD_D2_V2 --max-instances 4 --idle-time-before-scale-down 2400\n" +
			"  kumo compute create -f compute.yml --max-instances 8",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Set = map[string]bool{}
			cmd.Flags().Visit(func(fl *pflag.Flag) { opts.Set[fl.Name] = true })
			if opts.Set["ssh-public-access-enabled"] {
				opts.SSHPublicAccessEnabled = &sshPublic
			}
			return run(cmd, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.File, "file", "f", "", "AML v2 compute YAML file (type: amlcompute)")
	fl.StringVarP(&opts.Name, "name", "n", "", "compute name: 2 to 16 letters, digits and - (required here or in the file)")
	fl.StringVar(&opts.Type, "type", "amlcompute", "compute type; only amlcompute")
	fl.StringVar(&opts.Size, "size", client.DefaultVMSize, "VM size; see kumo compute list-sizes")
	fl.IntVar(&opts.MinInstances, "min-instances", 0, "minimum number of nodes")
	fl.IntVar(&opts.MaxInstances, "max-instances", 4, "maximum number of nodes")
	fl.IntVar(&opts.IdleTimeBeforeScaleDown, "idle-time-before-scale-down", 120, "seconds a node sits idle before it is removed")
	fl.StringVar(&opts.Tier, "tier", "dedicated", "VM priority: dedicated or low_priority")
	fl.StringVar(&opts.AdminUsername, "admin-username", "", "SSH user created on every node")
	fl.StringVar(&opts.AdminPassword, "admin-password", "", "password of the SSH user")
	fl.StringVar(&opts.SSHKeyValue, "ssh-key-value", "", "SSH public key of the SSH user, or @file")
	fl.BoolVar(&sshPublic, "ssh-public-access-enabled", false, "open the nodes' SSH ports")
	fl.StringVar(&opts.Description, "description", "", "description")
	fl.StringSliceVar(&opts.Tags, "tags", nil, "tags as key=value (repeat or separate with commas)")
	fl.StringVarP(&opts.Location, "location", "l", "", "location (default: the workspace's)")
	fl.BoolVar(&opts.NoWait, "no-wait", false, "do not wait for the cluster")
	return cmd
}

func computeCreateRun(opts *ComputeCreateOptions) error {
	if opts.File != "" {
		spec, err := readComputeFile(opts.File, opts.IO.ErrOut)
		if err != nil {
			return err
		}
		spec.applyTo(opts)
	}
	if opts.Name == "" {
		return errors.New("a compute name is required: give --name or name: in the file")
	}
	if !strings.EqualFold(opts.Type, "amlcompute") {
		return fmt.Errorf("compute type %q is not supported; kumo serves amlcompute", opts.Type)
	}
	switch strings.ToLower(opts.Tier) {
	case "dedicated", "low_priority", "lowpriority":
	default:
		return fmt.Errorf("--tier must be dedicated or low_priority, not %q", opts.Tier)
	}
	if opts.MaxInstances < 1 {
		return fmt.Errorf("--max-instances must be at least 1")
	}
	tags, err := parseTags(opts.Tags)
	if err != nil {
		return err
	}
	key, err := readValueOrFile(opts.SSHKeyValue)
	if err != nil {
		return fmt.Errorf("--ssh-key-value: %w", err)
	}
	cfg := client.AmlComputeProvisioningConfiguration{
		VMSize:                     opts.Size,
		VMPriority:                 opts.Tier,
		MinNodes:                   opts.MinInstances,
		MaxNodes:                   opts.MaxInstances,
		IdleSecondsBeforeScaledown: opts.IdleTimeBeforeScaleDown,
		AdminUsername:              opts.AdminUsername,
		AdminUserPassword:          opts.AdminPassword,
		AdminUserSSHKey:            key,
		Location:                   opts.Location,
		Description:                opts.Description,
		Tags:                       tags,
	}
	if opts.SSHPublicAccessEnabled != nil {
		cfg.RemoteLoginPortPublicAccess = string(api.RemoteLoginDisabled)
		if *opts.SSHPublicAccessEnabled {
			cfg.RemoteLoginPortPublicAccess = string(api.RemoteLoginEnabled)
		}
	}
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	existing, err := ws.ComputeTarget(opts.Ctx, opts.Name)
	switch {
	case errors.Is(err, client.ErrComputeTargetNotFound):
		existing = nil
	case err != nil:
		return err
	}
	var changes []fieldChange
	if existing != nil {
		changes = computeChanges(existing.Resource(), cfg)
		if err := checkFixed(existing.Name(), changes); err != nil {
			return err
		}
	}
	ct, err := ws.CreateComputeTarget(opts.Ctx, opts.Name, cfg)
	if err != nil {
		return explainFixed(opts.Name, err)
	}
	if existing != nil {
		reportUpdate(opts.IO.ErrOut, existing.Name(), changes)
	}
	if !opts.NoWait {
		// Progress is for people: stdout keeps only the result.
		if err := ct.WaitForCompletion(opts.Ctx, opts.IO.ErrOut); err != nil {
			return err
		}
	}
	return printComputes(opts.IO.Out, opts.Output, true, []api.ComputeResource{ct.Resource()})
}

// fieldChange is one setting that a create on an existing name changes,
// named as the YAML file and the flags name it.
type fieldChange struct {
	Field    string // such as "max_instances"
	Old, New string
	// Fixed is set when the field cannot change after creation.
	Fixed bool
}

// computeChanges compares an existing cluster with the settings a create
// asks for.
func computeChanges(r api.ComputeResource, cfg client.AmlComputeProvisioningConfiguration) []fieldChange {
	p := r.Properties
	if p == nil || p.Properties == nil {
		return nil
	}
	a := p.Properties
	var out []fieldChange
	add := func(field, old, new string, fixed bool) {
		if old != new {
			out = append(out, fieldChange{Field: field, Old: old, New: new, Fixed: fixed})
		}
	}
	size := cfg.VMSize
	if size == "" {
		size = client.DefaultVMSize
	}
	if a.VMSize != nil && !strings.EqualFold(*a.VMSize, size) {
		add("size", *a.VMSize, size, true)
	}
	if a.VMPriority != nil {
		add("tier", tierName(*a.VMPriority), tierName(cfg.VMPriority), true)
	}
	if a.UserAccountCredentials != nil || cfg.AdminUsername != "" {
		old := ""
		if c := a.UserAccountCredentials; c != nil && c.AdminUserName != nil {
			old = *c.AdminUserName
		}
		if cfg.AdminUsername != "" {
			add("ssh_settings.admin_username", orDash(old), cfg.AdminUsername, true)
		}
	}
	if ss := a.ScaleSettings; ss != nil {
		add("min_instances", derefInt(ss.MinNodeCount), fmt.Sprint(cfg.MinNodes), false)
		add("max_instances", derefInt(ss.MaxNodeCount), fmt.Sprint(cfg.MaxNodes), false)
		idle := cfg.IdleSecondsBeforeScaledown
		if idle == 0 {
			idle = client.DefaultIdleSecondsBeforeScaledown
		}
		add("idle_time_before_scale_down", idleSeconds(ss.NodeIdleTimeBeforeScaleDown), fmt.Sprintf("%ds", idle), false)
	}
	desc := ""
	if p.Description != nil {
		desc = *p.Description
	}
	add("description", fmt.Sprintf("%q", desc), fmt.Sprintf("%q", cfg.Description), false)
	if len(r.Tags) > 0 || len(cfg.Tags) > 0 {
		add("tags", orDash(formatTags(r.Tags)), orDash(formatTags(cfg.Tags)), false)
	}
	if cfg.RemoteLoginPortPublicAccess != "" && a.RemoteLoginPortPublicAccess != nil {
		add("ssh_public_access_enabled", sshAccess(*a.RemoteLoginPortPublicAccess), sshAccess(cfg.RemoteLoginPortPublicAccess), false)
	}
	return out
}

// tierName writes a VM priority as --tier takes it.
func tierName(p string) string {
	switch strings.ToLower(strings.ReplaceAll(p, "_", "")) {
	case "", "dedicated":
		return "dedicated"
	case "lowpriority":
		return "low_priority"
	}
	return p
}

// sshAccess writes remoteLoginPortPublicAccess as the YAML's
// ssh_public_access_enabled.
func sshAccess(v string) string {
	return map[bool]string{true: "true", false: "false"}[strings.EqualFold(v, string(api.RemoteLoginEnabled))]
}

// checkFixed refuses changes to fields fixed at creation before anything
// is sent.
func checkFixed(name string, changes []fieldChange) error {
	for _, c := range changes {
		if c.Fixed {
			return fmt.Errorf("compute %s exists and its %s cannot change (it is %s; this asks for %s): "+
				"delete it and create it again to change it, or create a cluster with another name",
				name, c.Field, c.Old, c.New)
		}
	}
	return nil
}

// fixedTargets names, for the server's error targets of fields fixed at
// creation, the YAML field and flag that set them.
var fixedTargets = map[string]string{
	"properties.properties.vmSize":                                       "size (--size)",
	"properties.properties.vmPriority":                                   "tier (--tier)",
	"properties.properties.userAccountCredentials.adminUserName":         "ssh_settings.admin_username (--admin-username)",
	"properties.properties.userAccountCredentials.adminUserPassword":     "ssh_settings.admin_password (--admin-password)",
	"properties.properties.userAccountCredentials.adminUserSshPublicKey": "ssh_settings.ssh_key_value (--ssh-key-value)",
}

// explainFixed rewords the server's refusal to change a field fixed at
// creation, which the client cannot see beforehand for secrets, in the
// CLI's terms.
func explainFixed(name string, err error) error {
	var e *client.Error
	if !errors.As(err, &e) || e.Code != api.CodeImmutableProperty {
		return err
	}
	field, ok := fixedTargets[e.Target]
	if !ok {
		return err
	}
	return fmt.Errorf("compute %s exists and its %s cannot change after creation: delete it and create it again to change it (%w)", name, field, err)
}

// reportUpdate tells the user that create changed an existing cluster,
// and what changed, on w.
func reportUpdate(w io.Writer, name string, changes []fieldChange) {
	if len(changes) == 0 {
		fmt.Fprintf(w, "Compute %s already exists with these settings; nothing changed.\n", escapeControl(name))
		return
	}
	fmt.Fprintf(w, "Compute %s already existed and was updated:\n", escapeControl(name))
	for _, c := range changes {
		fmt.Fprintf(w, "  %s: %s -> %s\n", c.Field, escapeControl(c.Old), escapeControl(c.New))
	}
}
