package store

import (
	"context"
	"time"
)

// Scheduling is what operators change of the claim's scheduling while the
// processes run, for every process of a deployment at once: tenants'
// concurrency limits, and holds (pause, drain) on queues, executors and
// executor servers. A store that implements Scheduling honours both in
// ClaimTasks (and holds of servers in Slots' TakeSlot).
type Scheduling interface {
	// SetTenantLimit sets (n > 0) or removes (n = 0) the global
	// concurrency limit of a tenant (origin_tenant_id): at most n of its
	// tasks execute at once, counted over every process.
	SetTenantLimit(ctx context.Context, tenant string, n int) error
	// TenantLimits returns the global concurrency limits by tenant.
	TenantLimits(ctx context.Context) (map[string]int, error)
	// Hold pauses a queue or an executor (no task of it is claimed) or
	// drains an executor server (no slot of it is taken), until Release;
	// what runs there finishes. Holding what is held keeps the first
	// hold's time and takes the new reason.
	Hold(ctx context.Context, h Hold) error
	// Release ends a hold; it reports whether there was one.
	Release(ctx context.Context, kind HoldKind, name string) (bool, error)
	// Holds returns every hold, by kind and name.
	Holds(ctx context.Context) ([]Hold, error)
}

// HoldKind is what a Hold stops.
type HoldKind string

// The kinds of holds.
const (
	// HoldQueue pauses a queue: none of its tasks is claimed.
	HoldQueue HoldKind = "queue"
	// HoldExecutor pauses an executor: no task whose provider_type names
	// it is claimed.
	HoldExecutor HoldKind = "executor"
	// HoldServer drains an executor server, named by its URL as
	// configured: no slot of it is taken (store.Slots), so no new job
	// goes there while the executor's other servers take them.
	HoldServer HoldKind = "server"
)

// Valid reports whether k is a known kind.
func (k HoldKind) Valid() bool {
	return k == HoldQueue || k == HoldExecutor || k == HoldServer
}

// Hold is an operator's pause of a queue or an executor, or drain of an
// executor server.
type Hold struct {
	Kind   HoldKind
	Name   string
	Reason string
	// Since is when the hold was first set (set by the store).
	Since time.Time
}
