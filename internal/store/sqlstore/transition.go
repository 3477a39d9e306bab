package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// decided is a status change that has been checked against the task's
// current row and applied to t in memory; writeTransitions makes it durable
// on condition that the row still has status from and attempt attempt.
type decided struct {
	t       *task.Task
	from    task.Status
	attempt int
}

// decide checks change c against the loaded task t and, if allowed, applies
// it to t. It returns the reason when the change is refused.
func decide(t *task.Task, c store.StatusChange, now time.Time) (decided, error) {
	if c.Attempt > 0 && (t.Attempt != c.Attempt || t.Status != task.StatusExecuting) {
		return decided{}, fmt.Errorf("%w: task %s is %s at attempt %d, the run held attempt %d",
			task.ErrStaleRun, t.ID, t.Status, t.Attempt, c.Attempt)
	}
	if !task.CanTransition(t.Status, c.To) || (len(c.From) > 0 && !containsStatus(c.From, t.Status)) {
		return decided{}, &task.TransitionError{From: t.Status, To: c.To}
	}
	d := decided{t: t, from: t.Status, attempt: t.Attempt}
	applyChange(t, c, now)
	return d, nil
}

func containsStatus(list []task.Status, s task.Status) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// transitionCols are the columns a transition may change, in the order
// transitionValues lists them, with their PostgreSQL types for VALUES.
var transitionCols = []struct{ name, pgType string }{
	{"id", "uuid"}, {"from_status", "text"}, {"from_attempt", "integer"},
	{"status", "text"}, {"updated_at", "timestamptz"}, {"started_at", "timestamptz"},
	{"completed_at", "timestamptz"}, {"run_at", "timestamptz"}, {"executor_instance", "text"},
	{"lease_expires_at", "timestamptz"}, {"errors", "jsonb"}, {"error_message", "text"},
	{"error_category", "text"}, {"retry_count", "integer"}, {"result", "jsonb"},
	{"progress", "double precision"}, {"stage", "text"}, {"is_resumed", "boolean"},
	{"resume_attempt_count", "integer"}, {"last_resume_attempt", "timestamptz"},
	{"service_task_id", "text"},
}

func transitionValues(d decided) ([]any, error) {
	t := d.t
	errs, err := jsonText(nonNil(t.Errors))
	if err != nil {
		return nil, err
	}
	return []any{t.ID.String(), string(d.from), d.attempt,
		string(t.Status), dbTime(t.UpdatedAt), nullTime(t.StartedAt),
		nullTime(t.CompletedAt), dbTime(t.RunAt), t.ExecutorInstance,
		nullTime(t.LeaseExpiresAt), errs, t.ErrorMessage,
		t.ErrorCategory, t.RetryCount, nullJSON(t.Result),
		t.Progress, t.Stage, t.IsResumed,
		t.ResumeAttemptCount, nullTime(t.LastResumeAttempt), t.ServiceTaskID}, nil
}

// maxBatch bounds the rows of one multi-row statement (SQLite allows 32766
// parameters, PostgreSQL 65535).
const maxBatch = 500

