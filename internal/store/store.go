// Package store is the seam between the compute server and its database.
// Store is implemented once, over database/sql, by package sqlstore for
// SQLite and PostgreSQL; package storetest is the conformance suite both
// must pass. No database types leak out of this package.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Record is a task loaded with its concrete type: the base row, the type's
// fields (a *M for the type's fields struct M) and the type's definition.
type Record struct {
	Task   *task.Task
	Fields any
	Def    *registry.Definition
}

// Scope limits what a caller can see: an admin sees every task, a tenant
// only its own. Tasks outside the scope behave as if they did not exist.
type Scope struct {
	Admin    bool
	TenantID string
}

// AdminScope sees everything; used by the engine and by admin keys.
var AdminScope = Scope{Admin: true}

// Capabilities tell the engine what the database can do, so it branches on
// features rather than engine names.
type Capabilities struct {
	// SkipLocked is true when claims can skip rows locked by others
	// (concurrent claimers in several processes).
	SkipLocked bool
	// ListenNotify is true when the database can wake other processes.
	ListenNotify bool
}

// Store is the persistence interface of the compute server: every
// consumer's view (Admin, API, Queue, Deliveries) in one, which the SQL
// store implements and the conformance suite (storetest) checks. Each
// consumer takes only its own view.
type Store interface {
	Admin
	API
	Queue
	Deliveries
}

// Admin is what operators' commands and the process wiring need: the
// database's lifecycle, migrations, queue limits and API keys.
type Admin interface {
	// Capabilities reports what the database supports.
	Capabilities() Capabilities

	// Dialect names the SQL dialect ("sqlite" or "postgres") for
	// migrations and diagnostics.
	Dialect() string

	// Ping checks the database is reachable.
	Ping(ctx context.Context) error

	// Close releases the connections.
	Close() error

	// Migrate applies every pending migration, the core's and each
	// registered type's.
	Migrate(ctx context.Context) error

	// MigrationStatus lists the migrations and whether each is applied.
	MigrationStatus(ctx context.Context) ([]MigrationState, error)

	// SetQueueLimit sets (n > 0) or removes (n = 0) a queue's global
	// concurrency limit.
	SetQueueLimit(ctx context.Context, queue string, n int) error

	// QueueLimits returns the global concurrency limits by queue.
	QueueLimits(ctx context.Context) (map[string]int, error)

	// CreateAPIKey stores a key (only its hash).
	CreateAPIKey(ctx context.Context, k APIKey) error

	// CountAPIKeys counts unrevoked keys.
	CountAPIKeys(ctx context.Context) (int, error)

	// ListAPIKeys returns every key, revoked ones included, oldest first.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)

	// RevokeAPIKey revokes the key with that id for good; revoking a
	// revoked key is not an error. An unknown id is ErrKeyNotFound.
	RevokeAPIKey(ctx context.Context, id uuid.UUID) (*APIKey, error)

	// ArtifactsToExpire returns up to limit finished tasks that completed
	// before before and whose artifacts were not expired since they
	// completed, oldest completion first (artifact retention).
	ArtifactsToExpire(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error)

	// MarkArtifactsExpired records that the artifacts of the tasks were
	// removed at at. A task that is no longer finished before before (it
	// was retried meanwhile) is left as it is.
	MarkArtifactsExpired(ctx context.Context, ids []uuid.UUID, before, at time.Time) error
}

