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
