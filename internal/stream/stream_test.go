package stream

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A splice carries bytes both ways, the bytes already buffered first, and
// passes each side's end of writing on, so that each reader sees EOF
// after everything the other side wrote.
func TestSpliceBothWaysWithBufferedBytes(t *testing.T) {
	userEnd, userProxy := tcpPair(t)
	nodeProxy, nodeEnd := tcpPair(t)
	// What an HTTP upgrade's reader already took from the user's side.
	ahead := bufio.NewReader(io.MultiReader(strings.NewReader("early "), userProxy))
	done := make(chan struct{})
	go func() {
		Splice(&Buffered{Conn: userProxy, R: ahead}, nodeProxy)
		close(done)
	}()
	go func() {
		io.WriteString(userEnd, "from user")
		userEnd.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		io.WriteString(nodeEnd, "from node")
		nodeEnd.(*net.TCPConn).CloseWrite()
	}()
	atNode, err := io.ReadAll(nodeEnd)
	if err != nil || string(atNode) != "early from user" {
		t.Errorf("node read %q, %v; want the buffered bytes, then the user's, then EOF", atNode, err)
	}
	atUser, err := io.ReadAll(userEnd)
	if err != nil || string(atUser) != "from node" {
		t.Errorf("user read %q, %v; want the node's bytes, then EOF", atUser, err)
	}
	<-done
}
