package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// Publish implements store.Store with pg_notify: every Store listening on
// the database receives payload once the call returns.
func (s *Store) Publish(ctx context.Context, channel, payload string) error {
	if err := store.CheckFeed(channel, payload); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if _, err := s.exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("publish %s: %w", channel, err)
	}
	return nil
}

// Subscribe implements store.Store. The Store LISTENs on one connection
// of its own, outside the pool, made on the first Subscribe and kept
// until Close; Subscribe returns once that connection listens on channel,
// or once an attempt to listen failed (the subscriber then gets "" when
// the connection is back).
func (s *Store) Subscribe(ctx context.Context, channel string) (<-chan string, error) {
	if err := store.CheckFeed(channel, ""); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	ch := s.feed.Subscribe(ctx, channel)
	l := s.listener()
	if l == nil {
		return nil, errors.New("subscribe: store is closed")
	}
	done := make(chan struct{})
	l.mu.Lock()
	l.waiting = append(l.waiting, done)
	l.mu.Unlock()
	l.poke()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return ch, nil
}

// listenerRetryMax caps the wait between attempts to make the listening
// connection again.
const listenerRetryMax = 5 * time.Second

// listener is the Store's LISTEN connection and the goroutine that owns
// it: it listens on every channel with subscribers and hands what it
// receives to the Store's fanout.
type listener struct {
	s      *Store
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	waiting []chan struct{}    // Subscribe calls to release once their channels are listened on
	wake    context.CancelFunc // interrupts the current wait for a notification
	woken   bool               // poked since the current wait began
}

// listener returns the Store's listener, starting it on first use; nil
// once the Store is closed.
func (s *Store) listener() *listener {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return nil
	}
	if s.l == nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.l = &listener{s: s, cancel: cancel, done: make(chan struct{})}
		go s.l.run(ctx)
	}
	return s.l
}

// stopListener ends the listener, if any, and waits for it.
func (s *Store) stopListener() {
	s.lmu.Lock()
	s.closed = true
	l := s.l
	s.lmu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
}

// poke makes the listener look at the subscribed channels again.
func (l *listener) poke() {
	l.mu.Lock()
	l.woken = true
	if l.wake != nil {
		l.wake()
	}
	l.mu.Unlock()
}

// release lets the waiting Subscribe calls return.
func (l *listener) release() {
	l.mu.Lock()
	w := l.waiting
	l.waiting = nil
	l.mu.Unlock()
	for _, c := range w {
		close(c)
	}
}

func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	defer l.release()
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		if l.session(ctx, !first) {
			backoff = 100 * time.Millisecond
		}
		first = false
		if ctx.Err() != nil {
			return
		}
		// Notifications sent while nothing listened are lost.
		l.release()
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, listenerRetryMax)
	}
}

// session connects, listens and delivers until the connection fails or
// ctx ends; it reports whether it connected. After a reconnect (resync),
// once listening again, it tells every subscriber to resync.
func (l *listener) session(ctx context.Context, resync bool) (connected bool) {
	conn, err := pgx.ConnectConfig(ctx, l.s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	listening := map[string]bool{}
	for {
		// Subscribe adds to the fanout before it waits here, so every
		// waiter taken now has its channel among those listened on below.
		l.mu.Lock()
		l.woken = false
		waiting := l.waiting
		l.waiting = nil
		l.mu.Unlock()
		for _, c := range l.s.feed.Channels() {
			if listening[c] {
				continue
			}
			if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{c}.Sanitize()); err != nil {
				for _, w := range waiting {
					close(w)
				}
				return true
			}
			listening[c] = true
		}
		if resync {
			l.s.feed.DeliverAll("")
			resync = false
		}
		for _, w := range waiting {
			close(w)
		}

		wctx, wake := context.WithCancel(ctx)
		l.mu.Lock()
		l.wake = wake
		if l.woken {
			wake()
		}
		l.mu.Unlock()
		n, err := conn.WaitForNotification(wctx)
		l.mu.Lock()
		l.wake = nil
		l.mu.Unlock()
		wake()
		switch {
		case err == nil:
			l.s.feed.Deliver(n.Channel, n.Payload)
		case ctx.Err() != nil:
			return true
		case wctx.Err() != nil && !conn.IsClosed():
			// Poked: listen on new channels.
		default:
			return true
		}
	}
}

const (
	nodePresenceSetSQL = `INSERT INTO node_presence (node_id, replica, last_seen, ssh_open, ssh_last_closed)
		SELECT p.node_id, p.replica, p.last_seen, p.ssh_open, p.ssh_last_closed
		FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
			AS p(node_id, replica, last_seen, ssh_open, ssh_last_closed)
		WHERE EXISTS (SELECT 1 FROM nodes WHERE id = p.node_id)
		ON CONFLICT (node_id) DO UPDATE SET replica = excluded.replica, last_seen = excluded.last_seen,
			ssh_open = excluded.ssh_open, ssh_last_closed = excluded.ssh_last_closed`
	nodePresenceClearSQL = `UPDATE node_presence SET replica = '', last_seen = $1 WHERE node_id = $2 AND replica = $3`
	nodePresenceGetSQL   = `SELECT ` + rowcodec.NodePresenceColumns + ` FROM node_presence WHERE node_id = $1`
	nodePresenceListSQL  = `SELECT ` + rowcodec.NodePresenceColumns + ` FROM node_presence ORDER BY node_id`
	replicaSetSQL        = `INSERT INTO replicas (name, address, secret_hash, heartbeat_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET address = excluded.address, secret_hash = excluded.secret_hash,
			heartbeat_at = excluded.heartbeat_at`
	replicaGetSQL        = `SELECT ` + rowcodec.ReplicaColumns + ` FROM replicas WHERE name = $1`
	replicaDeleteSQL     = `DELETE FROM replicas WHERE name = $1`
	nodeMessageAppendSQL = `INSERT INTO node_messages (node_id, body, created_at) VALUES ($1, $2, $3)`
	nodeMessageTakeSQL   = `DELETE FROM node_messages WHERE node_id = $1 RETURNING ` + rowcodec.NodeMessageColumns
	nodeMessageExpireSQL = `DELETE FROM node_messages WHERE created_at < $1`
)