// API is the HTTP API's view of the store: tasks as their clients see
// them, the event log, webhook deliveries and key lookups.
type API interface {
	Workflows

	// Ping checks the database is reachable.
	Ping(ctx context.Context) error

	// CheckWritable checks that the database accepts a write now: it
	// commits a small write and, where the store can see its disk, checks
	// that there is room to grow. It returns an error wrapping ErrFull or
	// ErrUnavailable when it does not.
	CheckWritable(ctx context.Context) error

	// CreateTask inserts the base row, the type row and the "created"
	// event in one transaction. When rec.Task.IdempotencyKey is already
	// used, it returns the existing record and created=false, or
	// task.ErrIdempotencyMismatch when RequestHash differs.
	CreateTask(ctx context.Context, rec *Record) (existing *Record, created bool, err error)

	// GetTask loads a task with its concrete type.
	GetTask(ctx context.Context, id uuid.UUID, scope Scope) (*Record, error)

	// ListTasks returns one page of tasks, newest first.
	ListTasks(ctx context.Context, f ListFilter) (Page, error)

	// UpdateTask applies a PATCH to a pending task in one transaction.
	UpdateTask(ctx context.Context, id uuid.UUID, scope Scope, p Patch) (*Record, error)

	// SetStatus moves a task to a new status if the transition is allowed
	// (and, for a run's writes, if the run still owns the task), writing
	// the row and its event in one transaction. Refused changes write
	// nothing and return task.ErrIllegalTransition or task.ErrStaleRun.
	SetStatus(ctx context.Context, c StatusChange) (*task.Task, *event.Event, error)

	// ListEvents returns events after an id, oldest first.
	ListEvents(ctx context.Context, f EventFilter) ([]event.Event, error)

	// LookupAPIKey finds an unrevoked key by its hash. A revoked key is
	// ErrKeyRevoked, which also matches ErrKeyNotFound.
	LookupAPIKey(ctx context.Context, hash string) (*APIKey, error)

	// ListDeliveries returns the webhook deliveries of a task, oldest
	// first, each with its attempts; task.ErrNotFound when the task is
	// not in scope. A tenant does not see the deliveries made for an
	// admin's endpoint that receives every tenant's events.
	ListDeliveries(ctx context.Context, taskID uuid.UUID, scope Scope) ([]Delivery, error)

	// DeleteTask deletes a finished (completed, failed or cancelled) task
	// in scope with its type row, its events and its webhook deliveries
	// and attempts, in one transaction, and returns the task as it was.
	// task.ErrNotFound when it is not in scope; ErrNotFinished when it is
	// pending or executing, and then nothing is deleted. Its artifacts are
	// not the store's: the caller removes them.
	DeleteTask(ctx context.Context, id uuid.UUID, scope Scope) (*task.Task, error)

	// Redeliver makes a delivery pending and due now, whatever its
	// status, with a fresh attempt budget and retry window; its attempts
	// are kept and their numbering continues. ErrDeliveryNotFound when
	// the delivery does not exist or its task is not in scope.
	Redeliver(ctx context.Context, id int64, scope Scope) (*Delivery, error)

	// Endpoints are the webhook endpoints and the ledger across tasks.
	Endpoints
}