// writeTransitions writes decided changes with one UPDATE … FROM (VALUES …)
// per chunk, conditional on each row's status and attempt, and inserts one
// event per written change. It returns the events, in the order of ds, of
// the changes that were written; a change whose row moved meanwhile (which
// the callers' row locks prevent) is reported in refused.
func (s *Store) writeTransitions(ctx context.Context, tx *txn, ds []decided, kind string, now time.Time) (evs []event.Event, refused map[uuid.UUID]bool, err error) {
	refused = map[uuid.UUID]bool{}
	for start := 0; start < len(ds); start += maxBatch {
		chunk := ds[start:min(start+maxBatch, len(ds))]
		rows := make([]string, len(chunk))
		args := make([]any, 0, len(chunk)*len(transitionCols))
		for i, d := range chunk {
			vals, err := transitionValues(d)
			if err != nil {
				return nil, nil, err
			}
			ph := make([]string, len(vals))
			for j := range vals {
				ph[j] = s.d.cast(fmt.Sprintf("$%d", len(args)+j+1), transitionCols[j].pgType)
			}
			rows[i] = "(" + strings.Join(ph, ", ") + ")"
			args = append(args, vals...)
		}
		names := make([]string, len(transitionCols))
		var sets []string
		for i, c := range transitionCols {
			names[i] = c.name
			if i >= 3 {
				sets = append(sets, c.name+" = v."+c.name)
			}
		}
		q := `WITH v (` + strings.Join(names, ", ") + `) AS (VALUES ` + strings.Join(rows, ", ") + `)
			UPDATE tasks SET ` + strings.Join(sets, ", ") + `
			FROM v WHERE tasks.id = v.id AND tasks.status = v.from_status AND tasks.attempt = v.from_attempt
			RETURNING tasks.id`
		r, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, nil, fmt.Errorf("updating task status: %w", err)
		}
		written := map[uuid.UUID]bool{}
		for r.Next() {
			var id string
			if err := r.Scan(&id); err != nil {
				r.Close()
				return nil, nil, fmt.Errorf("updating task status: %w", err)
			}
			u, _ := uuid.Parse(id)
			written[u] = true
		}
		r.Close()
		if err := r.Err(); err != nil {
			return nil, nil, fmt.Errorf("updating task status: %w", err)
		}
		batch := make([]event.Event, 0, len(chunk))
		for _, d := range chunk {
			if !written[d.t.ID] {
				refused[d.t.ID] = true
				continue
			}
			batch = append(batch, event.New(d.t, kind, now))
		}
		batch, err = s.insertEvents(ctx, tx, batch)
		if err != nil {
			return nil, nil, err
		}
		evs = append(evs, batch...)
	}
	return evs, refused, nil
}

// lockTasks loads the tasks with the given ids under a row lock
// (FOR UPDATE on PostgreSQL), keyed by id.
func (s *Store) lockTasks(ctx context.Context, tx *txn, ids []uuid.UUID, scope store.Scope) (map[uuid.UUID]*task.Task, error) {
	out := make(map[uuid.UUID]*task.Task, len(ids))
	for start := 0; start < len(ids); start += maxBatch {
		chunk := ids[start:min(start+maxBatch, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id.String()
		}
		where := `id IN (` + placeholders(1, len(args)) + `)`
		if !scope.Admin {
			args = append(args, scope.TenantID)
			where += fmt.Sprintf(` AND origin_tenant_id = $%d`, len(args))
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+baseColumns+` FROM tasks WHERE `+where+` ORDER BY id`+s.d.forUpdate, args...)
		if err != nil {
			return nil, fmt.Errorf("loading tasks: %w", err)
		}
		for rows.Next() {
			t, err := scanTask(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("loading tasks: %w", err)
			}
			out[t.ID] = t
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("loading tasks: %w", err)
		}
	}
	return out, nil
}

// FinishRuns implements store.Store: many status changes, one transaction,
// one UPDATE and one event INSERT per chunk. errs[i] is the refusal of
// changes[i] (task.ErrNotFound, task.ErrStaleRun or a *task.TransitionError)
// or nil when it was written.
func (s *Store) FinishRuns(ctx context.Context, changes []store.StatusChange) ([]error, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	errs := make([]error, len(changes))
	err := s.inTx(ctx, func(tx *txn) error {
		for i := range errs {
			errs[i] = nil
		}
		ids := make([]uuid.UUID, len(changes))
		for i, c := range changes {
			ids[i] = c.TaskID
		}
		tasks, err := s.lockTasks(ctx, tx, ids, store.AdminScope)
		if err != nil {
			return err
		}
		now := task.Now()
		var ds []decided
		index := map[uuid.UUID]int{}
		for i, c := range changes {
			t := tasks[c.TaskID]
			if t == nil {
				errs[i] = task.ErrNotFound
				continue
			}
			if _, dup := index[c.TaskID]; dup {
				errs[i] = fmt.Errorf("%w: task %s changed twice in one batch", task.ErrStaleRun, c.TaskID)
				continue
			}
			d, err := decide(t, c, now)
			if err != nil {
				errs[i] = err
				continue
			}
			index[c.TaskID] = i
			ds = append(ds, d)
		}
		_, refused, err := s.writeTransitions(ctx, tx, ds, event.KindStatus, now)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if refused[d.t.ID] {
				errs[index[d.t.ID]] = &task.TransitionError{From: d.from, To: d.t.Status}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}
