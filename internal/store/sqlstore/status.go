package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// SetStatus implements store.Store. The row is read under a lock (FOR
// UPDATE on PostgreSQL; SQLite's single writer serialises transactions),
// the change is checked against it, and its delta is written on condition
// of the status and attempt that were read (changeLocked).
func (s *Store) SetStatus(ctx context.Context, c store.StatusChange) (*task.Task, *event.Event, error) {
	var (
		out *task.Task
		ev  event.Event
	)
	err := s.inTx(ctx, func(tx *txn) error {
		tasks, err := s.lockTasks(ctx, tx, []uuid.UUID{c.TaskID}, c.Scope)
		if err != nil {
			return err
		}
		t := tasks[c.TaskID]
		if t == nil {
			return task.ErrNotFound
		}
		written, evs, err := s.changeLocked(ctx, tx, []*task.Task{t}, []task.Change{c.Change}, task.Now())
		if err != nil {
			return err
		}
		out, ev = written[0], evs[0]
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, &ev, nil
}

// claimOrder is the order ClaimTasks picks tasks in: priority DESC,
// run_at, created_at (then id, to be total).
func claimOrder(a, b *task.Task) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := a.RunAt.Compare(b.RunAt); c != 0 {
		return c
	}
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// ownedBy is the condition that a run still owns a task.
const ownedBy = `id = $1 AND attempt = $2 AND status = 'executing'`

// SaveFields implements store.Store.
func (s *Store) SaveFields(ctx context.Context, id uuid.UUID, attempt int, def *registry.Definition, fields any) error {
	sets := make([]string, len(def.Columns))
	p := params{vals: []any{id.String(), attempt}} // $1 and $2 of ownedBy
	for i, c := range def.Columns {
		v, err := columnValue(fields, c)
		if err != nil {
			return err
		}
		sets[i] = quote(c.Name) + " = " + p.add(v)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE `+quote(def.Table)+` SET `+strings.Join(sets, ", ")+
		` WHERE id = $1 AND EXISTS (SELECT 1 FROM tasks WHERE `+ownedBy+`)`, p.vals...)
	if err != nil {
		return fmt.Errorf("saving %s fields: %w", def.Name, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("saving fields of task %s: %w", id, task.ErrStaleRun)
	}
	return nil
}

// SetProgress implements store.Store.
func (s *Store) SetProgress(ctx context.Context, p store.ProgressUpdate) (*event.Event, error) {
	if math.IsNaN(p.Progress) {
		// PostgreSQL would store it and no event could carry it.
		return nil, fmt.Errorf("progress of task %s: NaN is not a percentage", p.TaskID)
	}
	now := task.Now()
	const update = `UPDATE tasks SET progress = $3, stage = $4, lease_expires_at = $5, updated_at = $6 WHERE ` + ownedBy
	args := []any{p.TaskID.String(), p.Attempt, p.Progress, p.Stage, now.Add(p.Lease), now}
	if !p.Emit {
		// No event: one statement, no transaction, no row to read back.
		res, err := s.w.ExecContext(ctx, update, args...)
		if err != nil {
			return nil, fmt.Errorf("recording progress: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("recording progress: %w", err)
		}
		if n != 1 {
			return nil, fmt.Errorf("progress of task %s: %w", p.TaskID, task.ErrStaleRun)
		}
		return nil, nil
	}
	var out *event.Event
	err := s.inTx(ctx, func(tx *txn) error {
		t, err := scanTask(tx.QueryRowContext(ctx, update+` RETURNING `+baseColumns, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("progress of task %s: %w", p.TaskID, task.ErrStaleRun)
		}
		if err != nil {
			return fmt.Errorf("recording progress: %w", err)
		}
		evs, err := s.insertEvents(ctx, tx, []event.Event{event.New(t, event.KindProgress, now)})
		if err != nil {
			return err
		}
		out = &evs[0]
		return nil
	})
	return out, err
}

// SetServiceTaskID implements store.Store.
func (s *Store) SetServiceTaskID(ctx context.Context, id uuid.UUID, attempt int, serviceTaskID string) error {
	return s.updateOwned(ctx, "service task id", `service_task_id = $3`, id, attempt, serviceTaskID)
}

// updateOwned runs "UPDATE tasks SET sets, updated_at = now" on task id
// while the run holding attempt still owns it (ownedBy; sets' parameters
// are $3 on, args), and returns task.ErrStaleRun when it does not. what
// names the write in errors.
func (s *Store) updateOwned(ctx context.Context, what, sets string, id uuid.UUID, attempt int, args ...any) error {
	p := params{vals: append([]any{id.String(), attempt}, args...)}
	res, err := s.w.ExecContext(ctx, `UPDATE tasks SET `+sets+`, updated_at = `+p.add(task.Now())+` WHERE `+ownedBy, p.vals...)
	if err != nil {
		return fmt.Errorf("setting %s: %w", what, classify(err))
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("%s of task %s: %w", what, id, task.ErrStaleRun)
	}
	return nil
}
