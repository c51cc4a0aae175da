// Package agentproto is the wire protocol between a node agent and the
// control plane.
//
// The agent connects out (so nodes behind NAT work): it sends
//
//	GET /agent/v1/connect
//	Authorization: Bearer <node credential>
//	X-Kumo-Node: <node ID>
//	X-Kumo-Agent-Key, X-Kumo-Agent-Time, X-Kumo-Agent-Signature: <proof>
//	Connection: Upgrade
//	Upgrade: kumo-agent/<Version>
//
// and the server answers 101 Switching Protocols. From then on the
// connection is a yamux session (see [MuxConfig] and [Accept]): the agent
// opens its first stream, on which both sides write Messages as JSON, one
// per line, each side reading with a Decoder and writing with an Encoder;
// every later stream is opened by the control plane and carries an SSH
// connection to the node's SSH server, after one [StreamHeader] line. The agent's first
// message is Hello; the server's is Welcome. A wrong version gets 426 with an
// ARM error body naming the versions the server speaks.
//
// Besides the connection, the agent uses two plain HTTPS routes with the
// same headers: GET /agent/v1/snapshots/{id} downloads a job's code
// snapshot (a tar stream), and PUT /agent/v1/jobs/{runId}/artifacts?attempt=N
// uploads the job's outputs/ and logs/ as a tar stream before the agent
// sends Done; N is the attempt the Run message named.
//
// Every request also proves that it comes from the agent process the
// node's record is bound to (see [Key]): the process makes an ed25519 key
// pair in memory when it starts and signs each request's method, path,
// node ID and time, and, for the connect request over TLS, the
// connection's TLS exporter keying material ([Exporter]), sending the
// result in KeyHeader, TimeHeader and SignatureHeader. The control plane
// binds the node to the key of its first accepted connect and refuses
// every later request signed by another key with 401 and error code
// KeyMismatchCode, so a node credential read by someone else is useless,
// and so is a restarted agent: its node is replaced.
//
// Version history:
//
//	1: first version.
//	2: requests carry an agent key proof (KeyHeader, TimeHeader,
//	   SignatureHeader); Run's JobSpec carries the job's Attempt, and the
//	   artifacts upload names it in its attempt query parameter.
//	3: the upgraded connection is a yamux session (see [MuxConfig]): the
//	   agent opens the first stream, which carries the messages as in
//	   version 2; every later stream is opened by the control plane and is
//	   a byte stream to the node's SSH server, preceded by one JSON line
//	   ([StreamHeader]). Hello carries the node's SSH HostKey, Welcome the
//	   cluster's SSH settings, Heartbeat the count of open SSH Sessions, and
//	   AuthFailed reports a refused SSH login.
//	   Extended without a version bump (an agent that does not know them
//	   ignores them, and its job is killed when its node is removed): the
//	   server may send Evict (the node is taken away at Deadline: notice
//	   file, SIGTERM, SIGKILL at Deadline), and Exited and Done may carry
//	   reason "preempted". Run's JobSpec may carry Gang (a multi-node
//	   job); an agent that does not know it runs the command once.
package agentproto

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// Version is the protocol version this build speaks.
const Version = 3

// Upgrade is the value of the Upgrade header for Version.
var Upgrade = fmt.Sprintf("kumo-agent/%d", Version)

// Routes and headers.
const (
	ConnectPath   = "/agent/v1/connect"
	SnapshotPath  = "/agent/v1/snapshots/" // + snapshot ID
	ArtifactsPath = "/agent/v1/jobs/"      // + run ID + "/artifacts"
	NodeHeader    = "X-Kumo-Node"
	AttemptQuery  = "attempt" // the artifacts upload's query parameter naming JobSpec.Attempt
	// WarningsTrailer is the HTTP trailer of an artifacts upload that
	// carries, one per value, what the agent left out of the tar (a link
	// pointing outside the job's directory); the server records them on
	// the job. Values are ASCII.
	WarningsTrailer = "Kumo-Artifact-Warnings"
)

// KeyMismatchCode is the error code of the 401 answer to a request signed
// by a key other than the one its node is bound to. An agent that gets it
// stops: the node belongs to another process (or to an earlier run of this
// one), and the control plane replaces it.
const KeyMismatchCode = "AgentKeyMismatch"

// NodeRemovedCode is the error code of the 403 answer to a request for a
// node that is unusable or leaving. An agent that gets it on connect stops:
// the node will not be used again.
const NodeRemovedCode = "NodeRemoved"

// ReasonPreempted is the Reason of Exited and Done for a job that ended
// because its node was evicted (see TypeEvict).
const ReasonPreempted = "preempted"

