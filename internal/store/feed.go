package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// MaxPayload is the longest payload, in bytes, [Store.Publish] takes
// (PostgreSQL's NOTIFY refuses 8000 bytes or more).
const MaxPayload = 7999

// SubscriberBuffer is how many payloads a subscription holds for a
// subscriber that does not keep up; past that they are coalesced into one
// resync ("").
const SubscriberBuffer = 256

// ErrInvalidFeed means a channel name or payload [Store.Publish] or
// [Store.Subscribe] cannot carry.
var ErrInvalidFeed = errors.New("invalid feed channel or payload")

// CheckFeed returns an error wrapping ErrInvalidFeed unless channel is a
// valid channel name (1 to 63 lowercase ASCII letters, digits or '_',
// starting with a letter) and payload is at most MaxPayload bytes with no
// NUL byte (PostgreSQL text has none). Both backends check with it, so
// they refuse the same calls.
func CheckFeed(channel, payload string) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes is longer than %d", ErrInvalidFeed, len(payload), MaxPayload)
	}
	if strings.IndexByte(payload, 0) >= 0 {
		return fmt.Errorf("%w: payload holds a NUL byte", ErrInvalidFeed)
	}
	ok := len(channel) > 0 && len(channel) <= 63 && channel[0] >= 'a' && channel[0] <= 'z'
	for i := 0; ok && i < len(channel); i++ {
		c := channel[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
	}
	if !ok {
		return fmt.Errorf("%w: channel %q must be 1 to 63 of a-z, 0-9 and _, starting with a letter", ErrInvalidFeed, channel)
	}
	return nil
}

// Fanout delivers payloads to the subscribers of named channels within
// one process: the SQLite backend's whole feed, and where the PostgreSQL
// backend's listener hands what it receives. Deliver never blocks: each
// subscription queues at most SubscriberBuffer payloads, a payload
// already waiting is not queued again, and a full queue is replaced by
// one "" (resync). Its zero value is ready to use; it is safe for
// concurrent use.
type Fanout struct {
	mu   sync.Mutex
	subs map[string]map[*subscription]struct{} // by channel
}

// subscription is one Subscribe: a queue, and the goroutine that moves
// it to the subscriber's channel until the subscriber's context ends.
type subscription struct {
	mu     sync.Mutex
	queue  []string
	inHand string        // taken from the queue, not yet received
	held   bool          // inHand is set
	wake   chan struct{} // 1-buffered: the queue is not empty
}

func (s *subscription) push(payload string) {
	s.mu.Lock()
	switch {
	case s.held && s.inHand == payload, slices.Contains(s.queue, payload):
	case len(s.queue) >= SubscriberBuffer:
		s.queue = append(s.queue[:0], "")
	default:
		s.queue = append(s.queue, payload)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) pop() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return "", false
	}
	p := s.queue[0]
	s.queue = s.queue[1:]
	s.inHand, s.held = p, true
	return p, true
}

// received records that the payload in hand reached the subscriber.
func (s *subscription) received() {
	s.mu.Lock()
	s.inHand, s.held = "", false
	s.mu.Unlock()
}

// Subscribe adds a subscription to channel and returns its channel, which
// is closed once ctx ends (the subscription is then removed). The
// goroutine that feeds it ends with ctx.
func (f *Fanout) Subscribe(ctx context.Context, channel string) <-chan string {
	s := &subscription{wake: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[string]map[*subscription]struct{}{}
	}
	if f.subs[channel] == nil {
		f.subs[channel] = map[*subscription]struct{}{}
	}
	f.subs[channel][s] = struct{}{}
	f.mu.Unlock()

	out := make(chan string)
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.subs[channel], s)
			if len(f.subs[channel]) == 0 {
				delete(f.subs, channel)
			}
			f.mu.Unlock()
		}()
		for {
			p, ok := s.pop()
			if !ok {
				select {
				case <-s.wake:
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- p:
				s.received()
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Deliver queues payload for every subscription of channel.
func (f *Fanout) Deliver(channel, payload string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs[channel] {
		s.push(payload)
	}
}

// DeliverAll queues payload for every subscription of every channel (a
// resync, "", after notifications may have been lost).
func (f *Fanout) DeliverAll(payload string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, subs := range f.subs {
		for s := range subs {
			s.push(payload)
		}
	}
}

// Channels returns the channels that have subscriptions, in no order.
func (f *Fanout) Channels() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.subs))
	for c := range f.subs {
		out = append(out, c)
	}
	return out
}
