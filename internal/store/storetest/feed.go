package storetest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"kumo/internal/store"
)

// feedWait bounds each wait for a published payload.
const feedWait = 30 * time.Second

// RunFeed runs the change feed's conformance cases. open returns two
// Stores on one fresh database (for SQLite, which is for one process, the
// same Store twice); each case publishes on one and subscribes on the
// other. open registers the stores' cleanup itself.
func RunFeed(t *testing.T, open func(t *testing.T) (pub, sub store.Store)) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, pub, sub store.Store)
	}{
		{"Deliver", testFeedDeliver},
		{"Coalesce", testFeedCoalesce},
		{"ContextEndCloses", testFeedContextEnd},
		{"Invalid", testFeedInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, sub := open(t)
			tt.run(t, pub, sub)
		})
	}
}

// mustSubscribe subscribes to channel until the test ends.
func mustSubscribe(t *testing.T, s store.Store, channel string) <-chan string {
	t.Helper()
	ch, err := s.Subscribe(t.Context(), channel)
	if err != nil {
		t.Fatalf("Subscribe(%s): %v", channel, err)
	}
	return ch
}

func mustPublish(t *testing.T, s store.Store, channel, payload string) {
	t.Helper()
	if err := s.Publish(t.Context(), channel, payload); err != nil {
		t.Fatalf("Publish(%s, %.20q): %v", channel, payload, err)
	}
}

// receive returns the next payload of ch, failing the test after feedWait.
func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case p, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return p
	case <-time.After(feedWait):
		t.Fatalf("no payload within %s", feedWait)
		return ""
	}
}

func testFeedDeliver(t *testing.T, pub, sub store.Store) {
	nodes := mustSubscribe(t, sub, "kumo_test_node")
	nodes2 := mustSubscribe(t, sub, "kumo_test_node")
	other := mustSubscribe(t, sub, "kumo_test_other")
	long := strings.Repeat("x", store.MaxPayload)
	for _, p := range []string{"n1", "n2", long} {
		mustPublish(t, pub, "kumo_test_node", p)
	}
	mustPublish(t, pub, "kumo_test_other", "o1")
	for _, ch := range []<-chan string{nodes, nodes2} {
		for _, want := range []string{"n1", "n2", long} {
			if got := receive(t, ch); got != want {
				t.Errorf("received %.20q, want %.20q", got, want)
			}
		}
	}
	// The other channel got only its own.
	if got := receive(t, other); got != "o1" {
		t.Errorf("other channel received %q, want o1", got)
	}
}

func testFeedCoalesce(t *testing.T, pub, sub store.Store) {
	slow := mustSubscribe(t, sub, "kumo_test_feed")
	quick := mustSubscribe(t, sub, "kumo_test_feed")
	// Both hear everything in the same order, so once quick has the end,
	// slow's queue has had every payload offered.
	seen := make(chan struct{})
	go func() {
		defer close(seen)
		for p := range quick {
			if p == "end" {
				return
			}
		}
	}()
	mustPublish(t, pub, "kumo_test_feed", "dup")
	mustPublish(t, pub, "kumo_test_feed", "dup")
	n := store.SubscriberBuffer + 20
	for i := range n {
		mustPublish(t, pub, "kumo_test_feed", strconv.Itoa(i))
	}
	mustPublish(t, pub, "kumo_test_feed", "end")
	select {
	case <-seen:
	case <-time.After(feedWait):
		t.Fatalf("the quick subscriber did not get the end within %s", feedWait)
	}
	// slow has not read: its overflowing queue became one resync, then
	// what came after it.
	var got []string
	for len(got) == 0 || got[len(got)-1] != "end" {
		got = append(got, receive(t, slow))
		if len(got) > n+3 {
			break
		}
	}
	if len(got) > store.SubscriberBuffer+1 {
		t.Errorf("slow subscriber received %d payloads, want at most %d", len(got), store.SubscriberBuffer+1)
	}
	resync := false
	for _, p := range got {
		resync = resync || p == ""
	}
	if !resync {
		t.Errorf("slow subscriber received no resync (\"\") after falling behind: %q", got)
	}
	if got[len(got)-1] != "end" {
		t.Errorf("slow subscriber's last payload = %q, want end", got[len(got)-1])
	}

	// An equal payload still waiting is not queued twice.
	mustPublish(t, pub, "kumo_test_feed", "a")
	mustPublish(t, pub, "kumo_test_feed", "a")
	mustPublish(t, pub, "kumo_test_feed", "b")
	deadline := time.After(feedWait)
	for p := range quick {
		if p == "b" {
			break
		}
		select {
		case <-deadline:
			t.Fatal("quick subscriber did not get b")
		default:
		}
	}
	if got := []string{receive(t, slow), receive(t, slow)}; got[0] != "a" || got[1] != "b" {
		t.Errorf("after a, a, b the slow subscriber received %q, want [a b]", got)
	}
}

func testFeedContextEnd(t *testing.T, pub, sub store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := sub.Subscribe(ctx, "kumo_test_feed")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	mustPublish(t, pub, "kumo_test_feed", "before")
	if got := receive(t, ch); got != "before" {
		t.Errorf("received %q, want before", got)
	}
	cancel()
	deadline := time.After(feedWait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("subscription not closed %s after its context ended", feedWait)
		}
	}
}

func testFeedInvalid(t *testing.T, pub, sub store.Store) {
	ctx := t.Context()
	tests := []struct {
		name, channel, payload string
	}{
		{"payload too long", "kumo_test_feed", strings.Repeat("x", store.MaxPayload+1)},
		{"NUL in payload", "kumo_test_feed", "a\x00b"},
		{"empty channel", "", "p"},
		{"upper case", "Kumo", "p"},
		{"quote", `kumo"; drop table nodes; --`, "p"},
		{"too long channel", strings.Repeat("k", 64), "p"},
	}
	for _, tt := range tests {
		if err := pub.Publish(ctx, tt.channel, tt.payload); !errors.Is(err, store.ErrInvalidFeed) {
			t.Errorf("%s: Publish error = %v, want ErrInvalidFeed", tt.name, err)
		}
		if tt.channel == "kumo_test_feed" {
			continue
		}
		if _, err := sub.Subscribe(ctx, tt.channel); !errors.Is(err, store.ErrInvalidFeed) {
			t.Errorf("%s: Subscribe error = %v, want ErrInvalidFeed", tt.name, err)
		}
	}
}