// Queue is the execution engine's view of the store: claims, leases,
// outcomes and what a run writes while it runs. Every write of a run is
// conditional on its attempt.
type Queue interface {
	// Ping checks the database is reachable.
	Ping(ctx context.Context) error

	// ClaimTasks atomically moves up to p.Limit due pending tasks to
	// executing for one worker, in priority, run_at, created_at order,
	// never exceeding a queue's global concurrency limit. It never starts
	// a task that never started and whose start deadline has passed: it
	// fails such tasks with category "start_timeout", with their events,
	// in the claim's transaction.
	ClaimTasks(ctx context.Context, p ClaimParams) ([]*Record, error)

	// ExtendLeases renews the leases of running attempts and returns the
	// runs that no longer own their task (rescued, cancelled, finished).
	ExtendLeases(ctx context.Context, runs []RunRef, lease time.Duration) (lost []RunRef, err error)

	// FinishRuns writes the outcomes of runs in one transaction: each
	// change (which must name its run's attempt, with admin scope) is
	// written as its delta (task.Change.Delta) if the task is still
	// executing at that attempt, without reading the row first. errs[i]
	// is nil when changes[i] was written, else why it was refused.
	FinishRuns(ctx context.Context, changes []StatusChange) (errs []error, err error)

	// RescueRuns hands each executing task whose lease has expired (or,
	// when p.Instance is set, every executing task of that instance) to
	// p.Decide under a row lock other maintainers skip, and writes the
	// change Decide returns, conditionally on the task's attempt; the
	// store decides nothing. It returns the tasks it changed, as written.
	// It is safe to run on every node at once.
	RescueRuns(ctx context.Context, p RescueParams) ([]*task.Task, error)

	// FailStartTimeouts fails pending tasks that never started before their
	// start deadline, with category "start_timeout".
	FailStartTimeouts(ctx context.Context, limit int) (int, error)

	// Subscribe delivers wake-ups (new due work) and cancel requests from
	// every process sharing the database, until ctx ends.
	Subscribe(ctx context.Context) <-chan Notification

	// SaveFields writes a run's type fields; conditional on the attempt.
	SaveFields(ctx context.Context, id uuid.UUID, attempt int, def *registry.Definition, fields any) error

	// SetProgress records progress and stage, extends the lease and,
	// when emit is true, writes a progress event; conditional on the
	// attempt.
	SetProgress(ctx context.Context, p ProgressUpdate) (*event.Event, error)

	// SetServiceTaskID records the external job id; conditional on the
	// attempt.
	SetServiceTaskID(ctx context.Context, id uuid.UUID, attempt int, serviceTaskID string) error

	// SetExecutorHandle records the handle of the job the run's executor
	// started (JSON) and its external id as service_task_id; conditional
	// on the attempt.
	SetExecutorHandle(ctx context.Context, id uuid.UUID, attempt int, handle json.RawMessage, serviceTaskID string) error

	// AddRunError appends e to the task's errors while the run (attempt)
	// still owns it: a failure the run got past, such as a server its
	// executor failed over from. ErrStaleRun otherwise.
	AddRunError(ctx context.Context, id uuid.UUID, attempt int, e task.Error) error
}

// Deliveries is the webhook deliverer's view of the store.
type Deliveries interface {
	// Subscribe delivers wake-ups (new due work) and cancel requests from
	// every process sharing the database, until ctx ends.
	Subscribe(ctx context.Context) <-chan Notification

	// ClaimDeliveries atomically takes up to c.Limit due pending webhook
	// deliveries (next_attempt_at <= now) for one sender, fairly across
	// destinations: round-robin over the destinations with due
	// deliveries (those with fewer claims in flight first), each
	// destination's oldest due first, never more than c.PerDestination
	// in flight per destination across every sender sharing the
	// database. Each claimed delivery gets attempts+1 and is in flight
	// until now+lease (next_attempt_at and the claim's end), so other
	// senders skip it until then. A sender that dies mid-request leaves
	// its deliveries due again after the lease.
	ClaimDeliveries(ctx context.Context, c DeliveryClaim) ([]Delivery, error)

	// PostponeDeliveries moves the waiting deliveries of a destination
	// (pending, not in flight, due before p.Until) to p.Until without
	// counting an attempt; those whose retry window started before
	// p.FailWindowsBefore fail instead, with p.Reason as their last
	// error. It returns how many were postponed and how many failed.
	PostponeDeliveries(ctx context.Context, p Postponement) (postponed, failed int, err error)

	// RecordDeliveryAttempt records one attempt and moves its delivery to
	// the outcome, in one transaction. The delivery changes only if it is
	// still pending at the attempt number the claim gave (a.Attempt);
	// otherwise the attempt row is still recorded (the request was sent)
	// and ErrDeliveryClaimLost is returned.
	RecordDeliveryAttempt(ctx context.Context, a DeliveryAttempt, o DeliveryOutcome) error
}

// MigrationState is one migration and whether it has been applied.
type MigrationState struct {
	Version   int64
	Source    string
	Applied   bool
	AppliedAt time.Time
}

