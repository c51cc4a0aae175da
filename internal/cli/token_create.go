package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"kumo/api"
)

// TokenCreateOptions are the inputs of kumo token create.
type TokenCreateOptions struct {
	commonOptions
	Name string
	Role string
}

// NewCmdTokenCreate returns "kumo token create".
func NewCmdTokenCreate(f *Factory, runF func(*TokenCreateOptions) error) *cobra.Command {
	opts := &TokenCreateOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create an API token and print its secret once",
		Example: "  kumo token create --name ci --role contributor",
		Args:    cobra.NoArgs,
		RunE:    runE(f, opts, runF, tokenCreateRun),
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "token name (required)")
	cmd.Flags().StringVar(&opts.Role, "role", string(api.RoleReader), "role: reader, contributor or owner")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func tokenCreateRun(opts *TokenCreateOptions) error {
	role := api.TokenRole(opts.Role)
	switch role {
	case api.RoleReader, api.RoleContributor, api.RoleOwner:
	default:
		return fmt.Errorf("--role must be reader, contributor or owner, not %q", opts.Role)
	}
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	tok, err := ws.CreateToken(opts.Ctx, opts.Name, role)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		return printJSON(opts.IO.Out, tok)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Created token %s (%s, role %s). Copy the secret now: it is not shown again.\n", escapeControl(tok.ID), escapeControl(tok.Name), tok.Role)
	fmt.Fprintln(opts.IO.Out, tok.Token)
	return nil
}