// Type names a message.
type Type string

// Message types. Agent → server: Hello, Heartbeat, Started, Log, Exited,
// Done, AuthFailed. Server → agent: Welcome, Run, Cancel, Ack, Shutdown, Evict.
const (
	TypeHello     Type = "hello"     // first agent message: who it is and what it holds
	TypeHeartbeat Type = "heartbeat" // the agent is alive
	TypeStarted   Type = "started"   // a job's process started
	TypeLog       Type = "log"       // a chunk of a job's output
	TypeExited    Type = "exited"    // a job's process ended; artifacts are being uploaded
	TypeDone      Type = "done"      // a job is finished and its artifacts uploaded
	TypeWelcome   Type = "welcome"   // first server message
	TypeRun       Type = "run"       // start a job (idempotent by RunID)
	TypeCancel    Type = "cancel"    // cancel a job
	TypeAck       Type = "ack"       // the server recorded a job's Done; the agent may forget it
	TypeShutdown  Type = "shutdown"  // the node is being removed: stop jobs and exit
	// TypeAuthFailed reports a refused SSH login (Source, User, Message),
	// or a source refused for a while after many (Message says so).
	TypeAuthFailed Type = "authFailed"
	TypeEvict      Type = "evict" // the node is taken away at Deadline: give RunID's job notice, SIGTERM now, SIGKILL then
)

// Message is one protocol message. Only the fields of its Type are set.
type Message struct {
	Type Type `json:"type"`

	// Hello.
	Protocol int         `json:"protocol,omitempty"` // Hello and Welcome: the sender's Version
	NodeID   string      `json:"nodeId,omitempty"`
	Address  string      `json:"address,omitempty"` // where the node can be reached; "" unknown
	Note     string      `json:"note,omitempty"`    // e.g. limits recorded only
	Jobs     []JobReport `json:"jobs,omitempty"`    // Hello: jobs the agent holds
	// HostKey is the node's SSH host public key in authorized_keys form
	// ("ssh-ed25519 AAAA..."); "" when the agent serves no SSH.
	HostKey string `json:"hostKey,omitempty"`

	// Welcome.
	HeartbeatInterval time.Duration `json:"heartbeatInterval,omitempty"` // how often to send Heartbeat
	// LogOffsets maps a RunID to the bytes of each stream the server
	// holds; the agent resends from there.
	LogOffsets map[string]Offsets `json:"logOffsets,omitempty"`
	// SSH is the cluster's SSH login; nil means the node serves no SSH
	// (the cluster has no admin credentials).
	SSH *SSHSettings `json:"ssh,omitempty"`

	// Heartbeat: the SSH sessions open on the node; nil means not
	// reported (unchanged). The agent also sends a Heartbeat at once when
	// the count changes.
	Sessions *int `json:"sessions,omitempty"`

	// AuthFailed.
	Source string `json:"source,omitempty"` // who tried: an address, or the API token's name when tunnelled
	User   string `json:"user,omitempty"`   // the user name tried, truncated

	// Run.
	Job *JobSpec `json:"job,omitempty"`

	// Started, Log, Exited, Done, Cancel, Ack.
	RunID string `json:"runId,omitempty"`

	// Started.
	PID int `json:"pid,omitempty"`

	// Log.
	Stream string `json:"stream,omitempty"` // "stdout" or "stderr"
	Offset int64  `json:"offset,omitempty"` // offset of Data[0] in the stream
	Data   []byte `json:"data,omitempty"`

	// Exited and Done.
	ExitCode *int   `json:"exitCode,omitempty"`
	Reason   string `json:"reason,omitempty"`  // "exited", "canceled", "timeout", "error", "preempted"; Shutdown: why
	Message  string `json:"message,omitempty"` // human-readable failure detail

	// Time is when the event happened on the sender (Started, Exited, Done).
	Time time.Time `json:"time,omitzero"`

	// Deadline is when the node is taken away (Evict).
	Deadline time.Time `json:"deadline,omitzero"`
}

// SSHSettings are a cluster's SSH login, as the node's SSH server needs
// them: never the password itself.
type SSHSettings struct {
	User         string `json:"user"`                   // the admin user name
	PasswordHash string `json:"passwordHash,omitempty"` // argon2id PHC hash (package secret); "" means no password login
	PublicKey    string `json:"publicKey,omitempty"`    // authorized_keys line; "" means no key login
	// Port, when not zero, is the port the node's SSH server also listens
	// on directly (remoteLoginPortPublicAccess Enabled); zero means only
	// the tunnel.
	Port int `json:"port,omitempty"`
}