// ListFilter selects tasks for ListTasks. Zero values do not filter; a
// list matches any of its values.
type ListFilter struct {
	Scope         Scope
	TaskTypes     []string
	Statuses      []task.Status
	QueueNames    []string
	TenantID      string
	CreatedAfter  time.Time
	CreatedBefore time.Time
	// Limit is the page size (1–500; 0 means 50).
	Limit int
	// Cursor continues a previous page (Page.NextCursor).
	Cursor string
}

// Page is one page of ListTasks.
type Page struct {
	Records []*Record
	// NextCursor is empty on the last page.
	NextCursor string
}

// Patch is a PATCH of a pending task: base fields (nil = unchanged) and the
// type fields to write.
type Patch struct {
	Priority      *int
	QueueName     *string
	RunAt         *time.Time
	MaxAttempts   *int
	WebhookURL    *string
	WebhookEvents *[]string
	// Apply changes the loaded type fields in place and returns the
	// columns it changed; it runs inside the transaction.
	Apply func(fields any) ([]registry.Column, error)
}

// StatusChange is one requested status transition: which task, who asks,
// and the change itself, whose rules (what it checks, clears and sets)
// live in task.Change. The store writes its delta (task.Change.Delta),
// conditionally on the status and attempt the change was checked against.
type StatusChange struct {
	TaskID uuid.UUID
	// Scope limits which tasks an API caller can change.
	Scope Scope
	task.Change
}

// ClaimParams parameterise ClaimTasks.
type ClaimParams struct {
	Worker string
	Limit  int
	Lease  time.Duration
	// Queues, when not empty, limits the claim to these queues.
	Queues []string
	// Types, when not empty, limits the claim to these task types.
	Types []string
	// ExecutorLimits bounds, by executor name (a task's provider_type),
	// how many tasks run on an executor at once, counted over every
	// process: a task is claimed only while its executor has room. The
	// processes of a deployment share one config file, so they pass the
	// same limits.
	ExecutorLimits map[string]int
}

// RunRef names one attempt of a task.
type RunRef struct {
	TaskID  uuid.UUID
	Attempt int
}

// RescueParams parameterise RescueRuns.
type RescueParams struct {
	// Instance, when set, selects every executing task of that worker
	// instance, whatever its lease: the tasks of a previous incarnation of
	// a restarted process. Empty selects the tasks whose lease expired.
	Instance string
	// Decide returns the change to write for a task whose run was lost
	// (the rescue policy, which lives in the queue). TaskID and Attempt
	// are set by the store.
	Decide func(t *task.Task) StatusChange
	// Limit bounds the tasks handled in one call (default 500).
	Limit int
	// StartBy, when set, is when the rescue's transaction must have
	// started: one that starts later changes nothing and returns
	// ErrRescueLate. A database that kept the rescuer waiting kept the
	// other workers from renewing their leases too.
	StartBy time.Time
}

// ErrRescueLate is RescueRuns' answer when its transaction started after
// RescueParams.StartBy.
var ErrRescueLate = errors.New("the rescue started late: the database was unavailable")

// Notification kinds.
const (
	// NotifyWake says due work may be waiting (a create, a re-queue).
	NotifyWake = "wake"
	// NotifyCancel says TaskID was cancelled while executing.
	NotifyCancel = "cancel"
	// NotifyEvents says new events were committed (readers of the event
	// log look again).
	NotifyEvents = "events"
)

// Notification is a message between processes sharing the database.
type Notification struct {
	Kind   string
	TaskID uuid.UUID
}

// ProgressUpdate is one progress report of a run.
type ProgressUpdate struct {
	TaskID   uuid.UUID
	Attempt  int
	Progress float64
	Stage    string
	Lease    time.Duration
	Emit     bool
}

