package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// Workflows are stored as a row per workflow and a row per step; a step's
// task_id is set in the transaction that creates its task. The policy
// (which steps get a task, with what body; what ends a workflow) is the
// WorkflowHook's (package workflow): the store loads a workflow under a
// lock on its row, asks the hook, and writes the plan, in the transaction
// that caused the change — for a step's task, the one that writes its
// terminal status (FinishRuns, changeLocked). A crash before the commit
// loses the status and the new tasks together; after it, both are there.

// WithWorkflowHook makes the store run hook in the transactions that
// start, cancel or resume a workflow and in those that finish a step's
// task. Without it, workflows are stored but never advance.
func WithWorkflowHook(hook store.WorkflowHook) Option {
	return func(s *Store) { s.workflowHook = hook }
}

// SetWorkflowHook is WithWorkflowHook after Open; call it before the
// store is used.
func (s *Store) SetWorkflowHook(hook store.WorkflowHook) { s.workflowHook = hook }

var _ store.Workflows = (*Store)(nil)

// workflowTaskType is the task_type of a workflow's events.
const workflowTaskType = "workflow"

const workflowColumns = `id, tenant_id, status, error, webhook_url, created_at, updated_at, started_at, completed_at`

func scanWorkflow(r rowScanner) (*store.Workflow, error) {
	var (
		w                  store.Workflow
		id                 string
		started, completed sql.NullTime
	)
	if err := r.Scan(&id, &w.TenantID, &w.Status, &w.Error, &w.WebhookURL, &w.CreatedAt, &w.UpdatedAt, &started, &completed); err != nil {
		return nil, err
	}
	var err error
	if w.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("workflow id %q: %w", id, err)
	}
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	w.StartedAt, w.CompletedAt = timePtr(started), timePtr(completed)
	return &w, nil
}

