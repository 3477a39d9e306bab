package task

import "fmt"

// Status is the lifecycle state of a task as it appears on the wire and in
// the database.
type Status string

// The five statuses of the original API.
const (
	StatusPending   Status = "pending"
	StatusExecuting Status = "executing"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{StatusPending, StatusExecuting, StatusCompleted, StatusFailed, StatusCancelled}

// Valid reports whether s is one of the five known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusExecuting, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Terminal reports whether no further work happens for a task in status s
// (unless it is explicitly retried).
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// transitions lists, for every target status, the statuses a task may move
// to it from. The store turns this into the WHERE clause of the conditional
// update, so the rule is enforced where the row is written.
var transitions = map[Status][]Status{
	// executing → pending: a retry after a failed attempt, or a rescue.
	// failed/cancelled → pending: an explicit retry by a user.
	StatusPending:   {StatusExecuting, StatusFailed, StatusCancelled},
	StatusExecuting: {StatusPending},
	StatusCompleted: {StatusExecuting},
	// pending → failed: a start deadline that passed before any worker
	// claimed the task.
	StatusFailed:    {StatusPending, StatusExecuting},
	StatusCancelled: {StatusPending, StatusExecuting},
}

// AllowedFrom returns the statuses from which a task may move to status to.
// The returned slice must not be modified.
func AllowedFrom(to Status) []Status { return transitions[to] }

// CanTransition reports whether a task may move from status from to status
// to. Moving to the same status is never a transition.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[to] {
		if s == from {
			return true
		}
	}
	return false
}

// ParseStatus parses a wire status, returning an error naming the valid
// values when s is not one of them.
func ParseStatus(s string) (Status, error) {
	st := Status(s)
	if !st.Valid() {
		return "", fmt.Errorf("unknown status %q (want one of pending, executing, completed, failed, cancelled)", s)
	}
	return st, nil
}
