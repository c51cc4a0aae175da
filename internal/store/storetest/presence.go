package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/model"
	"kumo/internal/store"
)

var presenceTests = []test{
	{"SetGetList", testPresenceSetGetList},
	{"Clear", testPresenceClear},
	{"GoesWithNode", testPresenceGoesWithNode},
	{"SSHLogins", testPresenceSSHLogins},
	{"Replicas", testReplicas},
	{"MessagesInOrder", testNodeMessagesInOrder},
	{"MessagesTakenOnce", testNodeMessagesTakenOnce},
	{"MessagesExpire", testNodeMessagesExpire},
}

func testPresenceSetGetList(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreateNode(t, s, newNode("n1", "c", model.NodeIdle))
	mustCreateNode(t, s, newNode("n2", "c", model.NodeIdle))
	if _, err := s.NodePresenceGet(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NodePresenceGet before any: err = %v, want ErrNotFound", err)
	}
	if err := s.NodePresenceSet(ctx, nil); err != nil {
		t.Errorf("NodePresenceSet(nil): %v", err)
	}
	first := []model.NodePresence{
		{NodeID: "n2", Replica: "r1", LastSeen: at(30)},
		{NodeID: "gone", Replica: "r1", LastSeen: at(30)}, // no such node: skipped
		{NodeID: "n1", Replica: "r1", LastSeen: at(31)},
	}
	if err := s.NodePresenceSet(ctx, first); err != nil {
		t.Fatalf("NodePresenceSet: %v", err)
	}
	// A later batch replaces what it names and keeps the rest.
	if err := s.NodePresenceSet(ctx, []model.NodePresence{{NodeID: "n1", Replica: "r2", LastSeen: at(32)}}); err != nil {
		t.Fatalf("NodePresenceSet: %v", err)
	}
	want := []model.NodePresence{
		{NodeID: "n1", Replica: "r2", LastSeen: at(32)},
		{NodeID: "n2", Replica: "r1", LastSeen: at(30)},
	}
	got, err := s.NodePresenceList(ctx)
	if err != nil {
		t.Fatalf("NodePresenceList: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NodePresenceList (-want +got):\n%s", diff)
	}
	p, err := s.NodePresenceGet(ctx, "n1")
	if err != nil {
		t.Fatalf("NodePresenceGet: %v", err)
	}
	if diff := cmp.Diff(want[0], p); diff != "" {
		t.Errorf("NodePresenceGet (-want +got):\n%s", diff)
	}
}

