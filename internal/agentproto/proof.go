package agentproto

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Proof headers: every agent request carries its process's public key, the
// time it was signed and an ed25519 signature over [Request]'s canonical
// form, besides the node credential.
const (
	KeyHeader       = "X-Kumo-Agent-Key"       // the agent process's public key, unpadded base64url
	TimeHeader      = "X-Kumo-Agent-Time"      // when the request was signed, Unix seconds
	SignatureHeader = "X-Kumo-Agent-Signature" // ed25519 signature, unpadded base64url
)

// ProofWindow is how far a proof's time may lie from the verifier's clock,
// either way.
const ProofWindow = 2 * time.Minute

// ExporterLabel is the TLS exporter label (RFC 5705, RFC 8446 7.5) whose
// keying material binds a connect request to its TLS connection.
const ExporterLabel = "EXPORTER-kumo-agent-connect"

// exporterLen is the length of the keying material signed.
const exporterLen = 32

// Errors of [Verify]; each is wrapped with detail.
var (
	ErrNoProof      = errors.New("request carries no agent key proof")
	ErrProofExpired = errors.New("agent key proof is outside the accepted time window")
	ErrBadProof     = errors.New("agent key proof does not verify")
)

// Request is what a proof covers: one HTTP request one agent sends.
type Request struct {
	Method string // e.g. "GET"
	URI    string // the path and query as sent (http.Request.URL.RequestURI())
	NodeID string // the node the request speaks for (NodeHeader)
	// Exporter is the keying material of the request's TLS connection
	// (see [Exporter]); it binds a connect request to its connection, so
	// that a captured proof cannot be replayed on another. Nil for a
	// connection without TLS and for requests other than connect, which the
	// HTTP client may send on any pooled connection.
	Exporter []byte
}

// canonical returns the bytes signed for r with key pub at unix.
func (r Request) canonical(pub string, unix int64) []byte {
	var b strings.Builder
	for _, s := range []string{"kumo-agent-proof/1", r.Method, r.URI, r.NodeID, strconv.FormatInt(unix, 10), pub,
		base64.RawURLEncoding.EncodeToString(r.Exporter)} {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Key is an agent process's key pair. It is made in memory when the
// process starts and never written anywhere: the control plane binds a
// node to the first key it sees, so the node credential is useless to
// anyone without this process's memory.
type Key struct {
	priv ed25519.PrivateKey
	pub  string // unpadded base64url of the public key
}

// NewKey returns a fresh key pair.
func NewKey() (*Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate agent key: %w", err)
	}
	return &Key{priv: priv, pub: base64.RawURLEncoding.EncodeToString(pub)}, nil
}

// Public returns the public key as sent in KeyHeader.
func (k *Key) Public() string { return k.pub }

// Sign sets the proof headers on h for r, signed at now.
func (k *Key) Sign(h http.Header, r Request, now time.Time) {
	unix := now.Unix()
	sig := ed25519.Sign(k.priv, r.canonical(k.pub, unix))
	h.Set(KeyHeader, k.pub)
	h.Set(TimeHeader, strconv.FormatInt(unix, 10))
	h.Set(SignatureHeader, base64.RawURLEncoding.EncodeToString(sig))
}

// Verify checks the proof headers of h for r at now and returns the
// public key that signed it. It wraps ErrNoProof when a header is missing,
// ErrProofExpired when the signing time is more than ProofWindow from now,
// and ErrBadProof for anything else that does not verify.
func Verify(h http.Header, r Request, now time.Time) (string, error) {
	pub, ts, sig := h.Get(KeyHeader), h.Get(TimeHeader), h.Get(SignatureHeader)
	if pub == "" || ts == "" || sig == "" {
		return "", fmt.Errorf("%w: %s, %s and %s are required", ErrNoProof, KeyHeader, TimeHeader, SignatureHeader)
	}
	rawPub, err := base64.RawURLEncoding.DecodeString(pub)
	if err != nil || len(rawPub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("%w: %s is not an ed25519 public key", ErrBadProof, KeyHeader)
	}
	rawSig, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(rawSig) != ed25519.SignatureSize {
		return "", fmt.Errorf("%w: %s is not an ed25519 signature", ErrBadProof, SignatureHeader)
	}
	if len(ts) > 20 {
		return "", fmt.Errorf("%w: %s is not a time", ErrBadProof, TimeHeader)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: %s is not a time", ErrBadProof, TimeHeader)
	}
	if d := now.Sub(time.Unix(unix, 0)); d > ProofWindow || d < -ProofWindow {
		return "", fmt.Errorf("%w (signed %s from the server's clock, %s allowed)", ErrProofExpired, d.Truncate(time.Second), ProofWindow)
	}
	if !ed25519.Verify(rawPub, r.canonical(pub, unix), rawSig) {
		return "", fmt.Errorf("%w: the signature does not match this request and connection", ErrBadProof)
	}
	return pub, nil
}

// Exporter returns the keying material of a TLS connection that a connect
// request's proof signs; both sides compute it from their end of the
// connection.
func Exporter(cs *tls.ConnectionState) ([]byte, error) {
	b, err := cs.ExportKeyingMaterial(ExporterLabel, nil, exporterLen)
	if err != nil {
		return nil, fmt.Errorf("tls exporter: %w", err)
	}
	return b, nil
}

// KeyID returns a short fingerprint of a public key, for logs.
func KeyID(pub string) string {
	sum := sha256.Sum256([]byte(pub))
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}