// EventFilter selects events for ListEvents. Zero values do not filter; a
// list matches any of its values.
type EventFilter struct {
	TaskID    uuid.UUID // zero: every task
	AfterID   int64
	Limit     int
	Scope     Scope
	TaskTypes []string
	Statuses  []task.Status
	TenantID  string
}

// APIKey is a stored API key. The key itself is never stored.
type APIKey struct {
	ID        uuid.UUID
	Hash      string // hex SHA-256 of the key
	Prefix    string // the first characters, to tell keys apart
	Name      string
	TenantID  string
	Admin     bool
	CreatedAt time.Time
	// RevokedAt is when the key was revoked; nil for an active key.
	RevokedAt *time.Time
}

// ErrNotEditable means the task is no longer pending and cannot be patched.
var ErrNotEditable = errors.New("only pending tasks can be updated")

// ErrNotFinished means the task is pending or executing and cannot be
// deleted.
var ErrNotFinished = errors.New("only finished tasks (completed, failed or cancelled) can be deleted")

// ErrKeyNotFound means no active API key has that hash (or id).
var ErrKeyNotFound = errors.New("api key not found")

// ErrKeyRevoked means the key exists but was revoked; it wraps
// ErrKeyNotFound, so a revoked key is refused wherever an unknown one is.
var ErrKeyRevoked = fmt.Errorf("%w: revoked", ErrKeyNotFound)

// ErrBadCursor means a list cursor was not produced by ListTasks.
var ErrBadCursor = errors.New("invalid cursor")

// DeliveryStatus is the state of a webhook delivery.
type DeliveryStatus string

// Delivery statuses.
const (
	// DeliveryPending waits for its next attempt (or is being sent).
	DeliveryPending DeliveryStatus = "pending"
	// DeliveryDelivered got a 2xx answer.
	DeliveryDelivered DeliveryStatus = "delivered"
	// DeliveryFailed ran out of attempts or retry window, or its
	// destination is refused by the outbound policy.
	DeliveryFailed DeliveryStatus = "failed"
	// DeliveryStopped got 410 Gone: the receiver asked for no more.
	DeliveryStopped DeliveryStatus = "stopped"
)

// DeliveryTarget is where one event is sent: the URL, and the
// destination that concurrency limits and circuit breakers group
// deliveries by (decided by package webhook).
type DeliveryTarget struct {
	URL         string
	Destination string
}

// DeliveryClaim says what ClaimDeliveries may take.
type DeliveryClaim struct {
	// Limit is the most deliveries to claim.
	Limit int
	// Lease is how long the claimed deliveries stay in flight.
	Lease time.Duration
	// PerDestination is the most deliveries in flight per destination,
	// counting every sender's claims (0: no limit).
	PerDestination int
	// Skip lists destinations to claim nothing for.
	Skip []string
	// Probe lists destinations to claim at most one delivery for, and
	// only when none of theirs is in flight.
	Probe []string
}

// Postponement moves a destination's waiting deliveries (see
// PostponeDeliveries).
type Postponement struct {
	Destination string
	// Until is the new next attempt time.
	Until time.Time
	// FailWindowsBefore fails, instead of postponing, the deliveries
	// whose retry window (from redelivered_at, or else created_at)
	// started before it.
	FailWindowsBefore time.Time
	// Reason is the last error recorded on the deliveries that fail.
	Reason string
}

// MaxSnippetBytes bounds the response snippet stored with an attempt.
const MaxSnippetBytes = 1024

