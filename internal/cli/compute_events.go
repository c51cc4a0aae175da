package cli

import (
	"github.com/spf13/cobra"

	"kumo/api"
)

// ComputeEventsOptions are the inputs of kumo compute events.
type ComputeEventsOptions struct {
	commonOptions
	Name string
}

// NewCmdComputeEvents returns "kumo compute events".
func NewCmdComputeEvents(f *Factory, runF func(*ComputeEventsOptions) error) *cobra.Command {
	opts := &ComputeEventsOptions{commonOptions: f.options()}
	cmd := withComputeName(&cobra.Command{
		Use:   "events NAME",
		Short: "List a compute cluster's scaling decisions and incidents, oldest first",
	}, &opts.Name, runE(f, opts, runF, computeEventsRun))
	return cmd
}

func computeEventsRun(opts *ComputeEventsOptions) error {
	ct, err := opts.loadCompute(opts.Name)
	if err != nil {
		return err
	}
	events, err := ct.Events(opts.Ctx)
	if err != nil {
		return err
	}
	if opts.Output == OutputJSON {
		if events == nil {
			events = []api.ComputeEvent{}
		}
		return printJSON(opts.IO.Out, events)
	}
	t := newTable(opts.IO.Out, "TIME", "KIND", "MESSAGE")
	for _, e := range events {
		t.row(formatTime(e.Time), orDash(e.Kind), e.Message)
	}
	return t.flush()
}
