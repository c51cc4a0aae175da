package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"kumo/internal/model"
	"kumo/internal/store"
	"kumo/internal/store/rowcodec"
)

// leaderAndOther opens two Stores on one new database; the first holds
// lease "controller" as "a" for 200ms.
func leaderAndOther(t *testing.T) (s, other *Store, l model.Lease) {
	t.Helper()
	s, url := openTest(t)
	other, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	l, err = s.LeaseAcquire(t.Context(), "controller", "a", "", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return s, other, l
}

// TestTakeoverWaitsForFencedWrite: a transaction fenced with the current
// term locks the lease row FOR SHARE, so another replica's takeover of
// the expired lease waits, on the row lock, until that transaction has
// committed; the write it made is kept, and the takeover then gets the
// next term, after which the same fence is refused.
func TestTakeoverWaitsForFencedWrite(t *testing.T) {
	s, other, l := leaderAndOther(t)
	ctx := t.Context()
	fenced := store.WithFence(ctx, "controller", l.Term)
	w := model.Workspace{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
		Subscription: "s", ResourceGroup: "rg", Name: "ws", CreatedAt: time.Unix(1, 0).UTC(), ModifiedAt: time.Unix(1, 0).UTC()}

	args, err := rowcodec.WorkspaceInsertArgs(w)
	if err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // a failing test must not leave the transaction open
	wrote := make(chan error, 1)
	go func() {
		wrote <- s.inTx(fenced, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO workspaces (
				id_key, id, subscription, subscription_key, resource_group, resource_group_key, name, name_key,
				location, description, tags, created_at, modified_at, created_by
			) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`, args...)
			close(inside)
			<-release
			return err
		})
	}()
	<-inside
	// Wait until the lease has expired on the database's clock.
	for {
		var expired bool
		if err := s.pool.QueryRow(ctx, `SELECT expires_at <= clock_timestamp() FROM leases WHERE name = 'controller'`).Scan(&expired); err != nil {
			t.Fatal(err)
		}
		if expired {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := make(chan model.Lease, 1)
	go func() {
		l, err := other.LeaseAcquire(context.Background(), "controller", "b", "", time.Hour)
		if err != nil {
			t.Errorf("takeover: %v", err)
		}
		took <- l
	}()
	// The takeover waits on the lease row's lock.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO leases%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case l := <-took:
			t.Fatalf("takeover %+v did not wait for the fenced transaction", l)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the takeover never waited on the lease row")
		}
	}
	unblock()
	if err := <-wrote; err != nil {
		t.Fatalf("fenced write in the current term: %v", err)
	}
	if got := <-took; got.Holder != "b" || got.Term != l.Term+1 {
		t.Errorf("takeover = %+v, want held by b in term %d", got, l.Term+1)
	}
	if _, err := s.WorkspaceGet(ctx, w.ID); err != nil {
		t.Errorf("the fenced write committed before the takeover is lost: %v", err)
	}
	w.Description = "late"
	if err := s.WorkspaceUpdate(fenced, w); !errors.Is(err, store.ErrFenced) {
		t.Errorf("write under the old fence after the takeover: %v, want ErrFenced", err)
	}
}

// A leader that froze inside a fenced transaction (SIGSTOP, a paused VM)
// holds the lease row's lock; the server ends its idle transaction after
// IdleInTransactionTimeout, so another replica takes over, and the frozen
// one's transaction never commits.
func TestFrozenFencedTransactionDoesNotBlockTakeover(t *testing.T) {
	s, other, l := leaderAndOther(t)
	ctx := t.Context()
	// The frozen leader: a fenced transaction that took the lease row's
	// lock and then stopped sending anything.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT kumo_fence($1, $2)`, "controller", l.Term); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var took model.Lease
	for {
		took, err = other.LeaseAcquire(ctx, "controller", "b", "", 2*time.Second)
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no takeover within 30s of the leader freezing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if took.Holder != "b" || took.Term != l.Term+1 {
		t.Errorf("takeover = %+v, want b in term %d", took, l.Term+1)
	}
	t.Logf("takeover %v after the leader froze (idle-in-transaction timeout %v)", time.Since(start).Round(time.Millisecond), IdleInTransactionTimeout)
	if err := tx.Commit(context.Background()); err == nil {
		t.Error("the frozen leader's transaction committed after the takeover")
	}
}