// Delivery is one event to be sent to one webhook URL.
type Delivery struct {
	ID      int64
	EventID int64
	TaskID  uuid.UUID
	URL     string
	// Destination groups deliveries for concurrency limits and circuit
	// breakers (scheme, host and port of URL).
	Destination string
	Status      DeliveryStatus
	Attempts    int
	// AttemptsBase is Attempts when the delivery was last redelivered
	// (0 before): attempts of the current budget are Attempts-AttemptsBase.
	AttemptsBase  int
	NextAttemptAt time.Time
	// LastStatusCode is the last attempt's HTTP status (0: no answer).
	LastStatusCode int
	LastError      string
	CreatedAt      time.Time
	UpdatedAt      *time.Time
	DeliveredAt    *time.Time
	// RedeliveredAt is when Redeliver last reset the delivery; the retry
	// window counts from it (from CreatedAt before any redelivery).
	RedeliveredAt *time.Time
	// EndpointID is the webhook endpoint the delivery was made for
	// (uuid.Nil: the task's own webhook_url or the default URL, or an
	// endpoint deleted since).
	EndpointID uuid.UUID
	// Secrets are the endpoint's signing secrets, current first, then the
	// previous one while a rotation's overlap lasts (ClaimDeliveries only;
	// empty for deliveries without an endpoint).
	Secrets []string

	// EventType and EventStatus describe the event.
	EventType   string
	EventStatus task.Status
	// Body is the event body, the request body (ClaimDeliveries only).
	Body json.RawMessage
	// TraceParent is the W3C traceparent stored on the delivery's task
	// ('' for a workflow's, or when tracing was off; ClaimDeliveries
	// only): the delivery's span joins the task's trace.
	TraceParent string
	// AttemptLog lists the recorded attempts, oldest first
	// (ListDeliveries and Redeliver only).
	AttemptLog []DeliveryAttempt
}

// DeliveryAttempt is one recorded HTTP attempt of a delivery.
type DeliveryAttempt struct {
	DeliveryID int64
	// Attempt is the delivery's attempt number, from the claim.
	Attempt   int
	StartedAt time.Time
	Duration  time.Duration
	// StatusCode is the HTTP status of the answer (0: none).
	StatusCode int
	// ResponseSnippet is the start of the answer's body, at most
	// MaxSnippetBytes of valid UTF-8 (the store enforces it).
	ResponseSnippet string
	// Error says why the attempt got no usable answer.
	Error string
}

// DeliveryOutcome is the state a delivery moves to after an attempt.
type DeliveryOutcome struct {
	Status DeliveryStatus
	// NextAttemptAt is when a pending delivery is retried.
	NextAttemptAt time.Time
}

// ErrDeliveryNotFound means no delivery with that id is in scope.
var ErrDeliveryNotFound = errors.New("webhook delivery not found")

// ErrDeliveryClaimLost means a delivery moved on since the attempt's
// claim (claimed again after its lease, redelivered, or finished), so the
// attempt's outcome was not applied.
var ErrDeliveryClaimLost = errors.New("webhook delivery claim lost")

// Slots is the shared accounting of executors whose servers take a
// bounded number of jobs at once (a ComfyUI server's prompts): one count
// for every worker process of a deployment. A slot is held by a run (a
// task and its attempt) and is free again when the run gives it back or
// its task is no longer executing at that attempt, so a dead worker's
// slots free themselves when its tasks are rescued.
type Slots interface {
	// TakeSlot takes a free slot for holder on one of servers of
	// executor: the server with the most free slots, the earlier in the
	// list on a tie; it returns that server's URL, or "" when every slot
	// is taken. A holder that already holds a slot of executor on one of
	// servers gets that server again.
	TakeSlot(ctx context.Context, executor string, servers []SlotServer, holder RunRef) (string, error)
	// ReleaseSlot gives back the slot holder holds on server; releasing a
	// slot not held is not an error.
	ReleaseSlot(ctx context.Context, executor, server string, holder RunRef) error
}

