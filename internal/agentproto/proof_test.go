package agentproto

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestProof(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	signed := Request{Method: "GET", URI: ConnectPath, NodeID: "node-1", Exporter: []byte("exporter-of-connection-a")}
	tests := []struct {
		name   string
		sign   func(h http.Header) // makes the headers
		verify Request             // what the verifier sees
		at     time.Time           // the verifier's clock
		want   error               // nil: verifies
	}{
		{name: "valid", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: signed, at: now},
		{name: "clock skew within window", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: signed, at: now.Add(-ProofWindow + time.Second)},
		{name: "expired", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: signed, at: now.Add(ProofWindow + time.Second), want: ErrProofExpired},
		{name: "from the future", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: signed, at: now.Add(-ProofWindow - time.Second), want: ErrProofExpired},
		{name: "tampered method", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: with(signed, func(r *Request) { r.Method = "PUT" }), at: now, want: ErrBadProof},
		{name: "tampered path", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: with(signed, func(r *Request) { r.URI = ArtifactsPath + "run-1/artifacts" }), at: now, want: ErrBadProof},
		{name: "tampered node", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: with(signed, func(r *Request) { r.NodeID = "node-2" }), at: now, want: ErrBadProof},
		{name: "other connection", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: with(signed, func(r *Request) { r.Exporter = []byte("exporter-of-connection-b") }), at: now, want: ErrBadProof},
		{name: "no exporter where one was signed", sign: func(h http.Header) { key.Sign(h, signed, now) }, verify: with(signed, func(r *Request) { r.Exporter = nil }), at: now, want: ErrBadProof},
		{name: "tampered time", sign: func(h http.Header) {
			key.Sign(h, signed, now)
			h.Set(TimeHeader, "1741064768") // one second later
		}, verify: signed, at: now, want: ErrBadProof},
		{name: "key swapped", sign: func(h http.Header) {
			key.Sign(h, signed, now)
			h.Set(KeyHeader, other.Public())
		}, verify: signed, at: now, want: ErrBadProof},
		{name: "signature of another key", sign: func(h http.Header) {
			other.Sign(h, signed, now)
			h.Set(KeyHeader, key.Public())
		}, verify: signed, at: now, want: ErrBadProof},
		{name: "no headers", sign: func(http.Header) {}, verify: signed, at: now, want: ErrNoProof},
		{name: "no signature", sign: func(h http.Header) {
			key.Sign(h, signed, now)
			h.Del(SignatureHeader)
		}, verify: signed, at: now, want: ErrNoProof},
		{name: "garbage key", sign: func(h http.Header) {
			key.Sign(h, signed, now)
			h.Set(KeyHeader, "not base64!")
		}, verify: signed, at: now, want: ErrBadProof},
		{name: "short signature", sign: func(h http.Header) {
			key.Sign(h, signed, now)
			h.Set(SignatureHeader, "AAAA")
		}, verify: signed, at: now, want: ErrBadProof},
		{name: "huge time", sign: func(h http.Header) {
			key.Sign(h, signed, now)
			h.Set(TimeHeader, "99999999999999999999999999999")
		}, verify: signed, at: now, want: ErrBadProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			tt.sign(h)
			pub, err := Verify(h, tt.verify, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %q, %v; want error %v", pub, err, tt.want)
			}
			if tt.want == nil && pub != key.Public() {
				t.Errorf("Verify returned key %q, want the signer's %q", pub, key.Public())
			}
		})
	}
}

func TestKeysDiffer(t *testing.T) {
	a, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if a.Public() == b.Public() || KeyID(a.Public()) == KeyID(b.Public()) {
		t.Errorf("two keys share public key or ID: %s %s", KeyID(a.Public()), KeyID(b.Public()))
	}
}

// TestExporter checks that both ends of one TLS connection compute the
// same keying material, and that another connection's differs.
func TestExporter(t *testing.T) {
	got := make(chan []byte, 2)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := Exporter(r.TLS)
		if err != nil {
			t.Errorf("server Exporter: %v", err)
		}
		got <- b
	}))
	srv.StartTLS()
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	var client [][]byte
	for range 2 {
		raw, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "example.com"})
		if err := conn.Handshake(); err != nil {
			t.Fatal(err)
		}
		cs := conn.ConnectionState()
		b, err := Exporter(&cs)
		if err != nil {
			t.Fatal(err)
		}
		client = append(client, b)
		req, _ := http.NewRequest("GET", "https://example.com/", nil)
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		if server := <-got; string(server) != string(b) {
			t.Errorf("server's keying material %x differs from the client's %x", server, b)
		}
		conn.Close()
	}
	if string(client[0]) == string(client[1]) {
		t.Error("two connections have the same keying material")
	}
}

func with(r Request, mod func(*Request)) Request {
	mod(&r)
	return r
}
