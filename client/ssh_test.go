package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"kumo/api"
)

// TestDialSSH: the tunnel request asks for the upgrade with the token, and
// the upgraded connection carries bytes both ways; a refusal is an *Error.
func TestDialSSH(t *testing.T) {
	f := newFakeARM(t)
	f.mux.HandleFunc("GET "+testWS+"/computes/c1/nodes/{node}/ssh", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("node") != "n1" {
			writeJSON(w, http.StatusConflict, api.ErrorResponse{Error: &api.ErrorDetail{Code: api.CodeNodeNotConnected, Message: "not connected"}})
			return
		}
		if r.Header.Get("Upgrade") != api.SSHUpgrade || r.Header.Get("Authorization") == "" {
			http.Error(w, "want an upgrade with a token", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.SSHUpgrade)
		brw.Flush()
		line, _ := brw.ReadString('\n')
		fmt.Fprint(c, "echo: "+line)
	})
	ct := &ComputeTarget{ws: f.workspace(), name: "c1"}
	tun, err := ct.DialSSH(context.Background(), "n1")
	if err != nil {
		t.Fatalf("DialSSH: %v", err)
	}
	defer tun.Close()
	io.WriteString(tun, "SSH-2.0-test\n")
	got, err := bufio.NewReader(tun).ReadString('\n')
	if err != nil || got != "echo: SSH-2.0-test\n" {
		t.Errorf("through the tunnel = %q, %v", got, err)
	}

	_, err = ct.DialSSH(context.Background(), "n2")
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != api.CodeNodeNotConnected {
		t.Errorf("DialSSH to a node not connected: %v, want *Error with code %s", err, api.CodeNodeNotConnected)
	}
}