// Gates keep the executors of a deployment within their services' limits,
// for every worker process at once: a start rate per executor, and a pause
// during which no task of the executor is claimed (ClaimTasks skips them)
// — after a 429, or while the start rate is used up. A store that
// implements Gates honours the pauses in ClaimTasks.
type Gates interface {
	// TakeStart takes one start of executor, whose starts are limited to
	// perMinute in any minute, and returns 0; or, when none is free, takes
	// nothing, pauses executor until one is, and returns how long that is.
	TakeStart(ctx context.Context, executor string, perMinute int) (time.Duration, error)
	// PauseExecutor stops claims of executor's tasks until until (or the
	// later pause already set), recording why.
	PauseExecutor(ctx context.Context, executor string, until time.Time, reason string) error
	// ExecutorPauses returns the executors paused now, with until when and
	// why.
	ExecutorPauses(ctx context.Context) (map[string]ExecutorPause, error)
}

// StartBucket is the token bucket of a start rate of perMinute (Gates'
// TakeStart): it holds up to a tenth of a minute's starts (at least one),
// the burst, and refills with the rest spread evenly, so that no 60-second
// window sees more than perMinute starts (limits under two a minute refill
// at perMinute).
func StartBucket(perMinute int) (burst, perSecond float64) {
	burst = max(1, float64(perMinute/10))
	perSecond = (float64(perMinute) - burst) / 60
	if perSecond <= 0 {
		perSecond = float64(perMinute) / 60
	}
	return burst, perSecond
}

// ExecutorPause is an executor's pause: until when its tasks are not
// claimed, and why.
type ExecutorPause struct {
	Until  time.Time
	Reason string
}

// SlotServer is a server of an executor and how many jobs it may hold.
type SlotServer struct {
	URL   string
	Slots int
}

// Inbox keeps what the webhooks of a service that answers only by
// callback (a Cog container) delivered for one executor job, where every
// process of a deployment sees it: the API process that receives a
// webhook posts it, the worker process whose run waits reads it, and
// either may have restarted in between. An inbox is named by the digest of
// the job's callback token (never the token itself) and holds the last
// message posted, until one is posted as final: that one stays and later
// posts write nothing (the first terminal state wins; duplicates are
// harmless). An inbox expires at the time its last open or post set;
// an expired inbox is not found, and is deleted by the next OpenInbox.
// The store compares no secrets and judges no message: digests, auth and
// finality are the caller's.
type Inbox interface {
	// OpenInbox makes the inbox named hash, or keeps the one there with
	// what it holds; either way its auth (the digest of the bearer token
	// its webhooks must carry, or "") and its expiry are set. It deletes
	// the inboxes that expired.
	OpenInbox(ctx context.Context, hash, auth string, until time.Time) error
	// ReadInbox returns the inbox named hash, with its message's body when
	// the message is newer than after (Seq > after). ErrInboxNotFound
	// when there is none or it expired.
	ReadInbox(ctx context.Context, hash string, after int64) (InboxMessage, error)
	// PostInbox makes body the inbox's message (final: the last it takes)
	// and sets its expiry to until, unless it holds a final message (or
	// was closed): then it writes nothing and returns false.
	// ErrInboxNotFound when there is no such inbox or it expired.
	PostInbox(ctx context.Context, hash string, body []byte, final bool, until time.Time) (bool, error)
	// CloseInbox ends the inbox named hash once its job no longer waits:
	// it takes no more messages, drops its message's body (outputs can
	// be large) and expires at until, answering late webhooks till then.
	// Closing an inbox that does not exist is not an error.
	CloseInbox(ctx context.Context, hash string, until time.Time) error
}

// InboxMessage is what ReadInbox returns of an inbox.
type InboxMessage struct {
	// Seq counts the messages the inbox took (0: none yet).
	Seq int64
	// Final is set once the inbox takes no more messages: a final
	// message arrived, or the inbox was closed.
	Final bool
	// Body is the last message; nil when it is not newer than ReadInbox's
	// after, and after CloseInbox.
	Body []byte
	// Auth is the digest the inbox was opened with.
	Auth string
	// ExpiresAt is when the inbox expires unless opened or posted again.
	ExpiresAt time.Time
}

// ErrInboxNotFound means no inbox has that digest, or it expired.
var ErrInboxNotFound = errors.New("executor inbox not found")