func testPresenceClear(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreateNode(t, s, newNode("n1", "c", model.NodeIdle))
	if err := s.NodePresenceSet(ctx, []model.NodePresence{{NodeID: "n1", Replica: "r2", LastSeen: at(30)}}); err != nil {
		t.Fatalf("NodePresenceSet: %v", err)
	}
	// r1 lost the node, which r2 holds now: r1's clear changes nothing.
	if err := s.NodePresenceClear(ctx, "n1", "r1", at(31)); err != nil {
		t.Fatalf("NodePresenceClear(r1): %v", err)
	}
	tests := []struct {
		replica string
		want    model.NodePresence
	}{
		{"r1", model.NodePresence{NodeID: "n1", Replica: "r2", LastSeen: at(30)}},
		{"r2", model.NodePresence{NodeID: "n1", Replica: "", LastSeen: at(32)}},
	}
	for _, tt := range tests {
		if err := s.NodePresenceClear(ctx, "n1", tt.replica, at(32)); err != nil {
			t.Fatalf("NodePresenceClear(%s): %v", tt.replica, err)
		}
		got, err := s.NodePresenceGet(ctx, "n1")
		if err != nil {
			t.Fatalf("NodePresenceGet: %v", err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("after NodePresenceClear(%s) (-want +got):\n%s", tt.replica, diff)
		}
	}
	if err := s.NodePresenceClear(ctx, "absent", "r1", at(33)); err != nil {
		t.Errorf("NodePresenceClear of an absent node: %v, want nil", err)
	}
}

func testPresenceGoesWithNode(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreateNode(t, s, newNode("n1", "c", model.NodeIdle))
	mustCreateNode(t, s, newNode("n2", "c", model.NodeIdle))
	for _, id := range []string{"n1", "n2"} {
		if err := s.NodePresenceSet(ctx, []model.NodePresence{{NodeID: id, Replica: "r1", LastSeen: at(30)}}); err != nil {
			t.Fatalf("NodePresenceSet: %v", err)
		}
		if err := s.NodeMessageAppend(ctx, model.NodeMessage{NodeID: id, Body: []byte(`{"type":"run"}`), CreatedAt: at(30)}); err != nil {
			t.Fatalf("NodeMessageAppend: %v", err)
		}
	}
	if err := s.NodeDelete(ctx, "n1"); err != nil {
		t.Fatalf("NodeDelete: %v", err)
	}
	if _, err := s.NodePresenceGet(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NodePresenceGet of a deleted node: err = %v, want ErrNotFound", err)
	}
	if ms, err := s.NodeMessageTake(ctx, "n1"); err != nil || len(ms) != 0 {
		t.Errorf("NodeMessageTake of a deleted node = %v, %v; want none", ms, err)
	}
	if ms, err := s.NodeMessageTake(ctx, "n2"); err != nil || len(ms) != 1 {
		t.Errorf("NodeMessageTake of the other node = %v, %v; want its 1 message", ms, err)
	}
}

func testNodeMessagesInOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	bodies := []string{`{"type":"run","runId":"a"}`, `{"type":"cancel","runId":"a"}`, `{"type":"run","runId":"b"}`}
	for i, b := range bodies {
		if err := s.NodeMessageAppend(ctx, model.NodeMessage{NodeID: "n1", Body: []byte(b), CreatedAt: at(40 + i)}); err != nil {
			t.Fatalf("NodeMessageAppend: %v", err)
		}
		if err := s.NodeMessageAppend(ctx, model.NodeMessage{NodeID: "n2", Body: []byte("other"), CreatedAt: at(40)}); err != nil {
			t.Fatalf("NodeMessageAppend: %v", err)
		}
	}
	got, err := s.NodeMessageTake(ctx, "n1")
	if err != nil {
		t.Fatalf("NodeMessageTake: %v", err)
	}
	if len(got) != len(bodies) {
		t.Fatalf("NodeMessageTake returned %d messages, want %d", len(got), len(bodies))
	}
	for i, m := range got {
		want := model.NodeMessage{Seq: m.Seq, NodeID: "n1", Body: []byte(bodies[i]), CreatedAt: at(40 + i)}
		if diff := cmp.Diff(want, m); diff != "" {
			t.Errorf("message %d (-want +got):\n%s", i, diff)
		}
		if i > 0 && m.Seq <= got[i-1].Seq {
			t.Errorf("message %d: Seq %d after %d, want increasing", i, m.Seq, got[i-1].Seq)
		}
	}
	if again, err := s.NodeMessageTake(ctx, "n1"); err != nil || len(again) != 0 {
		t.Errorf("second NodeMessageTake = %v, %v; want none", again, err)
	}
	if other, err := s.NodeMessageTake(ctx, "n2"); err != nil || len(other) != 3 {
		t.Errorf("NodeMessageTake(n2) = %d messages, %v; want 3", len(other), err)
	}
}

func testNodeMessagesTakenOnce(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 60
	var mu sync.Mutex
	var taken []string
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				ms, err := s.NodeMessageTake(ctx, "n1")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, m := range ms {
					taken = append(taken, string(m.Body))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		if err := s.NodeMessageAppend(ctx, model.NodeMessage{NodeID: "n1", Body: fmt.Appendf(nil, "m%03d", i), CreatedAt: at(50)}); err != nil {
			t.Fatalf("NodeMessageAppend: %v", err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("NodeMessageTake: %v", err)
	}
	rest, err := s.NodeMessageTake(ctx, "n1")
	if err != nil {
		t.Fatalf("NodeMessageTake: %v", err)
	}
	for _, m := range rest {
		taken = append(taken, string(m.Body))
	}
	slices.Sort(taken)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("m%03d", i))
	}
	if diff := cmp.Diff(want, taken); diff != "" {
		t.Errorf("messages taken by two takers (-want +got):\n%s", diff)
	}
}

