package agentproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func intp(i int) *int { return &i }

func TestRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	tests := []Message{
		{Type: TypeHello, Protocol: Version, NodeID: "node-1", Address: "10.0.0.4", Note: "limits recorded only",
			Jobs: []JobReport{
				{RunID: "r1", State: JobRunning, Logs: Offsets{Stdout: 10, Stderr: 2}},
				{RunID: "r2", State: JobExited, ExitCode: intp(3), Reason: "exited", Message: "boom", Logs: Offsets{Stdout: 1}},
			}},
		{Type: TypeHeartbeat},
		{Type: TypeStarted, RunID: "r1", PID: 4242, Time: at},
		{Type: TypeLog, RunID: "r1", Stream: "stdout", Offset: 17, Data: []byte("hello\n\x00\xff")},
		{Type: TypeExited, RunID: "r1", ExitCode: intp(0), Reason: "exited", Time: at},
		{Type: TypeDone, RunID: "r1", ExitCode: intp(137), Reason: "timeout", Message: "killed", Time: at},
		{Type: TypeWelcome, Protocol: Version, HeartbeatInterval: 5 * time.Second,
			LogOffsets: map[string]Offsets{"r1": {Stdout: 5, Stderr: 6}}},
		{Type: TypeRun, Job: &JobSpec{RunID: "r1", Attempt: 2, Name: "job", Command: "echo hi", Env: map[string]string{"A": "1"},
			SnapshotID: "snap", Timeout: time.Minute, Grace: time.Second}},
		{Type: TypeCancel, RunID: "r1"},
		{Type: TypeAck, RunID: "r1"},
		{Type: TypeShutdown, Reason: "the node is being removed"},
	}
	for _, want := range tests {
		t.Run(string(want.Type), func(t *testing.T) {
			var buf bytes.Buffer
			if err := NewEncoder(&buf).Send(want); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.HasSuffix(buf.String(), "\n") {
				t.Errorf("encoded %q: want exactly one line", buf.String())
			}
			dec := NewDecoder(&buf)
			got, err := dec.Next()
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
			if _, err := dec.Next(); err != io.EOF {
				t.Errorf("Next at end: error = %v, want io.EOF", err)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer whose Write is atomic, so only the
// Encoder can split a message.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// smallWrites passes each Write on in pieces of at most 7 bytes, so that
// messages from concurrent Sends would interleave unless Send holds its lock
// for the whole message.
type smallWrites struct{ w io.Writer }

func (s smallWrites) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(7, len(p))
		m, err := s.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

func TestConcurrentSend(t *testing.T) {
	const senders, each = 16, 50
	var out lockedBuffer
	enc := NewEncoder(smallWrites{&out})
	data := bytes.Repeat([]byte("x"), 5000) // larger than one bufio buffer flush
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				m := Message{Type: TypeLog, RunID: "r", Stream: "stdout", Offset: int64(g*each + i), Data: data}
				if err := enc.Send(m); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	dec := NewDecoder(&out.buf)
	seen := map[int64]bool{}
	for {
		m, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d messages: %v", len(seen), err)
		}
		if !bytes.Equal(m.Data, data) || seen[m.Offset] {
			t.Fatalf("message %d: got a damaged or repeated message", m.Offset)
		}
		seen[m.Offset] = true
	}
	if got, want := len(seen), senders*each; got != want {
		t.Errorf("decoded %d messages, want %d", got, want)
	}
}

func TestDecoderErrors(t *testing.T) {
	long, err := json.Marshal(Message{Type: TypeLog, Data: bytes.Repeat([]byte("a"), MaxMessage)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		want    []Type // messages read before the error
		wantEOF bool   // the end is a clean io.EOF, not an error
	}{
		{name: "empty", in: "", wantEOF: true},
		{name: "clean end", in: `{"type":"heartbeat"}` + "\n" + `{"type":"ack","runId":"r"}` + "\n",
			want: []Type{TypeHeartbeat, TypeAck}, wantEOF: true},
		{name: "last line without newline", in: `{"type":"heartbeat"}`, want: []Type{TypeHeartbeat}, wantEOF: true},
		{name: "malformed", in: `{"type":"heartbeat"}` + "\n" + `{"type":` + "\n", want: []Type{TypeHeartbeat}},
		{name: "not an object", in: "[1,2]\n"},
		{name: "over MaxMessage", in: `{"type":"heartbeat"}` + "\n" + string(long) + "\n", want: []Type{TypeHeartbeat}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := NewDecoder(strings.NewReader(tt.in))
			var got []Type
			var err error
			for {
				var m Message
				m, err = dec.Next()
				if err != nil {
					break
				}
				got = append(got, m.Type)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages read (-want +got):\n%s", diff)
			}
			if gotEOF := errors.Is(err, io.EOF); gotEOF != tt.wantEOF {
				t.Errorf("final error = %v, want io.EOF: %v", err, tt.wantEOF)
			}
		})
	}
}
