// Package store defines kumo's persistence contract: the Store interface,
// its sentinel errors, and the rules every backend follows. Backends live in
// subpackages (sqlite today; postgres later) and must all pass the
// conformance suite in storetest.
//
// The store never invents IDs or timestamps: callers pass them in, so every
// backend returns identical rows for identical calls.
package store

import (
	"context"
	"errors"
	"time"

	"kumo/internal/model"
)

// Sentinel errors. Backends wrap them; callers compare with errors.Is.
var (
	// ErrNotFound means the addressed row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a row with the same unique key already exists.
	ErrConflict = errors.New("conflict")
	// ErrPreconditionFailed means an ETag given as a precondition did not
	// match the stored row's.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrLastOwner means the change would leave no unrevoked owner token.
	ErrLastOwner = errors.New("last owner token")
	// ErrLeaseHeld means another holder holds a lease that has not
	// expired.
	ErrLeaseHeld = errors.New("lease held by another")
	// ErrFenced means a write carried a fence (see WithFence) whose term
	// is no longer the lease's, or whose lease is released: its writer no
	// longer leads, and the write changed nothing.
	ErrFenced = errors.New("fenced: lease term is over")
)

// Page asks for one page of a list ordered by the rows' case-folded names.
type Page struct {
	After string // return rows whose folded name sorts after this; "" = from the start
	Limit int    // at most this many rows; 0 or less means no limit
}

// NodeChange is one node's part of a [Store.JobUpdateNodes]: its new record
// and the state it must be in when stored.
type NodeChange struct {
	Node model.Node
	From model.NodeState
}

// UsageSum is what [Store.UsageSumByCompute] returns: the sums of a set
// of usage records.
type UsageSum struct {
	// Records is how many records were summed; 0 when none.
	Records int
	// Cost is what they accrued within the range, in USD, unrounded.
	Cost float64
	// OpenPricePerHour is the sum of PricePerHour over the records not
	// yet ended, in USD per hour, unrounded.
	OpenPricePerHour float64
}

// JobNodesUpdate is one job's part of a [Store.JobUpdateBatch]: what
// [Store.JobUpdateNodes] takes.
type JobNodesUpdate struct {
	Job   model.Job
	From  model.JobStatus
	Nodes []NodeChange
}

