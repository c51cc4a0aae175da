package cli

import (
	"github.com/spf13/cobra"
)

// TokenListOptions are the inputs of kumo token list.
type TokenListOptions struct {
	commonOptions
}

// NewCmdTokenList returns "kumo token list".
func NewCmdTokenList(f *Factory, runF func(*TokenListOptions) error) *cobra.Command {
	opts := &TokenListOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API tokens, without their secrets",
		Args:  cobra.NoArgs,
		RunE:  runE(f, opts, runF, tokenListRun),
	}
	return cmd
}

func tokenListRun(opts *TokenListOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	toks, err := ws.Tokens(opts.Ctx)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		return printJSON(opts.IO.Out, toks)
	}
	t := newTable(opts.IO.Out, "ID", "NAME", "ROLE", "CREATED", "REVOKED")
	for _, tok := range toks {
		t.row(tok.ID, tok.Name, tok.Role, orDash(tok.CreatedAt), orDash(tok.RevokedAt))
	}
	return t.flush()
}
