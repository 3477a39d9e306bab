package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// This file is the rescue policy: what becomes of a task whose run was
// lost with its worker (a crash, a kill -9, a frozen or partitioned
// process). The store finds such tasks and writes what the policy decides,
// conditionally on the lost run's attempt.
//
// A lost run is not the task's fault, so it does not consume max_attempts:
// the task is re-queued (or resumed, when its processor can re-attach to
// the external job) under its own budget, resume_attempt_count, up to
// Config.MaxResumes times. Only a type that declares itself at-most-once
// (registry.Type.AtMostOnce) fails instead.

// rescueChange decides what to write for t, whose run was lost; why says
// how the loss was noticed.
func (e *Engine) rescueChange(t *task.Task, why string) store.StatusChange {
	def, _ := e.reg.Lookup(t.Type)
	c := store.StatusChange{Scope: store.AdminScope, Change: task.Change{Err: &task.Error{Category: task.CategoryLost}}}
	budget := max(e.cfg.MaxResumes, 0)
	switch {
	case def != nil && def.AtMostOnce:
		c.To = task.StatusFailed
		c.Err.Message = why + "; its type runs at most once, so it is not run again"
	case t.ResumeAttemptCount >= budget:
		c.To = task.StatusFailed
		c.Err.Message = fmt.Sprintf("%s; recovered %d times already (the limit is %d)", why, t.ResumeAttemptCount, budget)
	default:
		c.To, c.CountResume = task.StatusPending, true
		c.Resume = def != nil && resumable(def, t)
		verb := "re-queued"
		if c.Resume {
			verb = "resumed"
		}
		c.Err.Message = fmt.Sprintf("%s; %s (recovery %d of %d)", why, verb, t.ResumeAttemptCount+1, budget)
	}
	return c
}

// rescueExpired applies the rescue policy to the tasks whose lease has
// expired. It does nothing while the database failed within the last
// lease: leases that expired during an outage belong to workers that may
// well be alive, and are renewing them or writing their outcomes now.
func (e *Engine) rescueExpired(ctx context.Context) {
	if since := e.sinceStoreFailure(); since < e.cfg.Lease {
		e.log.Info("rescue deferred: the database failed recently", "since", since.Round(time.Millisecond))
		return
	}
	// A rescue that waited long for the database (SQLite's lock held
	// through an outage) changes nothing: the workers whose leases it
	// would take waited too, and are renewing them now.
	rescued, err := e.store.RescueRuns(ctx, store.RescueParams{StartBy: time.Now().Add(e.cfg.Lease / 4),
		Decide: func(t *task.Task) store.StatusChange {
			return e.rescueChange(t, fmt.Sprintf("worker %s stopped renewing its lease", t.ExecutorInstance))
		}})
	if errors.Is(err, store.ErrRescueLate) {
		e.storeFailed()
		e.log.Info("rescue deferred: the database was slow to answer")
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			e.storeFailed()
			e.log.Error("rescuing expired leases", "error", err)
		}
		return
	}
	e.logRescued("rescued tasks of lost workers", rescued)
}

// recoverOwn applies the rescue policy, at once, to the tasks still
// executing under this engine's instance: a previous incarnation of this
// process left them when it died. It runs before the first claim.
func (e *Engine) recoverOwn(ctx context.Context) error {
	rescued, err := e.store.RescueRuns(ctx, store.RescueParams{Instance: e.cfg.Instance, Decide: func(t *task.Task) store.StatusChange {
		return e.rescueChange(t, fmt.Sprintf("worker %s restarted while running it", t.ExecutorInstance))
	}})
	if err != nil {
		return fmt.Errorf("recovering the tasks of this instance's previous run: %w", err)
	}
	e.logRescued("recovered the tasks of this instance's previous run", rescued)
	return nil
}

// logRescued logs what a rescue did, counted by outcome.
func (e *Engine) logRescued(msg string, rescued []*task.Task) {
	var resumed, requeued, failed int
	for _, t := range rescued {
		switch {
		case t.Status == task.StatusFailed:
			failed++
		case t.IsResumed:
			resumed++
		default:
			requeued++
		}
	}
	if len(rescued) > 0 {
		e.log.Warn(msg, "resumed", resumed, "requeued", requeued, "failed", failed)
	}
}

// resumable reports whether a lost run of t can be resumed: its processor
// can re-attach, and the run left something to re-attach to, an external
// id or an executor handle.
func resumable(def *registry.Definition, t *task.Task) bool {
	return def.Resumable() && (t.ServiceTaskID != "" || len(t.ExecutorHandle) > 0)
}
