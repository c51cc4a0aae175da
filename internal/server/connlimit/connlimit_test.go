package connlimit

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// pair dials l and accepts, returning the client end and the server's
// *Conn.
func pair(t *testing.T, l *Listener) (net.Conn, *Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return client, sc.(*Conn)
}

// closedByServer reports whether the server closed c's other end.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err == nil {
		t.Fatal("read data from an idle connection")
	}
	return true // io.EOF or a reset
}

func listen(t *testing.T, cfg Config) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, cfg)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestPerAddrCapClosesOldestUnauthenticated(t *testing.T) {
	l := listen(t, Config{PerAddr: 3})
	var clients []net.Conn
	var conns []*Conn
	for range 3 {
		c, s := pair(t, l)
		clients, conns = append(clients, c), append(conns, s)
	}
	// The second connection authenticates: it must never be closed to
	// make room.
	Authenticated(ConnContext(context.Background(), conns[1]))
	for range 3 {
		c, s := pair(t, l)
		clients, conns = append(clients, c), append(conns, s)
	}
	// Unauthenticated in arrival order: 0, 2, 3, 4, 5; the cap of 3 closed
	// 0 and 2 to admit 4 and 5.
	want := []bool{true, false, true, false, false, false}
	for i, c := range clients {
		if got := closedByServer(t, c); got != want[i] {
			t.Errorf("connection %d closed = %v, want %v", i, got, want[i])
		}
	}
	if got, want := l.Stats(), (Stats{Open: 4, Unauthenticated: 3}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	for _, s := range conns {
		s.Close()
	}
	if got := l.Stats(); got != (Stats{}) {
		t.Errorf("after closing all, stats = %+v, want zero", got)
	}
}

func TestTotalCapRefusesWhenAllAuthenticated(t *testing.T) {
	l := listen(t, Config{Total: 2})
	for range 2 {
		_, s := pair(t, l)
		Authenticated(ConnContext(context.Background(), s))
	}
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Accept closes the third and waits for another.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	if !closedByServer(t, client) {
		t.Fatal("a connection past the total cap stayed open")
	}
	l.Close() // ends the waiting Accept
	for c := range accepted {
		c.Close()
		t.Error("Accept returned a connection past the total cap")
	}
}

func TestUnauthenticatedCapAcrossAddrs(t *testing.T) {
	l := listen(t, Config{Unauthenticated: 2})
	c0, _ := pair(t, l)
	c1, _ := pair(t, l)
	c2, _ := pair(t, l)
	for i, c := range []net.Conn{c0, c1, c2} {
		if got, want := closedByServer(t, c), i == 0; got != want {
			t.Errorf("connection %d closed = %v, want %v", i, got, want)
		}
	}
}

func TestAuthenticatedWithoutConnIsNoop(t *testing.T) {
	Authenticated(context.Background())
	if got := ConnContext(context.Background(), &net.TCPConn{}); got.Value(connKey{}) != nil {
		t.Error("ConnContext recorded a connection it did not accept")
	}
}
