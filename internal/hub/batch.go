package hub

import (
	"context"
	"errors"
	"time"

	"kumo/internal/agentproto"
	"kumo/internal/store"
)

// maxBatch bounds how many messages of one connection are taken at once.
const maxBatch = 64

// readAhead is how many decoded messages of one connection wait for the
// connection's loop. It is small: a Log message may be large (up to
// agentproto.MaxMessage), and a Log ends a batch (see next).
const readAhead = 4

// reader decodes a connection's messages onto a channel, so that the
// connection's loop can take all that have arrived at once (a batch). It
// closes the channel when the stream ends, and returns early when done is
// closed.
func reader(dec *agentproto.Decoder, out chan<- agentproto.Message, done <-chan struct{}) {
	defer close(out)
	for {
		m, err := dec.Next()
		if err != nil {
			return
		}
		select {
		case out <- m:
		case <-done:
			return
		}
	}
}

// next waits for a message and returns it with every other message that
// has already arrived, at most maxBatch in all; ok is false when the
// stream has ended. When the batch ends with a job's Started or Exited,
// whose Done may follow at once (a short job), it waits up to window for
// more, so that they are stored together; a Done ends the wait. A Log
// ends the batch, so that a batch holds at most one large message.
func next(in <-chan agentproto.Message, window time.Duration) (batch []agentproto.Message, ok bool) {
	m, ok := <-in
	if !ok {
		return nil, false
	}
	batch = append(batch, m)
	var timeout <-chan time.Time
	for len(batch) < maxBatch && batch[len(batch)-1].Type != agentproto.TypeLog {
		select {
		case m, ok := <-in:
			if !ok {
				return batch, true
			}
			batch = append(batch, m)
			continue
		default:
		}
		last := batch[len(batch)-1].Type
		if window <= 0 || (last != agentproto.TypeStarted && last != agentproto.TypeExited) {
			return batch, true
		}
		if timeout == nil {
			t := time.NewTimer(window)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case m, ok := <-in:
			if !ok {
				return batch, true
			}
			batch = append(batch, m)
		case <-timeout:
			return batch, true
		}
	}
	return batch, true
}

// handleBatch records a batch of one connection's messages in order. A
// run of reports on one job (Started, Exited, and a Done that ends the
// run) is applied to one read of the job and stored in one write (with
// the node's, for a Done); a Done is acknowledged only once that write has
// committed. Anything else is handled one message at a time.
func (h *Hub) handleBatch(ctx context.Context, c *conn, batch []agentproto.Message) {
	for len(batch) > 0 {
		n := reportRun(batch)
		var err error
		if n > 1 {
			err = h.reports(ctx, c, batch[:n])
		} else {
			n = 1
			err = h.handle(ctx, c, batch[0])
		}
		if err != nil {
			h.cfg.Log.Error("agent message", "node", c.nodeID, "type", batch[0].Type, "runId", batch[0].RunID, "err", err)
		}
		batch = batch[n:]
	}
}

// reportRun returns how many messages at the start of batch are reports
// on one job that reports can take together: Started and Exited, ended by
// at most one Done.
func reportRun(batch []agentproto.Message) int {
	n := 0
	for _, m := range batch {
		if m.RunID != batch[0].RunID {
			break
		}
		switch m.Type {
		case agentproto.TypeStarted, agentproto.TypeExited:
			n++
			continue
		case agentproto.TypeDone:
			n++
		}
		break
	}
	return n
}

// errOneByOne makes reports hand its messages to handle one at a time.
var errOneByOne = errors.New("one message at a time")

// reports records ms, reports on one job (see reportRun), with one read
// and one write of the job when it can: the job, of one node, runs on c's
// node and was not changed by another writer meanwhile. Otherwise, or when
// it lost a race, it handles them one at a time, as handle does; each
// report is idempotent, so one already applied is harmless.
func (h *Hub) reports(ctx context.Context, c *conn, ms []agentproto.Message) error {
	if !h.current(c) {
		return nil
	}
	done, err := h.reportsOnce(ctx, c, ms)
	if errors.Is(err, errOneByOne) || errors.Is(err, store.ErrPreconditionFailed) {
		var errs []error
		for _, m := range ms {
			errs = append(errs, h.handle(ctx, c, m))
		}
		return errors.Join(errs...)
	}
	if err != nil {
		return err
	}
	if done {
		return c.enc.Send(agentproto.Message{Type: agentproto.TypeAck, RunID: ms[0].RunID})
	}
	return nil
}

// reportsOnce applies ms to one read of their job and stores it; done
// reports that ms ended with a Done, which is now stored.
func (h *Hub) reportsOnce(ctx context.Context, c *conn, ms []agentproto.Message) (done bool, err error) {
	j, err := h.cfg.Store.JobGetByRunID(ctx, ms[0].RunID)
	if err != nil {
		return false, errOneByOne // a missing job is answered as handle does
	}
	if j.Gang() || !j.RunsOn(c.nodeID) {
		return false, errOneByOne
	}
	from := j.Status
	changed := false
	for _, m := range ms {
		switch m.Type {
		case agentproto.TypeStarted:
			t := m.Time
			if t.IsZero() {
				t = h.cfg.Now()
			}
			changed = j.Start(c.nodeID, t.UTC()) || changed
		case agentproto.TypeExited:
			changed = j.Finalize(c.nodeID) || changed
		case agentproto.TypeDone:
			return true, h.end(ctx, c, m, j, from)
		}
	}
	if !changed {
		return false, nil
	}
	return false, h.cfg.Store.JobUpdate(ctx, j, from, nil, "")
}
