package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"kumo/api"
)

// WaitForCompletion waits for the last create or update started through ct
// and then for the cluster to reach its minimum node count, like AML v1's
// AmlCompute.wait_for_completion. When showOutput is not nil it writes the
// same progress text as v1's show_output=True:
//
//	InProgress.
//	SucceededProvisioning operation finished, operation "Succeeded"
//	Succeeded.Waiting for cluster to scale. 1 out of 2 nodes ready.
//	.
//	AmlCompute wait for completion finished
//
//	Minimum number of nodes requested have been provisioned
//
// It returns an error when the operation fails (an *Error with the
// operation's code and message), when the cluster reaches a terminal Failed
// or Canceled state or reports errors, and when ctx is done before the
// nodes are ready (wrapping ctx.Err()). It honours no timeout of its own:
// bound it with ctx.
func (ct *ComputeTarget) WaitForCompletion(ctx context.Context, showOutput io.Writer) error {
	out := showOutput
	if out == nil {
		out = io.Discard
	}
	if ct.opURL != "" {
		if err := ct.waitOperation(ctx, out); err != nil {
			return err
		}
	}
	return ct.waitForNodes(ctx, out)
}

// operationTerminal reports whether an operation status is final.
func operationTerminal(status string) bool {
	switch status {
	case api.OperationSucceeded, api.OperationFailed, api.OperationCanceled:
		return true
	}
	return false
}

// waitOperation polls ct.opURL until the operation ends. With out not nil
// it writes v1's progress text: the first status, a "." per poll, the new
// status on its own line at each change, then the closing line. A
// non-successful end returns an *Error.
func (ct *ComputeTarget) waitOperation(ctx context.Context, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	var op api.OperationStatus
	r, err := ct.ws.do(ctx, http.MethodGet, ct.opURL, nil, &op)
	if err != nil {
		return fmt.Errorf("poll operation: %w", err)
	}
	state := op.Status
	fmt.Fprint(out, state)
	for !operationTerminal(op.Status) {
		if err := sleep(ctx, ct.ws.opInterval(r.retryAfter)); err != nil {
			fmt.Fprintln(out)
			return fmt.Errorf("poll operation: %w", err)
		}
		op = api.OperationStatus{}
		if r, err = ct.ws.do(ctx, http.MethodGet, ct.opURL, nil, &op); err != nil {
			fmt.Fprintln(out)
			return fmt.Errorf("poll operation: %w", err)
		}
		fmt.Fprint(out, ".")
		if op.Status != state {
			fmt.Fprint(out, "\n"+op.Status)
			state = op.Status
		}
	}
	fmt.Fprintf(out, "Provisioning operation finished, operation \"%s\"\n", state)
	if state == api.OperationSucceeded {
		return nil
	}
	e := &Error{Code: "Operation" + state, Message: "compute operation ended in state " + state}
	if op.Error != nil {
		if op.Error.Code != "" {
			e.Code = op.Error.Code
		}
		if op.Error.Message != "" {
			e.Message = op.Error.Message
		}
	}
	return e
}

// waitForNodes polls the compute until it reaches its minimum node count,
// a terminal state, reports errors, or ctx is done, writing v1's text to
// out.
func (ct *ComputeTarget) waitForNodes(ctx context.Context, out io.Writer) error {
	if err := ct.Refresh(ctx); err != nil {
		return err
	}
	state := ct.ProvisioningState()
	if state != "" {
		fmt.Fprint(out, state)
	}
	var (
		st        *AmlComputeStatus
		minNodes  int
		lastCount = -1
		timedOut  bool
	)
	for {
		st = statusOf(ct.res)
		minNodes = st.ScaleSettings.MinNodes
		if minNodesReached(st, minNodes) || terminal(st.ProvisioningState) || len(st.Errors) > 0 {
			break
		}
		if ready := readyNodes(st); ready > 0 && ready != lastCount {
			fmt.Fprintf(out, "Waiting for cluster to scale. %d out of %d nodes ready.\n", ready, minNodes)
			lastCount = ready
		}
		if sleep(ctx, ct.ws.poll) != nil {
			timedOut = true
			break
		}
		if err := ct.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				timedOut = true
				break
			}
			fmt.Fprintln(out)
			return err
		}
		if s := ct.ProvisioningState(); s != state {
			fmt.Fprint(out, "\n"+string(s))
			state = s
		} else {
			fmt.Fprint(out, ".")
		}
	}
	fmt.Fprint(out, "\n")
	fmt.Fprint(out, "AmlCompute wait for completion finished\n\n")
	switch {
	case timedOut:
		fmt.Fprint(out, "Wait timeout has been reached\n")
		fmt.Fprintf(out, "Current provisioning state of AmlCompute is \"%s\" and current node count is \"%d\"\n", st.ProvisioningState, st.CurrentNodeCount)
		return fmt.Errorf("wait for %d nodes of %s: %w", minNodes, ct.name, ctx.Err())
	case minNodesReached(st, minNodes):
		fmt.Fprint(out, "Minimum number of nodes requested have been provisioned\n")
		return nil
	case terminal(st.ProvisioningState):
		fmt.Fprintf(out, "Terminal state of \"%s\" has been reached\n\n", st.ProvisioningState)
		e := errorFrom(st.Errors, "Compute"+string(st.ProvisioningState),
			fmt.Sprintf("compute %s reached terminal state %s", ct.name, st.ProvisioningState))
		if st.ProvisioningState == api.ProvisioningFailed {
			fmt.Fprintf(out, "Provisioning errors: %s\n\n", formatErrors(st.Errors))
		}
		return e
	default:
		fmt.Fprintf(out, "There were errors reported from AmlCompute:\n%s\n", formatErrors(st.Errors))
		return errorFrom(st.Errors, "ComputeErrors", "compute "+ct.name+" reports errors")
	}
}

// minNodesReached follows v1: only a cluster whose provisioning succeeded
// (or is being updated) can have reached its minimum.
func minNodesReached(st *AmlComputeStatus, minNodes int) bool {
	switch st.ProvisioningState {
	case api.ProvisioningSucceeded, api.ProvisioningUpdating:
		return readyNodes(st) >= minNodes
	}
	return false
}

// readyNodes counts the nodes that are up: idle or running a job. Nodes
// still booting do not count.
func readyNodes(st *AmlComputeStatus) int {
	return int(st.NodeStateCounts.IdleNodeCount + st.NodeStateCounts.RunningNodeCount)
}

// terminal reports whether a compute's provisioning state is a dead end.
func terminal(s api.ProvisioningState) bool {
	return s == api.ProvisioningFailed || s == api.ProvisioningCanceled
}

// errorFrom returns the first of errs as an *Error, or one with the given
// code and message when errs holds none.
func errorFrom(errs []api.ErrorResponse, code, msg string) *Error {
	for _, e := range errs {
		if e.Error != nil && e.Error.Code != "" {
			return &Error{Code: e.Error.Code, Message: e.Error.Message, Target: e.Error.Target, Details: e.Error.Details}
		}
	}
	return &Error{Code: code, Message: msg}
}

// formatErrors writes errs one per line as "<code>: <message>".
func formatErrors(errs []api.ErrorResponse) string {
	var lines []string
	for _, e := range errs {
		if e.Error != nil {
			lines = append(lines, e.Error.Code+": "+e.Error.Message)
		}
	}
	if len(lines) == 0 {
		return "none"
	}
	return strings.Join(lines, "\n")
}
