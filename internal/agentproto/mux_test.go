package agentproto

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/yamux"
)

// writes records each Write it is given.
type writes struct {
	mu  sync.Mutex
	got [][]byte
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, bytes.Clone(p))
	return len(p), nil
}

func (w *writes) Read([]byte) (int, error) { return 0, io.EOF }
func (w *writes) Close() error             { return nil }

// header is a yamux frame header of the given type and length.
func header(typ byte, length uint32) []byte {
	h := make([]byte, muxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:], 3) // stream ID
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestFrameConnJoinsDataFrames(t *testing.T) {
	const typeWindowUpdate, typePing = 1, 2
	body := []byte("hello")
	big := bytes.Repeat([]byte{'x'}, frameKeep+1)
	tests := []struct {
		name string
		in   [][]byte
		want [][]byte // what the connection underneath is given
	}{
		{"data frame", [][]byte{header(muxTypeData, 5), body}, [][]byte{append(header(muxTypeData, 5), body...)}},
		{"data frame without body (SYN, FIN)", [][]byte{header(muxTypeData, 0)}, [][]byte{header(muxTypeData, 0)}},
		{"window update", [][]byte{header(typeWindowUpdate, 1<<18)}, [][]byte{header(typeWindowUpdate, 1<<18)}},
		{"ping", [][]byte{header(typePing, 7)}, [][]byte{header(typePing, 7)}},
		{"two data frames", [][]byte{header(muxTypeData, 5), body, header(muxTypeData, 5), body},
			[][]byte{append(header(muxTypeData, 5), body...), append(header(muxTypeData, 5), body...)}},
		{"a body larger than the kept buffer", [][]byte{header(muxTypeData, uint32(len(big))), big, header(muxTypeData, 5), body},
			[][]byte{append(header(muxTypeData, uint32(len(big))), big...), append(header(muxTypeData, 5), body...)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &writes{}
			c := &frameConn{ReadWriteCloser: w}
			for _, p := range tc.in {
				if n, err := c.Write(p); n != len(p) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
				}
			}
			if diff := cmp.Diff(tc.want, w.got); diff != "" {
				t.Errorf("writes underneath (-want +got):\n%s", diff)
			}
		})
	}
}

// countingConn is one end of a net.Pipe that counts its writes.
type countingConn struct {
	net.Conn
	mu sync.Mutex
	n  int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestMuxOverFrameConn runs a yamux session both ways over frameConns:
// every byte arrives in order, each stream write costs one write of the
// connection underneath, and the session's addresses are the connection's.
func TestMuxOverFrameConn(t *testing.T) {
	a, b := net.Pipe()
	ca, cb := &countingConn{Conn: a}, &countingConn{Conn: b}
	client, err := Client(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := yamux.Server(joinFrames(cb), MuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if got := client.RemoteAddr(); got != a.RemoteAddr() {
		t.Errorf("session RemoteAddr = %v, want the connection's %v", got, a.RemoteAddr())
	}

	var want bytes.Buffer
	accepted := make(chan []byte, 1)
	go func() {
		st, err := server.AcceptStream()
		if err != nil {
			accepted <- nil
			return
		}
		got, _ := io.ReadAll(st)
		accepted <- got
	}()
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	ca.mu.Lock()
	before := ca.n
	ca.mu.Unlock()
	const messages = 50
	for i := range messages {
		msg := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*97)
		want.Write(msg)
		if _, err := st.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	ca.mu.Lock()
	writes := ca.n - before
	ca.mu.Unlock()
	st.Close()
	if got := <-accepted; !bytes.Equal(got, want.Bytes()) {
		t.Errorf("server read %d bytes, want the %d written", len(got), want.Len())
	}
	// The stream was opened before; its writes are data frames with
	// bodies, each one write underneath (window updates, if any, too).
	if writes != messages {
		t.Errorf("%d stream writes took %d writes of the connection, want %d", messages, writes, messages)
	}
}