// CreateWorkflow implements store.Workflows.
func (s *Store) CreateWorkflow(ctx context.Context, wf *store.Workflow, start bool) (*store.Workflow, error) {
	now := dbTime(task.Now())
	err := s.inTx(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO workflows (id, tenant_id, status, webhook_url, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			wf.ID.String(), wf.TenantID, store.WorkflowPending, wf.WebhookURL, now, now); err != nil {
			return fmt.Errorf("inserting workflow: %w", classify(err))
		}
		for i, st := range wf.Steps {
			deps, err := json.Marshal(st.DependsOn)
			if err != nil {
				return err
			}
			if st.DependsOn == nil {
				deps = []byte("[]")
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO workflow_steps (workflow_id, step_id, position, depends_on, body, status)
				VALUES ($1, $2, $3, $4, $5, $6)`, wf.ID.String(), st.ID, i, string(deps), string(st.Body), store.StepWaiting); err != nil {
				return fmt.Errorf("inserting workflow step %s: %w", st.ID, classify(err))
			}
		}
		w, err := s.lockWorkflow(ctx, tx, wf.ID, store.AdminScope)
		if err != nil {
			return err
		}
		if err := s.workflowEvent(ctx, tx, w, now); err != nil {
			return err
		}
		if start {
			return s.startLocked(ctx, tx, w, now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.GetWorkflow(ctx, wf.ID, store.AdminScope)
}

// GetWorkflow implements store.Workflows.
func (s *Store) GetWorkflow(ctx context.Context, id uuid.UUID, scope store.Scope) (*store.Workflow, error) {
	return s.loadWorkflow(ctx, s.r, id, scope, "")
}

// lockWorkflow loads a workflow under a lock on its row (PostgreSQL;
// SQLite's single writer serialises by itself): concurrent writers of
// one workflow (two dependencies finishing at once) take turns, and each
// sees the other's committed writes.
func (s *Store) lockWorkflow(ctx context.Context, tx *txn, id uuid.UUID, scope store.Scope) (*store.Workflow, error) {
	return s.loadWorkflow(ctx, tx, id, scope, s.d.forUpdate)
}

func (s *Store) loadWorkflow(ctx context.Context, q querier, id uuid.UUID, scope store.Scope, lock string) (*store.Workflow, error) {
	where, args := "id = $1", []any{id.String()}
	if !scope.Admin {
		where, args = where+" AND tenant_id = $2", append(args, scope.TenantID)
	}
	w, err := scanWorkflow(q.QueryRowContext(ctx, `SELECT `+workflowColumns+` FROM workflows WHERE `+where+lock, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrWorkflowNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading workflow: %w", classify(err))
	}
	rows, err := q.QueryContext(ctx, `SELECT step_id, depends_on, body, status, error, task_id FROM workflow_steps
		WHERE workflow_id = $1 ORDER BY position`, id.String())
	if err != nil {
		return nil, fmt.Errorf("loading workflow steps: %w", classify(err))
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var (
			st     store.WorkflowStep
			deps   string
			body   string
			taskID sql.NullString
		)
		if err := rows.Scan(&st.ID, &deps, &body, &st.Status, &st.Error, &taskID); err != nil {
			return nil, fmt.Errorf("loading workflow steps: %w", classify(err))
		}
		if err := json.Unmarshal([]byte(deps), &st.DependsOn); err != nil {
			return nil, fmt.Errorf("workflow %s step %s depends_on: %w", id, st.ID, err)
		}
		st.Body = json.RawMessage(body)
		if taskID.Valid {
			tid, err := uuid.Parse(taskID.String)
			if err != nil {
				return nil, fmt.Errorf("workflow %s step %s task id: %w", id, st.ID, err)
			}
			st.TaskID = &tid
			ids = append(ids, tid)
		}
		w.Steps = append(w.Steps, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading workflow steps: %w", classify(err))
	}
	rows.Close()
	tasks, err := s.loadTasks(ctx, q, ids, store.AdminScope, "")
	if err != nil {
		return nil, err
	}
	for i := range w.Steps {
		if st := &w.Steps[i]; st.TaskID != nil {
			st.Task = tasks[*st.TaskID]
		}
	}
	return w, nil
}

// ListWorkflows implements store.Workflows.
func (s *Store) ListWorkflows(ctx context.Context, f store.WorkflowFilter) ([]*store.Workflow, error) {
	var (
		p     params
		conds []string
	)
	if !f.Scope.Admin {
		conds = append(conds, "tenant_id = "+p.add(f.Scope.TenantID))
	}
	if f.Status != "" {
		conds = append(conds, "status = "+p.add(f.Status))
	}
	if f.Before != uuid.Nil {
		conds = append(conds, "id < "+p.add(f.Before.String()))
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+workflowColumns+` FROM workflows`+where+` ORDER BY id DESC LIMIT `+p.add(limit), p.vals...)
	if err != nil {
		return nil, fmt.Errorf("listing workflows: %w", classify(err))
	}
	defer rows.Close()
	var out []*store.Workflow
	for rows.Next() {
		w, err := scanWorkflow(rows)
		if err != nil {
			return nil, fmt.Errorf("listing workflows: %w", classify(err))
		}
		out = append(out, w)
	}
	return out, classify(rows.Err())
}

// StartWorkflow implements store.Workflows.
func (s *Store) StartWorkflow(ctx context.Context, id uuid.UUID, scope store.Scope) (*store.Workflow, error) {
	err := s.inTx(ctx, func(tx *txn) error {
		w, err := s.lockWorkflow(ctx, tx, id, scope)
		if err != nil {
			return err
		}
		if w.Status != store.WorkflowPending {
			return fmt.Errorf("%w: it is %s; only a pending workflow starts", store.ErrWorkflowState, w.Status)
		}
		return s.startLocked(ctx, tx, w, dbTime(task.Now()))
	})
	if err != nil {
		return nil, err
	}
	return s.GetWorkflow(ctx, id, scope)
}

// startLocked moves a locked pending workflow to running and advances it.
func (s *Store) startLocked(ctx context.Context, tx *txn, w *store.Workflow, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE workflows SET status = $1, started_at = $2, updated_at = $2 WHERE id = $3`,
		store.WorkflowRunning, now, w.ID.String()); err != nil {
		return fmt.Errorf("starting workflow: %w", classify(err))
	}
	w.Status, w.StartedAt, w.UpdatedAt = store.WorkflowRunning, &now, now
	if err := s.workflowEvent(ctx, tx, w, now); err != nil {
		return err
	}
	return s.advanceLocked(ctx, tx, w, now)
}

// CancelWorkflow implements store.Workflows. The step tasks to cancel
// are locked before the workflow's row (the lock order): they are read
// first without a lock, and should a step get a task in between, the
// transaction starts again.
func (s *Store) CancelWorkflow(ctx context.Context, id uuid.UUID, scope store.Scope) (*store.Workflow, error) {
	for range 10 {
		snap, err := s.loadWorkflow(ctx, s.r, id, scope, "")
		if err != nil {
			return nil, err
		}
		var ids []uuid.UUID
		for i := range snap.Steps {
			if t := snap.Steps[i].Task; t != nil && !t.Status.Terminal() {
				ids = append(ids, t.ID)
			}
		}
		moved := false
		err = s.inTx(ctx, func(tx *txn) error {
			locked, err := s.lockTasks(ctx, tx, ids, store.AdminScope)
			if err != nil {
				return err
			}
			w, err := s.lockWorkflow(ctx, tx, id, scope)
			if err != nil {
				return err
			}
			if w.Status != store.WorkflowPending && w.Status != store.WorkflowRunning {
				return fmt.Errorf("%w: it is %s; only a pending or running workflow is cancelled", store.ErrWorkflowState, w.Status)
			}
			var (
				live    []*task.Task
				changes []task.Change
			)
			for i := range w.Steps {
				st := &w.Steps[i]
				if st.Task == nil || st.Task.Status.Terminal() {
					continue
				}
				lt := locked[st.Task.ID]
				if lt == nil {
					moved = true // a step got its task since the snapshot
					return errRetry
				}
				if !lt.Status.Terminal() {
					live = append(live, lt)
					changes = append(changes, task.Change{To: task.StatusCancelled,
						Err: &task.Error{Message: "the workflow was cancelled", Category: task.CategoryCancelled}})
				}
			}
			now := dbTime(task.Now())
			// The row says cancelled before the tasks are, so that the
			// hook, run for them, does nothing more.
			if _, err := tx.ExecContext(ctx, `UPDATE workflows SET status = $1 WHERE id = $2`, store.WorkflowCancelled, id.String()); err != nil {
				return fmt.Errorf("cancelling workflow: %w", classify(err))
			}
			if len(live) > 0 {
				if _, _, err := s.changeLocked(ctx, tx, live, changes, now); err != nil {
					return err
				}
			}
			for i := range w.Steps {
				st := &w.Steps[i]
				if st.Task == nil && st.Status == store.StepWaiting {
					e := store.StepEnd{StepID: st.ID, Status: store.StepCancelled, Error: "the workflow was cancelled"}
					if err := s.endStep(ctx, tx, w.ID, e); err != nil {
						return err
					}
					st.Status, st.Error = e.Status, e.Error
				}
			}
			return s.setWorkflowStatus(ctx, tx, w, store.WorkflowCancelled, "cancelled by request", now)
		})
		if moved {
			continue
		}
		if err != nil {
			return nil, err
		}
		return s.GetWorkflow(ctx, id, scope)
	}
	return nil, fmt.Errorf("cancelling workflow %s: its steps kept getting new tasks", id)
}

// errRetry rolls back a transaction that is to start again.
var errRetry = errors.New("retry")

// ResumeWorkflow implements store.Workflows.
func (s *Store) ResumeWorkflow(ctx context.Context, id uuid.UUID, scope store.Scope) (*store.Workflow, error) {
	err := s.inTx(ctx, func(tx *txn) error {
		w, err := s.lockWorkflow(ctx, tx, id, scope)
		if err != nil {
			return err
		}
		if w.Status != store.WorkflowFailed && w.Status != store.WorkflowCancelled {
			return fmt.Errorf("%w: it is %s; only a failed or cancelled workflow is resumed", store.ErrWorkflowState, w.Status)
		}
		for i := range w.Steps {
			st := &w.Steps[i]
			if st.Effective() == string(task.StatusCompleted) || (st.Task != nil && !st.Task.Status.Terminal()) {
				continue
			}
			// The step waits again; its old task, if any, stays as it
			// is, no longer the step's.
			if _, err := tx.ExecContext(ctx, `UPDATE workflow_steps SET status = $1, error = '', task_id = NULL
				WHERE workflow_id = $2 AND step_id = $3`, store.StepWaiting, w.ID.String(), st.ID); err != nil {
				return fmt.Errorf("resuming workflow step %s: %w", st.ID, classify(err))
			}
			st.Status, st.Error, st.TaskID, st.Task = store.StepWaiting, "", nil, nil
		}
		now := dbTime(task.Now())
		if err := s.setWorkflowStatus(ctx, tx, w, store.WorkflowRunning, "", now); err != nil {
			return err
		}
		return s.advanceLocked(ctx, tx, w, now)
	})
	if err != nil {
		return nil, err
	}
	return s.GetWorkflow(ctx, id, scope)
}

// setWorkflowStatus writes a workflow's status and its event.
func (s *Store) setWorkflowStatus(ctx context.Context, tx *txn, w *store.Workflow, status, why string, now time.Time) error {
	var completed any
	if status == store.WorkflowCompleted || status == store.WorkflowFailed || status == store.WorkflowCancelled {
		completed = now
		w.CompletedAt = &now
	} else {
		w.CompletedAt = nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE workflows SET status = $1, error = $2, updated_at = $3, completed_at = $4 WHERE id = $5`,
		status, why, now, completed, w.ID.String()); err != nil {
		return fmt.Errorf("updating workflow: %w", classify(err))
	}
	w.Status, w.Error, w.UpdatedAt = status, why, now
	return s.workflowEvent(ctx, tx, w, now)
}

func (s *Store) endStep(ctx context.Context, tx *txn, wfID uuid.UUID, e store.StepEnd) error {
	if _, err := tx.ExecContext(ctx, `UPDATE workflow_steps SET status = $1, error = $2
		WHERE workflow_id = $3 AND step_id = $4 AND task_id IS NULL`, e.Status, e.Error, wfID.String(), e.StepID); err != nil {
		return fmt.Errorf("ending workflow step %s: %w", e.StepID, classify(err))
	}
	return nil
}

// Lock order. Writers of workflows take their locks in one order: the
// rows of step tasks, then workflow rows (in id order; a workflow's
// steps are written only under its row's lock), then the event-order
// lock (which every event insert takes, see eventOrderLock). A
// transaction that finishes tasks holds their rows first; it locks their
// workflows (lockStepWorkflows) before it inserts any event, and advances
// them (advanceWorkflows) afterwards. CancelWorkflow, which must lock
// step tasks, locks them before the workflow's row.

// lockStepWorkflows locks the running workflows whose steps' tasks among
// written reached a terminal status and returns their ids in lock order;
// nil when there is no hook.
func (s *Store) lockStepWorkflows(ctx context.Context, tx *txn, written map[uuid.UUID]*task.Task) ([]uuid.UUID, error) {
	if s.workflowHook == nil {
		return nil, nil
	}
	var ids []uuid.UUID
	for id, t := range written {
		if t.Status.Terminal() {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var wfs []string
	for start := 0; start < len(ids); start += maxBatch {
		var p params
		rows, err := tx.QueryContext(ctx, `SELECT id FROM workflows WHERE status = 'running' AND id IN
			(SELECT workflow_id FROM workflow_steps WHERE task_id IN (`+uuidList(&p, ids[start:min(start+maxBatch, len(ids))])+`))
			ORDER BY id`+s.d.forUpdate, p.vals...)
		if err != nil {
			return nil, fmt.Errorf("locking workflows: %w", classify(err))
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("locking workflows: %w", classify(err))
			}
			wfs = append(wfs, normalizeUUID(id))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("locking workflows: %w", classify(err))
		}
	}
	slices.Sort(wfs)
	wfs = slices.Compact(wfs)
	out := make([]uuid.UUID, len(wfs))
	for i, raw := range wfs {
		id, err := uuid.Parse(raw)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}

// advanceWorkflows runs the hook for workflows that lockStepWorkflows
// locked in tx, the transaction that finished their steps' tasks.
func (s *Store) advanceWorkflows(ctx context.Context, tx *txn, ids []uuid.UUID) error {
	now := dbTime(task.Now())
	for _, id := range ids {
		w, err := s.lockWorkflow(ctx, tx, id, store.AdminScope)
		if err != nil {
			return err
		}
		if err := s.advanceLocked(ctx, tx, w, now); err != nil {
			return err
		}
	}
	return nil
}

// advanceLocked asks the hook what a locked running workflow does next
// and writes it: the steps' new tasks (conditionally on the step having
// none, so a step never gets two), ended steps, the workflow's status.
func (s *Store) advanceLocked(ctx context.Context, tx *txn, w *store.Workflow, now time.Time) error {
	if s.workflowHook == nil || w.Status != store.WorkflowRunning {
		return nil
	}
	plan, err := s.workflowHook.Advance(ctx, w)
	if err != nil {
		return fmt.Errorf("workflow %s: %w", w.ID, err)
	}
	if len(plan.Create) > 0 {
		recs := make([]*store.Record, len(plan.Create))
		for i, c := range plan.Create {
			res, err := tx.ExecContext(ctx, `UPDATE workflow_steps SET task_id = $1, status = $2, error = ''
				WHERE workflow_id = $3 AND step_id = $4 AND task_id IS NULL`, c.Record.Task.ID.String(), store.StepWaiting, w.ID.String(), c.StepID)
			if err != nil {
				return fmt.Errorf("linking workflow step %s: %w", c.StepID, classify(err))
			}
			if n, err := res.RowsAffected(); err != nil {
				return classify(err)
			} else if n != 1 {
				return fmt.Errorf("workflow %s step %s already has a task", w.ID, c.StepID)
			}
			recs[i] = c.Record
		}
		if err := s.insertRecords(ctx, tx, recs); err != nil {
			return err
		}
		tx.notify(store.Notification{Kind: store.NotifyWake})
	}
	for _, e := range plan.End {
		if err := s.endStep(ctx, tx, w.ID, e); err != nil {
			return err
		}
	}
	// w as written, for the workflow's event.
	for i := range w.Steps {
		st := &w.Steps[i]
		for _, c := range plan.Create {
			if c.StepID == st.ID {
				st.TaskID, st.Task = &c.Record.Task.ID, c.Record.Task
			}
		}
		for _, e := range plan.End {
			if e.StepID == st.ID && st.Task == nil {
				st.Status, st.Error = e.Status, e.Error
			}
		}
	}
	if plan.Status != "" && plan.Status != w.Status {
		return s.setWorkflowStatus(ctx, tx, w, plan.Status, plan.Error, now)
	}
	return nil
}

// insertRecords inserts new pending tasks with their type rows and their
// created events, in tx (at most maxBatch/2 at once: the base rows are
// one statement); the caller wakes the workers.
func (s *Store) insertRecords(ctx context.Context, tx *txn, recs []*store.Record) error {
	if err := s.insertBaseRows(ctx, tx, recs); err != nil {
		return err
	}
	byType := map[*registry.Definition][]*store.Record{}
	var order []*registry.Definition
	for _, r := range recs {
		if _, ok := byType[r.Def]; !ok {
			order = append(order, r.Def)
		}
		byType[r.Def] = append(byType[r.Def], r)
	}
	for _, def := range order {
		if err := s.insertTypeRows(ctx, tx, def, byType[def]); err != nil {
			return err
		}
	}
	evs := make([]event.Event, len(recs))
	for i, r := range recs {
		evs[i] = event.New(r.Task, event.KindStatus, r.Task.CreatedAt)
	}
	_, err := s.insertEvents(ctx, tx, evs)
	return err
}

// workflowBody is the body of a workflow_status_update event: the task
// event's main fields (task_id is the workflow's id), and the steps.
type workflowBody struct {
	EventType     string         `json:"event_type"`
	WorkflowID    uuid.UUID      `json:"workflow_id"`
	TaskID        uuid.UUID      `json:"task_id"`
	TaskType      string         `json:"task_type"`
	Status        string         `json:"status"`
	OriginVersion string         `json:"origin_version"`
	Timestamp     time.Time      `json:"timestamp"`
	Metadata      map[string]any `json:"metadata"`
	ErrorMessage  string         `json:"error_message,omitempty"`
	Steps         []workflowStep `json:"steps"`
}

type workflowStep struct {
	ID     string     `json:"id"`
	Status string     `json:"status"`
	TaskID *uuid.UUID `json:"task_id"`
}

// workflowEvent writes a workflow_status_update event for w as it is.
func (s *Store) workflowEvent(ctx context.Context, tx *txn, w *store.Workflow, now time.Time) error {
	b := workflowBody{EventType: store.WorkflowEventType, WorkflowID: w.ID, TaskID: w.ID, TaskType: workflowTaskType,
		Status: w.Status, OriginVersion: event.Version, Timestamp: now, Metadata: map[string]any{}, ErrorMessage: w.Error,
		Steps: make([]workflowStep, len(w.Steps))}
	if w.TenantID != "" {
		b.Metadata["origin_tenant_id"] = w.TenantID
	}
	for i := range w.Steps {
		st := &w.Steps[i]
		b.Steps[i] = workflowStep{ID: st.ID, Status: st.Effective(), TaskID: st.TaskID}
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	_, err = s.insertEvents(ctx, tx, []event.Event{{TaskID: w.ID, TaskType: workflowTaskType, EventType: store.WorkflowEventType,
		Status: task.Status(w.Status), TenantID: w.TenantID, CreatedAt: now, Body: raw, Kind: event.KindStatus,
		WebhookURL: w.WebhookURL}})
	return err
}
