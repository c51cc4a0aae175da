package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"kumo/api"
	"kumo/client"
)

// ComputeCreateOptions are the inputs of kumo compute create.
type ComputeCreateOptions struct {
	commonOptions
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
}

// NewCmdComputeCreate returns "kumo compute create".
func NewCmdComputeCreate(f *Factory, runF func(*ComputeCreateOptions) error) *cobra.Command {
	opts := &ComputeCreateOptions{commonOptions: f.options()}
	var sshPublic bool
	run := runE(f, opts, runF, computeCreateRun)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a compute cluster and wait for it",
		Long: "Create an AmlCompute cluster. Without --no-wait, print the progress as the AML\n" +
			"SDK's wait_for_completion(show_output=True) does until the minimum number of\n" +
			"nodes is ready.",
		Example: "  kumo compute create --name cpu-cluster --size STANDARD_D2_V2 --max-instances 4 --idle-time-before-scale-down 2400",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("ssh-public-access-enabled") {
				opts.SSHPublicAccessEnabled = &sshPublic
			}
			return run(cmd, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Name, "name", "n", "", "compute name: 2 to 16 letters, digits and - (required)")
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
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func computeCreateRun(opts *ComputeCreateOptions) error {
	if !strings.EqualFold(opts.Type, "amlcompute") {
		return fmt.Errorf("--type %q is not supported; kumo serves amlcompute", opts.Type)
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
	ct, err := ws.CreateComputeTarget(opts.Ctx, opts.Name, cfg)
	if err != nil {
		return err
	}
	if !opts.NoWait {
		// Keep stdout clean JSON when JSON is asked for.
		progress := opts.IO.Out
		if opts.Output == OutputJSON {
			progress = opts.IO.ErrOut
		}
		if err := ct.WaitForCompletion(opts.Ctx, progress); err != nil {
			return err
		}
	}
	return printComputes(opts.IO.Out, opts.Output, true, []api.ComputeResource{ct.Resource()})
}