// Store is kumo's persistence. All methods are safe for concurrent use and
// block until the backend has committed (or failed). Methods that address
// one row return an error wrapping ErrNotFound when it is absent. Names are
// matched case-insensitively; rows keep the case they were created with.
type Store interface {
	// WorkspaceCreate inserts w; ErrConflict if a workspace with the same
	// subscription, resource group and name (case-insensitive) exists.
	WorkspaceCreate(ctx context.Context, w model.Workspace) error
	// WorkspaceUpdate replaces the mutable fields (description, tags,
	// ModifiedAt) of the workspace with w.ID.
	WorkspaceUpdate(ctx context.Context, w model.Workspace) error
	// WorkspaceGet returns the workspace named by its ARM ID.
	WorkspaceGet(ctx context.Context, id string) (model.Workspace, error)
	// WorkspaceList returns the workspaces of a resource group, or of the
	// whole subscription when resourceGroup is "".
	WorkspaceList(ctx context.Context, subscription, resourceGroup string, p Page) ([]model.Workspace, error)
	// WorkspaceDelete removes a workspace with its computes, operations and
	// quotas.
	WorkspaceDelete(ctx context.Context, id string) error

	// ComputeCreate inserts c and the operation that provisions it in one
	// transaction; ErrConflict if the workspace already has a compute of
	// that name; ErrNotFound if the workspace does not exist.
	ComputeCreate(ctx context.Context, c model.Compute, op model.Operation) error
	// ComputeUpdate replaces the compute with c.ID. When matchETag is not
	// "", the stored ETag must equal it, else ErrPreconditionFailed. When op
	// is not nil it is inserted in the same transaction.
	ComputeUpdate(ctx context.Context, c model.Compute, matchETag string, op *model.Operation) error
	// ComputeGet returns the compute with the given ARM ID.
	ComputeGet(ctx context.Context, id string) (model.Compute, error)
	// ComputeList returns one page of a workspace's computes.
	ComputeList(ctx context.Context, workspaceID string, p Page) ([]model.Compute, error)
	// ComputeListByState returns every compute, in any workspace, whose
	// state is one of states (used by the provisioner on start and on each
	// tick).
	ComputeListByState(ctx context.Context, states ...model.ProvisioningState) ([]model.Compute, error)
	// ComputeDelete removes the compute with the given ID. When matchETag is
	// not "", the stored ETag must equal it, else ErrPreconditionFailed.
	ComputeDelete(ctx context.Context, id, matchETag string) error

	// OperationCreate inserts a standalone operation (for example a delete
	// of a compute that is then removed).
	OperationCreate(ctx context.Context, op model.Operation) error
	// OperationUpdate replaces the status, error and end time of op.ID.
	OperationUpdate(ctx context.Context, op model.Operation) error
	// OperationGet returns an operation by ID.
	OperationGet(ctx context.Context, id string) (model.Operation, error)
	// OperationListInProgress returns every operation whose status is
	// InProgress, oldest first (ties by ID).
	OperationListInProgress(ctx context.Context) ([]model.Operation, error)

	// TokenCreate inserts t; ErrConflict if its ID or hash exists.
	TokenCreate(ctx context.Context, t model.Token) error
	// TokenGetByHash returns the token whose Hash equals hash, revoked or
	// not.
	TokenGetByHash(ctx context.Context, hash string) (model.Token, error)
	// TokenList returns every token, oldest first.
	TokenList(ctx context.Context) ([]model.Token, error)
	// TokenRevoke sets RevokedAt on the token with the given ID;
	// ErrNotFound if there is none. It refuses, with ErrLastOwner and no
	// change, to revoke the only unrevoked owner token: the check and the
	// change are one atomic step, so two revokes at once cannot leave no
	// owner.
	TokenRevoke(ctx context.Context, id string, at time.Time) error

	// QuotaSet creates or replaces one quota.
	QuotaSet(ctx context.Context, q model.Quota) error
	// QuotaList returns a workspace's quotas ordered by family.
	QuotaList(ctx context.Context, workspaceID string) ([]model.Quota, error)

	// JobCreate inserts j; ErrConflict if the workspace has a job of that
	// name (case-insensitive) or the RunID exists.
	JobCreate(ctx context.Context, j model.Job) error
	// JobSubmit inserts j as JobCreate does, with the next Seq in place
	// of j's: one larger than every Seq it handed out before and every Seq
	// stored or updated to, even by control planes sharing the database.
	// It is one write; a failed insert takes no Seq. It returns j as
	// stored.
	JobSubmit(ctx context.Context, j model.Job) (model.Job, error)
	// JobGet returns the job with the given ARM ID.
	JobGet(ctx context.Context, id string) (model.Job, error)
	// JobGetByRunID returns the job with the given RunID.
	JobGetByRunID(ctx context.Context, runID string) (model.Job, error)
	// JobList returns one page of a workspace's jobs, ordered by folded name.
	JobList(ctx context.Context, workspaceID string, p Page) ([]model.Job, error)
	// JobListByCompute returns a compute's jobs whose status is one of
	// statuses, in Seq order (FIFO).
	JobListByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) ([]model.Job, error)
	// JobHead returns the first limit jobs of a compute with the given
	// status, in Seq order (the head of its queue).
	JobHead(ctx context.Context, computeID string, status model.JobStatus, limit int) ([]model.Job, error)
	// JobCountByCompute counts a compute's jobs whose status is one of
	// statuses, by status; statuses with no jobs are absent. Its cost
	// follows the jobs counted, not the compute's history.
	JobCountByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) (map[model.JobStatus]int, error)
	// JobNodeCountByCompute is JobCountByCompute counting the nodes the
	// jobs need (their InstanceCount, at least 1 each), not the jobs.
	JobNodeCountByCompute(ctx context.Context, computeID string, statuses ...model.JobStatus) (map[model.JobStatus]int, error)
	// JobCountAhead counts a compute's jobs with the given status whose Seq
	// is below seq (a queued job's place in the queue).
	JobCountAhead(ctx context.Context, computeID string, status model.JobStatus, seq int64) (int, error)
	// JobComputeIDs returns the distinct compute IDs of jobs whose status
	// is one of statuses, in no particular order.
	JobComputeIDs(ctx context.Context, statuses ...model.JobStatus) ([]string, error)
	// JobSnapshotIDs returns the distinct, non-empty snapshot IDs of jobs,
	// in any workspace, whose status is one of statuses; none for none.
	JobSnapshotIDs(ctx context.Context, statuses ...model.JobStatus) ([]string, error)
	// JobListByStatus returns every job, in any workspace, whose status is
	// one of statuses, in Seq order.
	JobListByStatus(ctx context.Context, statuses ...model.JobStatus) ([]model.Job, error)
	// JobMaxSeq returns the largest Seq stored, or 0.
	JobMaxSeq(ctx context.Context) (int64, error)
	// JobUpdate replaces the job with j.ID if its stored status is from,
	// else ErrPreconditionFailed. When node is not nil, the node with
	// node.ID is replaced in the same transaction if its stored state is
	// nodeFrom (else ErrPreconditionFailed and nothing changes).
	JobUpdate(ctx context.Context, j model.Job, from model.JobStatus, node *model.Node, nodeFrom model.NodeState) error
	// JobUpdateNodes is JobUpdate with any number of nodes: the job and
	// every node change are one transaction, all or none. Each change
	// replaces the node with Node.ID if its stored state is From; a
	// mismatch anywhere is ErrPreconditionFailed, a missing row
	// ErrNotFound, and then nothing changes. It is how a gang job gets its
	// N nodes, and how a job's nodes are released together.
	JobUpdateNodes(ctx context.Context, j model.Job, from model.JobStatus, nodes []NodeChange) error
	// JobUpdateBatch applies updates in order, each as JobUpdateNodes
	// would (all or none of its job and nodes), in one transaction.
	// errs[i] says what became of updates[i]: nil when it was applied, an
	// error wrapping ErrPreconditionFailed or ErrNotFound when it changed
	// nothing, and then the others still apply. Any other error changes
	// nothing at all and is returned as err. It is how the dispatcher
	// commits a pass's placements at once.
	JobUpdateBatch(ctx context.Context, updates []JobNodesUpdate) (errs []error, err error)

	// NodeCreate inserts n; ErrConflict if its ID exists or another node
	// holds its SSHPort (ports above 0 are unique among stored nodes).
	NodeCreate(ctx context.Context, n model.Node) error
	// NodeGet returns the node with the given ID.
	NodeGet(ctx context.Context, id string) (model.Node, error)
	// NodeUpdate replaces the node with n.ID if its stored state is from,
	// else ErrPreconditionFailed. It leaves the stored AgentKey as it is.
	// It refuses, with ErrConflict, an SSHPort another node holds.
	NodeUpdate(ctx context.Context, n model.Node, from model.NodeState) error
	// NodeBindAgentKey sets the AgentKey of the node with id if it has
	// none. It returns nil if the node is bound to key (now or before),
	// ErrPreconditionFailed if it is bound to another key, and ErrNotFound
	// if there is no such node. A bound key never changes.
	NodeBindAgentKey(ctx context.Context, id, key string) error
	// NodeListByCompute returns a compute's nodes ordered by CreatedAt, ID.
	NodeListByCompute(ctx context.Context, computeID string) ([]model.Node, error)
	// NodeCountByCompute counts a compute's nodes by state; states with
	// no node are absent. It reads the index of nodes by compute and
	// state, so a compute's answer need not load its nodes.
	NodeCountByCompute(ctx context.Context, computeID string) (map[model.NodeState]int, error)
	// PlacementCandidates returns what a dispatcher pass places from: the
	// compute's idle nodes, ordered by CreatedAt, ID, and the head of its
	// queue (its queued jobs in Seq order), at most one job per idle node.
	// When the compute has no idle node, or no queued job, it returns
	// neither and reads no further, so that a pass over a busy compute
	// costs one count of its idle nodes; otherwise its cost follows the
	// idle nodes, not the compute's size. A backend may read it where its
	// writes go, when that is cheaper right after a commit.
	PlacementCandidates(ctx context.Context, computeID string) (idle []model.Node, queued []model.Job, err error)
	// NodeList returns every node ordered by CreatedAt, ID.
	NodeList(ctx context.Context) ([]model.Node, error)
	// NodeDelete removes the node with the given ID, with its presence
	// and outbox. Its usage record, if it has one, ends at the node's
	// StateSince (when it left service).
	NodeDelete(ctx context.Context, id string) error
	// NodeCreateUsage inserts n and its usage record u (u.NodeID is n.ID)
	// in one transaction; ErrConflict, and nothing written, if n's ID
	// exists or another node holds its SSHPort.
	NodeCreateUsage(ctx context.Context, n model.Node, u model.NodeUsage) error
	// UsageList returns the usage records of a workspace's nodes, of one
	// compute when computeID is not "", that accrued within [from, to):
	// started before to and not ended by from; ordered by StartedAt,
	// NodeID. Records outlive their nodes and computes.
	UsageList(ctx context.Context, workspaceID, computeID string, from, to time.Time) ([]model.NodeUsage, error)
	// UsageSumByCompute sums, in the database, the usage records of a
	// compute that UsageList would return for [from, to): how many, what
	// they cost within [from, to) (each record's Cost), and the price per
	// hour of those still open (EndedAt zero).
	UsageSumByCompute(ctx context.Context, computeID string, from, to time.Time) (UsageSum, error)

	// EventAppend records e.
	EventAppend(ctx context.Context, e model.Event) error
	// EventList returns a compute's most recent events, at most limit
	// (0 means all), oldest first.
	EventList(ctx context.Context, computeID string, limit int) ([]model.Event, error)

	// ComputeStatusSet creates or replaces a compute's live status.
	ComputeStatusSet(ctx context.Context, s model.ComputeStatus) error
	// ComputeStatusGet returns a compute's live status; ErrNotFound when
	// none was set.
	ComputeStatusGet(ctx context.Context, computeID string) (model.ComputeStatus, error)

	// Change feed: signals between the control plane processes that share
	// the database (see feed.go). A payload is a hint to look again, not
	// data: it may be coalesced with an equal one still undelivered, and
	// "" means "anything may have changed: resync".

	// Publish sends payload to every subscriber of channel on the
	// database, this Store's own included, once the call returns. A
	// channel or payload that CheckFeed refuses is an error wrapping
	// ErrInvalidFeed (payloads are at most MaxPayload bytes).
	Publish(ctx context.Context, channel, payload string) error
	// Subscribe returns a channel that receives the payloads published on
	// channel from now on, and is closed once ctx ends. It never blocks a
	// publisher: a subscriber that falls SubscriberBuffer payloads behind
	// gets one "" instead of them, and so does every subscriber after
	// notifications may have been lost (PostgreSQL: the listening
	// connection failed and was made again). SQLite's feed reaches the
	// subscribers of the same Store only: SQLite is for one process.
	Subscribe(ctx context.Context, channel string) (<-chan string, error)

	// NodePresenceSet creates or replaces the presence of each node in ps
	// in one write; a node that does not exist (deleted meanwhile) is
	// skipped.
	NodePresenceSet(ctx context.Context, ps []model.NodePresence) error
	// NodePresenceClear records that the node's agent left replica at at:
	// its Replica becomes "" and LastSeen at, if replica still holds it
	// (else nothing changes, and it is not an error).
	NodePresenceClear(ctx context.Context, nodeID, replica string, at time.Time) error
	// NodePresenceGet returns a node's presence; ErrNotFound when none was
	// recorded.
	NodePresenceGet(ctx context.Context, nodeID string) (model.NodePresence, error)
	// NodePresenceList returns every node's presence ordered by NodeID.
	NodePresenceList(ctx context.Context) ([]model.NodePresence, error)
	// ReplicaSet creates or replaces the replica r.Name.
	ReplicaSet(ctx context.Context, r model.Replica) error
	// ReplicaGet returns a replica; ErrNotFound when none is registered
	// by that name.
	ReplicaGet(ctx context.Context, name string) (model.Replica, error)
	// ReplicaDelete removes a replica; removing one that is not there is
	// not an error.
	ReplicaDelete(ctx context.Context, name string) error
	// NodeMessageAppend adds m to its node's outbox; the store sets its
	// Seq (m.Seq is ignored).
	NodeMessageAppend(ctx context.Context, m model.NodeMessage) error
	// NodeMessageTake removes and returns a node's outbox, in Seq order;
	// none for none. Two takers never get the same message.
	NodeMessageTake(ctx context.Context, nodeID string) ([]model.NodeMessage, error)
	// NodeMessageDeleteBefore removes the messages, of any node, created
	// before before, and returns how many it removed.
	NodeMessageDeleteBefore(ctx context.Context, before time.Time) (int, error)

	// Leader lease: which replica runs the reconcile loops (see package
	// leader), and the fences its writes carry (fence.go).

	// LeaseAcquire takes the lease name for holder, reachable at address,
	// until ttl from now: when nobody holds it, when it has expired, or,
	// when holder holds it already, renewing it (same Term, later
	// ExpiresAt, address updated). A change of holder increments Term by
	// one (the first holder gets 1). When another holder's lease has not
	// expired it returns that lease and an error wrapping ErrLeaseHeld,
	// and changes nothing.
	//
	// "Now" is the database's clock where replicas share a database
	// server (PostgreSQL: clock_timestamp()), so replicas whose clocks
	// disagree still agree on expiry; SQLite, which serves one host, uses
	// the local clock. The returned times are that clock's.
	LeaseAcquire(ctx context.Context, name, holder, address string, ttl time.Duration) (model.Lease, error)
	// LeaseGet returns the lease name as last stored, expired or not;
	// ErrNotFound when it was never taken.
	LeaseGet(ctx context.Context, name string) (model.Lease, error)
	// LeaseRelease ends the lease name now if holder holds it (Holder
	// becomes "", ExpiresAt now), so another replica may take it at once
	// and writes fenced with its term fail. It returns nil, changing
	// nothing, when holder does not hold it.
	LeaseRelease(ctx context.Context, name, holder string) error

	// Close releases the backend's resources.
	Close() error
}
