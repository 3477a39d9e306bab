package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// Monitor is the operations view's read of the store (the monitoring
// routes and the Prometheus collector): counts over the task table that
// every process sees alike, and the registry of live processes. Every
// count is one statement served by an index (see the monitoring
// migration), so a scrape costs the same with a large backlog.
type Monitor interface {
	// QueueStats returns, for every queue holding a pending or executing
	// task or one finished within the last 15 minutes before now, its
	// counts; ordered by queue name.
	QueueStats(ctx context.Context, now time.Time) ([]QueueStats, error)
	// TenantUsage returns each tenant's tasks by status, the run seconds
	// of its finished tasks (started to completed) and the sum of its
	// tasks' usage, ordered by tenant; only scope's tenant unless scope is
	// admin.
	TenantUsage(ctx context.Context, scope Scope) ([]TenantUsage, error)
	// ExecutingBy counts the executing tasks by executor (provider_type)
	// and by worker instance (executor_instance).
	ExecutingBy(ctx context.Context) (byExecutor, byInstance map[string]int, err error)
	// ExecutorStats counts, by executor (provider_type), the tasks that
	// completed or failed at or after since, with their run seconds.
	ExecutorStats(ctx context.Context, since time.Time) (map[string]ExecutorStats, error)
	// RecentFailures returns, by executor (provider_type), its tasks that
	// failed for good at or after since, newest first, at most
	// perExecutor of each.
	RecentFailures(ctx context.Context, since time.Time, perExecutor int) (map[string][]Failure, error)
	// SlotsInUse counts the slots held by live runs (Slots) by executor
	// and server.
	SlotsInUse(ctx context.Context) (map[string]map[string]int, error)
	// RegisterProcess writes p's row (instance is the key): a process
	// calls it when it starts and then as its heartbeat.
	RegisterProcess(ctx context.Context, p Process) error
	// ListProcesses returns the processes last seen at or after since,
	// by instance.
	ListProcesses(ctx context.Context, since time.Time) ([]Process, error)
	// ForgetProcesses deletes the processes last seen before before and
	// returns how many.
	ForgetProcesses(ctx context.Context, before time.Time) (int, error)
}

// Windows of the recent counts of QueueStats: the last 1, 5 and 15
// minutes.
var Windows = [3]time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute}

// QueueStats are one queue's counts.
type QueueStats struct {
	Queue     string
	Pending   int
	Executing int
	// OldestPending is when the oldest pending task was created (zero
	// when none is pending).
	OldestPending time.Time
	// Completed and Failed count the tasks that finished so within each
	// of Windows before now.
	Completed [3]int
	Failed    [3]int
}

// TenantUsage is one tenant's use of the server.
type TenantUsage struct {
	TenantID string
	// ByStatus counts the tenant's tasks by status.
	ByStatus map[string]int
	// RunSeconds sums started_at to completed_at over its finished tasks.
	RunSeconds float64
	// Usage sums its tasks' usage (service seconds and tokens the
	// services reported), whatever their status.
	Usage task.Usage
}

// ExecutorStats are the recent finished tasks of one executor.
type ExecutorStats struct {
	Completed, Failed int
	// RunSeconds sums started_at to completed_at over the completed ones.
	RunSeconds float64
}

// Failure is a task that failed for good, as the monitoring view shows it.
type Failure struct {
	TaskID   uuid.UUID
	TaskType string
	// At is when it failed (its completed_at).
	At       time.Time
	Category string
	Message  string
}

// Process is a running compute process as it registers itself.
type Process struct {
	// Instance names the process (its engine's executor_instance when it
	// runs workers).
	Instance string
	// Role is serve, api or worker.
	Role      string
	Version   string
	StartedAt time.Time
	LastSeen  time.Time
}