// StreamHeader is the JSON line the control plane writes first on every
// stream it opens to a node.
type StreamHeader struct {
	// Source names who the stream is for, for the node's records of
	// refused logins: the API token's name and the client's address.
	Source string `json:"source"`
}

// MuxConfig is the yamux configuration both sides of version 3 use.
// Keepalives stay off: heartbeats already watch the connection.
func MuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	c.MaxStreamWindowSize = 1 << 20
	c.StreamOpenTimeout = 30 * time.Second
	c.StreamCloseTimeout = 30 * time.Second
	return c
}

// Offsets are byte counts of a job's two output streams.
type Offsets struct {
	Stdout int64 `json:"stdout"`
	Stderr int64 `json:"stderr"`
}

// JobState is where a job stands on the agent.
type JobState string

// Job states an agent reports in Hello.
const (
	JobStarting JobState = "starting" // received, process not started yet
	JobRunning  JobState = "running"  // process runs
	JobExited   JobState = "exited"   // process ended; Done not yet acknowledged
)

// JobReport is a job an agent holds, reported in Hello after a reconnect.
type JobReport struct {
	RunID    string   `json:"runId"`
	State    JobState `json:"state"`
	ExitCode *int     `json:"exitCode,omitempty"` // set when State is JobExited
	Reason   string   `json:"reason,omitempty"`   // set when State is JobExited
	Message  string   `json:"message,omitempty"`
	Logs     Offsets  `json:"logs"` // bytes the agent holds per stream
}

// JobSpec is what a node needs to run a job.
type JobSpec struct {
	RunID      string            `json:"runId"`
	Attempt    int               `json:"attempt,omitempty"` // the job's attempt (1 for its first run); sent back with its artifacts
	Name       string            `json:"name"`
	Command    string            `json:"command"`
	Env        map[string]string `json:"env,omitempty"`
	SnapshotID string            `json:"snapshotId,omitempty"` // "" means no code to download
	Timeout    time.Duration     `json:"timeout,omitempty"`    // 0 means none
	Grace      time.Duration     `json:"grace,omitempty"`      // SIGTERM→SIGKILL; 0 means the agent's default
	// LogLimit is how many bytes of stdout and stderr together the node
	// keeps and sends; past it the agent cuts its log files and stops
	// sending (the control plane cuts at the same byte). 0 means no limit.
	LogLimit int64 `json:"logLimit,omitempty"`
	// Gang, for a job of more than one node or process, says how the
	// job's processes find each other; nil means one process.
	Gang *GangSpec `json:"gang,omitempty"`
}

// GangSpec is a distributed job's layout, the same for all its nodes: each
// node finds its NODE_RANK by its own ID in NodeIDs.
type GangSpec struct {
	NodeIDs   []string `json:"nodeIds"`   // the job's nodes in rank order
	Addresses []string `json:"addresses"` // where each can be reached by the others, as NodeIDs
	// ProcessesPerNode is how many processes each node starts (≥ 1).
	ProcessesPerNode int `json:"processesPerNode"`
	// Distribution is "PyTorch", "Mpi", "TensorFlow", or "" (PyTorch's
	// variables).
	Distribution string `json:"distribution,omitempty"`
	// MasterPort is MASTER_PORT: where rank 0 listens.
	MasterPort int `json:"masterPort"`
	// Workers is a TensorFlow job's worker count (the first tasks); the
	// rest of its tasks are parameter servers.
	Workers int `json:"workers,omitempty"`
}

// Encoder writes messages; it is safe for concurrent use.
type Encoder struct {
	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder {
	bw := bufio.NewWriter(w)
	return &Encoder{w: bw, enc: json.NewEncoder(bw)}
}

// Send writes m and flushes it.
func (e *Encoder) Send(m Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enc.Encode(m); err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return nil
}

// MaxMessage bounds one message's encoded size.
const MaxMessage = 4 << 20

// Decoder reads messages. It is not safe for concurrent use.
type Decoder struct {
	sc *bufio.Scanner
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxMessage)
	return &Decoder{sc: sc}
}

// Next reads the next message; io.EOF at a clean end of stream.
func (d *Decoder) Next() (Message, error) {
	if !d.sc.Scan() {
		if err := d.sc.Err(); err != nil {
			return Message{}, fmt.Errorf("read message: %w", err)
		}
		return Message{}, io.EOF
	}
	var m Message
	if err := json.Unmarshal(d.sc.Bytes(), &m); err != nil {
		return Message{}, fmt.Errorf("decode message: %w", err)
	}
	return m, nil
}