// NodePresenceSet implements store.Store in one statement.
func (s *Store) NodePresenceSet(ctx context.Context, ps []model.NodePresence) error {
	if len(ps) == 0 {
		return nil
	}
	// One row per node: a statement may not change a row twice.
	last := map[string]int{}
	for i, p := range ps {
		last[p.NodeID] = i
	}
	n := len(last)
	ids, replicas, seen := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	open, closed := make([]int32, 0, n), make([]string, 0, n)
	for i, p := range ps {
		if last[p.NodeID] != i {
			continue
		}
		ids, replicas, seen = append(ids, p.NodeID), append(replicas, p.Replica), append(seen, rowcodec.EncTime(p.LastSeen))
		open, closed = append(open, int32(min(max(p.SSHOpen, 0), math.MaxInt32))), append(closed, rowcodec.EncZeroTime(p.SSHLastClosed))
	}
	if _, err := s.exec(ctx, nodePresenceSetSQL, ids, replicas, seen, open, closed); err != nil {
		return fmt.Errorf("node presence set: %w", err)
	}
	return nil
}

// NodePresenceClear implements store.Store.
func (s *Store) NodePresenceClear(ctx context.Context, nodeID, replica string, at time.Time) error {
	if _, err := s.exec(ctx, nodePresenceClearSQL, rowcodec.EncTime(at), nodeID, replica); err != nil {
		return fmt.Errorf("node presence clear %s: %w", nodeID, err)
	}
	return nil
}

// NodePresenceGet implements store.Store.
func (s *Store) NodePresenceGet(ctx context.Context, nodeID string) (model.NodePresence, error) {
	p, err := rowcodec.ScanNodePresence(s.pool.QueryRow(ctx, nodePresenceGetSQL, nodeID))
	if err != nil {
		return model.NodePresence{}, fmt.Errorf("node presence get %s: %w", nodeID, notFound(err))
	}
	return p, nil
}

// NodePresenceList implements store.Store.
func (s *Store) NodePresenceList(ctx context.Context) ([]model.NodePresence, error) {
	ps, err := query(ctx, s.pool, rowcodec.ScanNodePresence, nodePresenceListSQL)
	if err != nil {
		return nil, fmt.Errorf("node presence list: %w", err)
	}
	return ps, nil
}

// ReplicaSet implements store.Store.
func (s *Store) ReplicaSet(ctx context.Context, r model.Replica) error {
	if _, err := s.exec(ctx, replicaSetSQL, r.Name, r.Address, r.SecretHash, rowcodec.EncTime(r.HeartbeatAt)); err != nil {
		return fmt.Errorf("replica set %s: %w", r.Name, err)
	}
	return nil
}

// ReplicaGet implements store.Store.
func (s *Store) ReplicaGet(ctx context.Context, name string) (model.Replica, error) {
	r, err := rowcodec.ScanReplica(s.pool.QueryRow(ctx, replicaGetSQL, name))
	if err != nil {
		return model.Replica{}, fmt.Errorf("replica get %s: %w", name, notFound(err))
	}
	return r, nil
}

// ReplicaDelete implements store.Store.
func (s *Store) ReplicaDelete(ctx context.Context, name string) error {
	if _, err := s.exec(ctx, replicaDeleteSQL, name); err != nil {
		return fmt.Errorf("replica delete %s: %w", name, err)
	}
	return nil
}

// NodeMessageAppend implements store.Store.
func (s *Store) NodeMessageAppend(ctx context.Context, m model.NodeMessage) error {
	if _, err := s.exec(ctx, nodeMessageAppendSQL, m.NodeID, m.Body, rowcodec.EncTime(m.CreatedAt)); err != nil {
		return fmt.Errorf("node message append %s: %w", m.NodeID, err)
	}
	return nil
}

// NodeMessageTake implements store.Store in one DELETE ... RETURNING: two
// takers at once each get the rows they deleted.
func (s *Store) NodeMessageTake(ctx context.Context, nodeID string) ([]model.NodeMessage, error) {
	var ms []model.NodeMessage
	err := s.inTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		ms, err = query(ctx, tx, rowcodec.ScanNodeMessage, nodeMessageTakeSQL, nodeID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node message take %s: %w", nodeID, err)
	}
	slices.SortFunc(ms, func(a, b model.NodeMessage) int { return cmp.Compare(a.Seq, b.Seq) })
	return ms, nil
}

// NodeMessageDeleteBefore implements store.Store.
func (s *Store) NodeMessageDeleteBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.exec(ctx, nodeMessageExpireSQL, rowcodec.EncTime(before))
	if err != nil {
		return 0, fmt.Errorf("node message delete: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
