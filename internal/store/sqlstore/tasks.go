package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) row
}

// GetTask implements store.Store.
func (s *Store) GetTask(ctx context.Context, id uuid.UUID, scope store.Scope) (*store.Record, error) {
	where, args := "id = $1", []any{id.String()}
	if !scope.Admin {
		where, args = where+" AND origin_tenant_id = $2", append(args, scope.TenantID)
	}
	return s.getBy(ctx, s.r, where, args...)
}

// getBy loads one task matching where, with its type fields.
func (s *Store) getBy(ctx context.Context, q querier, where string, args ...any) (*store.Record, error) {
	t, err := scanTask(q.QueryRowContext(ctx, `SELECT `+baseColumns+` FROM tasks WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, task.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading task: %w", err)
	}
	recs, err := s.attachFields(ctx, q, []*task.Task{t})
	if err != nil {
		return nil, err
	}
	return recs[0], nil
}

// attachFields loads the type fields of tasks, one query per type.
func (s *Store) attachFields(ctx context.Context, q querier, tasks []*task.Task) ([]*store.Record, error) {
	recs := make([]*store.Record, len(tasks))
	byType := map[string][]int{}
	for i, t := range tasks {
		def, ok := s.reg.Lookup(t.Type)
		if !ok {
			return nil, fmt.Errorf("task %s has type %q, which is not registered", t.ID, t.Type)
		}
		recs[i] = &store.Record{Task: t, Def: def}
		byType[t.Type] = append(byType[t.Type], i)
	}
	for name, idx := range byType {
		def := recs[idx[0]].Def
		pos := map[string]int{}
		ids := make([]any, len(idx))
		for j, i := range idx {
			ids[j] = tasks[i].ID.String()
			pos[tasks[i].ID.String()] = i
		}
		var p params
		cols := make([]string, len(def.Columns))
		for j, c := range def.Columns {
			cols[j] = quote(c.Name)
		}
		rows, err := q.QueryContext(ctx, `SELECT id, `+strings.Join(cols, ", ")+` FROM `+quote(def.Table)+
			` WHERE id IN (`+p.list(ids...)+`)`, p.vals...)
		if err != nil {
			return nil, fmt.Errorf("loading %s fields: %w", name, err)
		}
		for rows.Next() {
			var id string
			dest := make([]any, len(def.Columns)+1)
			dest[0] = &id
			for j, c := range def.Columns {
				dest[j+1] = columnDest(c)
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scanning %s fields: %w", name, err)
			}
			id = normalizeUUID(id)
			model := def.NewModel()
			for j, c := range def.Columns {
				if err := setColumn(model, c, dest[j+1]); err != nil {
					rows.Close()
					return nil, fmt.Errorf("task %s: %w", id, err)
				}
			}
			recs[pos[id]].Fields = model
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("loading %s fields: %w", name, err)
		}
	}
	for _, r := range recs {
		if r.Fields == nil {
			return nil, fmt.Errorf("task %s has no row in %s", r.Task.ID, r.Def.Table)
		}
	}
	return recs, nil
}

func normalizeUUID(s string) string {
	if u, err := uuid.Parse(s); err == nil {
		return u.String()
	}
	return s
}

// ListTasks implements store.Store. It reads from the lists pool.
func (s *Store) ListTasks(ctx context.Context, f store.ListFilter) (store.Page, error) {
	q, args, limit, err := listQuery(f)
	if err != nil {
		return store.Page{}, err
	}
	rows, err := s.lists.QueryContext(ctx, q, args...)
	if err != nil {
		return store.Page{}, fmt.Errorf("listing tasks: %w", err)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return store.Page{}, fmt.Errorf("listing tasks: %w", err)
	}
	var page store.Page
	if len(tasks) > limit {
		tasks = tasks[:limit]
		last := tasks[limit-1]
		page.NextCursor = store.CursorAfter(last)
	}
	if len(tasks) == 0 {
		page.Records = []*store.Record{}
		return page, nil
	}
	page.Records, err = s.attachFields(ctx, s.lists, tasks)
	return page, err
}

// listQuery is ListTasks' SELECT of limit+1 rows, newest first. Each
// filter has an index in that order (migration list_indexes).
func listQuery(f store.ListFilter) (string, []any, int, error) {
	var (
		conds []string
		p     params
	)
	if !f.Scope.Admin {
		conds = append(conds, "origin_tenant_id = "+p.add(f.Scope.TenantID))
	}
	if f.TenantID != "" {
		conds = append(conds, "origin_tenant_id = "+p.add(f.TenantID))
	}
	for _, c := range []string{inList(&p, "task_type", f.TaskTypes), inList(&p, "status", f.Statuses),
		inList(&p, "queue_name", f.QueueNames)} {
		if c != "" {
			conds = append(conds, c)
		}
	}
	if !f.CreatedAfter.IsZero() {
		conds = append(conds, "created_at >= "+p.add(dbTime(f.CreatedAfter)))
	}
	if !f.CreatedBefore.IsZero() {
		conds = append(conds, "created_at < "+p.add(dbTime(f.CreatedBefore)))
	}
	if f.Cursor != "" {
		at, id, err := store.DecodeCursor(f.Cursor)
		if err != nil {
			return "", nil, 0, err
		}
		// The redundant created_at <= bound lets the index scan start
		// at the cursor instead of filtering every earlier row.
		atP, idP := p.add(at), p.add(id.String())
		conds = append(conds, "created_at <= "+atP+" AND (created_at < "+atP+" OR id < "+idP+")")
	}
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = 50
	case limit > maxPage:
		limit = maxPage
	}
	q := `SELECT ` + baseColumns + ` FROM tasks`
	if len(conds) > 0 {
		q += ` WHERE ` + strings.Join(conds, " AND ")
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ` + p.add(limit+1)
	return q, p.vals, limit, nil
}

// maxPage is the largest page ListTasks returns (store.ListFilter.Limit).
const maxPage = 500

// UpdateTask implements store.Store.
func (s *Store) UpdateTask(ctx context.Context, id uuid.UUID, scope store.Scope, p store.Patch) (*store.Record, error) {
	where, args := "id = $1", []any{id.String()}
	if !scope.Admin {
		where, args = where+" AND origin_tenant_id = $2", append(args, scope.TenantID)
	}
	var rec *store.Record
	err := s.inTx(ctx, func(tx *txn) error {
		var err error
		rec, err = s.getBy(ctx, tx, where+s.d.forUpdate, args...)
		if err != nil {
			return err
		}
		t := rec.Task
		if t.Status != task.StatusPending {
			return fmt.Errorf("%w: the task is %s", store.ErrNotEditable, t.Status)
		}
		if p.Apply != nil {
			changed, err := p.Apply(rec.Fields)
			if err != nil {
				return err
			}
			if len(changed) > 0 {
				sets := make([]string, len(changed))
				var p params
				for i, c := range changed {
					v, err := columnValue(rec.Fields, c)
					if err != nil {
						return err
					}
					sets[i] = quote(c.Name) + " = " + p.add(v)
				}
				if _, err := tx.ExecContext(ctx, `UPDATE `+quote(rec.Def.Table)+` SET `+strings.Join(sets, ", ")+
					` WHERE id = `+p.add(t.ID.String()), p.vals...); err != nil {
					return fmt.Errorf("updating %s: %w", rec.Def.Table, err)
				}
			}
		}
		if p.Priority != nil {
			t.Priority = *p.Priority
		}
		if p.QueueName != nil {
			t.QueueName = *p.QueueName
		}
		if p.RunAt != nil {
			t.RunAt = dbTime(*p.RunAt)
		}
		if p.MaxAttempts != nil {
			t.MaxAttempts = *p.MaxAttempts
		}
		if p.WebhookURL != nil {
			t.WebhookURL = *p.WebhookURL
		}
		if p.WebhookEvents != nil {
			t.WebhookEvents = *p.WebhookEvents
		}
		t.UpdatedAt = task.Now()
		events, err := jsonText(nonNil(t.WebhookEvents))
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE tasks SET priority = $1, queue_name = $2, run_at = $3, max_attempts = $4,
			webhook_url = $5, webhook_events = $6, updated_at = $7 WHERE id = $8 AND status = 'pending'`,
			t.Priority, t.QueueName, t.RunAt, t.MaxAttempts, t.WebhookURL, events, t.UpdatedAt, t.ID.String())
		if err != nil {
			return fmt.Errorf("updating task: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: the task is no longer pending", store.ErrNotEditable)
		}
		// Return the task as stored (times in UTC to the microsecond,
		// JSON as the database normalised it), as GetTask would.
		rec, err = s.getBy(ctx, tx, "id = $1", t.ID.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}
