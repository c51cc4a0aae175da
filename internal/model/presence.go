package model

import "time"

// NodePresence is where a node's agent is connected and when it was last
// heard from, as the control plane replicas record it in the store so
// that each knows about the agents connected to the others.
type NodePresence struct {
	NodeID string
	// Replica is the ID of the control plane replica holding the node's
	// connection; "" means none does (the agent disconnected).
	Replica string
	// LastSeen is when the node's agent last sent anything, by the clock
	// of the replica that recorded it.
	LastSeen time.Time
	// SSHOpen is how many SSH logins the node's agent last reported open,
	// as the replica holding it recorded; 0 when none or unknown.
	SSHOpen int
	// SSHLastClosed is when the node's SSH login count last fell to zero,
	// by the recording replica's clock; zero if it never did while a
	// replica held the node.
	SSHLastClosed time.Time
}

// Replica is a control plane replica sharing the store, as it registers
// itself so that the others can reach it (to relay SSH streams to the
// nodes it holds).
type Replica struct {
	// Name is the replica's ID (the hub's Config.Replica).
	Name string
	// Address is the replica's base URL, as the other replicas reach it.
	Address string
	// SecretHash is the SHA-256 of the replica's per-process secret
	// (secret.HashToken); the secret itself is never stored.
	SecretHash string
	// HeartbeatAt is when the replica last refreshed its row, by its own
	// clock.
	HeartbeatAt time.Time
}

// NodeMessage is an agent protocol message waiting in the store for the
// replica that holds its node's connection (a replica sends a message to
// a node connected to another through the store).
type NodeMessage struct {
	// Seq orders a node's messages; the store assigns it on append (the
	// database's order, the same on every replica). Zero on append.
	Seq    int64
	NodeID string
	// Body is the encoded message (agentproto JSON).
	Body      []byte
	CreatedAt time.Time
}