func testNodeMessagesExpire(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i, node := range []string{"n1", "n2", "n1"} {
		if err := s.NodeMessageAppend(ctx, model.NodeMessage{NodeID: node, Body: []byte("x"), CreatedAt: at(60 + i)}); err != nil {
			t.Fatalf("NodeMessageAppend: %v", err)
		}
	}
	n, err := s.NodeMessageDeleteBefore(ctx, at(62))
	if err != nil || n != 2 {
		t.Fatalf("NodeMessageDeleteBefore = %d, %v; want 2", n, err)
	}
	ms, err := s.NodeMessageTake(ctx, "n1")
	if err != nil || len(ms) != 1 || !ms[0].CreatedAt.Equal(at(62)) {
		t.Errorf("NodeMessageTake after expiry = %v, %v; want the message of at(62)", ms, err)
	}
}

func testPresenceSSHLogins(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreateNode(t, s, newNode("n1", "c", model.NodeIdle))
	mustCreateNode(t, s, newNode("n2", "c", model.NodeIdle))
	steps := []struct {
		name string
		set  []model.NodePresence
		want []model.NodePresence
	}{
		{
			name: "opened, never closed",
			set:  []model.NodePresence{{NodeID: "n1", Replica: "r1", LastSeen: at(30), SSHOpen: 2}},
			want: []model.NodePresence{{NodeID: "n1", Replica: "r1", LastSeen: at(30), SSHOpen: 2}},
		},
		{
			name: "all closed, in a batch with another node",
			set: []model.NodePresence{
				{NodeID: "n1", Replica: "r1", LastSeen: at(31), SSHLastClosed: at(31)},
				{NodeID: "n2", Replica: "r1", LastSeen: at(31), SSHOpen: 1, SSHLastClosed: at(20)},
			},
			want: []model.NodePresence{
				{NodeID: "n1", Replica: "r1", LastSeen: at(31), SSHLastClosed: at(31)},
				{NodeID: "n2", Replica: "r1", LastSeen: at(31), SSHOpen: 1, SSHLastClosed: at(20)},
			},
		},
	}
	for _, st := range steps {
		if err := s.NodePresenceSet(ctx, st.set); err != nil {
			t.Fatalf("%s: NodePresenceSet: %v", st.name, err)
		}
		got, err := s.NodePresenceList(ctx)
		if err != nil {
			t.Fatalf("%s: NodePresenceList: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: NodePresenceList (-want +got):\n%s", st.name, diff)
		}
	}
	// A clear keeps what was last recorded of the node's logins.
	if err := s.NodePresenceClear(ctx, "n2", "r1", at(40)); err != nil {
		t.Fatalf("NodePresenceClear: %v", err)
	}
	p, err := s.NodePresenceGet(ctx, "n2")
	if err != nil {
		t.Fatalf("NodePresenceGet: %v", err)
	}
	want := model.NodePresence{NodeID: "n2", LastSeen: at(40), SSHOpen: 1, SSHLastClosed: at(20)}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("NodePresenceGet after clear (-want +got):\n%s", diff)
	}
}

func testReplicas(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.ReplicaGet(ctx, "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReplicaGet before any: err = %v, want ErrNotFound", err)
	}
	r1 := model.Replica{Name: "r1", Address: "https://a.example:8443", SecretHash: "hash1", HeartbeatAt: at(30)}
	r2 := model.Replica{Name: "r2", Address: "https://b.example:8443", SecretHash: "hash2", HeartbeatAt: at(30)}
	for _, r := range []model.Replica{r1, r2} {
		if err := s.ReplicaSet(ctx, r); err != nil {
			t.Fatalf("ReplicaSet(%s): %v", r.Name, err)
		}
	}
	// A later set replaces the row: a heartbeat, or a restart's new secret.
	r1.SecretHash, r1.HeartbeatAt = "hash1b", at(35)
	if err := s.ReplicaSet(ctx, r1); err != nil {
		t.Fatalf("ReplicaSet(r1 again): %v", err)
	}
	for _, want := range []model.Replica{r1, r2} {
		got, err := s.ReplicaGet(ctx, want.Name)
		if err != nil {
			t.Fatalf("ReplicaGet(%s): %v", want.Name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ReplicaGet(%s) (-want +got):\n%s", want.Name, diff)
		}
	}
	for range 2 { // the second delete finds nothing, which is no error
		if err := s.ReplicaDelete(ctx, "r1"); err != nil {
			t.Fatalf("ReplicaDelete: %v", err)
		}
	}
	if _, err := s.ReplicaGet(ctx, "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReplicaGet after delete: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ReplicaGet(ctx, "r2"); err != nil {
		t.Errorf("ReplicaGet(r2) after deleting r1: %v", err)
	}
}
