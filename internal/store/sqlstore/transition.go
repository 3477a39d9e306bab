package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// A status change is written as its task.Delta: only the columns the
// change sets, the counts added to and the error appended in the UPDATE
// itself, conditionally on the row still having the status and attempt
// the change was made for. The store reads nothing first and decides
// nothing: the rules are task.Change's. The UPDATE returns the rows as
// written, from which the changes' events are made.

// conditional is a change to write: delta, if the row still has status
// from and attempt attempt.
type conditional struct {
	id      uuid.UUID
	from    task.Status
	attempt int
	delta   task.Delta
}

// deltaCol is a column a delta may write: its name in the batch and type
// (batchCol), the task column, and its value for a delta (ok false when
// the delta keeps the column). expr, when set, is the SET expression with
// %s standing for the value; otherwise the value replaces the column.
type deltaCol struct {
	batchCol
	column string
	expr   func(d dialect) string
	value  func(d *task.Delta) (v any, ok bool)
}

// opt returns the value of o for a batch, converted by conv.
func opt[T any](o task.Opt[T], conv func(T) any) (any, bool) {
	if !o.Set {
		return nil, false
	}
	return conv(o.V), true
}

func same[T any](v T) any { return v }

// jsonValue is a JSON document as a batch carries it: text, or null.
func jsonValue(r json.RawMessage) any {
	if r == nil {
		return nil
	}
	return string(r)
}

func optTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return batchTime(*t)
}

// deltaCols are the columns a delta may write, in the order of a change
// statement's SET list (status and updated_at always come first).
var deltaCols = []deltaCol{
	{batchCol{"new_status", "text"}, "status", nil, func(d *task.Delta) (any, bool) { return string(d.Status), true }},
	{batchCol{"new_updated_at", "timestamptz"}, "updated_at", nil, func(d *task.Delta) (any, bool) { return batchTime(d.At), true }},
	{batchCol{"new_result", "jsonb"}, "result", nil, func(d *task.Delta) (any, bool) { return opt(d.Result, jsonValue) }},
	{batchCol{"new_error_message", "text"}, "error_message", nil, func(d *task.Delta) (any, bool) { return opt(d.ErrorMessage, same) }},
	{batchCol{"new_error_category", "text"}, "error_category", nil, func(d *task.Delta) (any, bool) { return opt(d.ErrorCategory, same) }},
	{batchCol{"new_progress", "double precision"}, "progress", nil, func(d *task.Delta) (any, bool) { return opt(d.Progress, same) }},
	{batchCol{"new_stage", "text"}, "stage", nil, func(d *task.Delta) (any, bool) { return opt(d.Stage, same) }},
	{batchCol{"new_completed_at", "timestamptz"}, "completed_at", nil, func(d *task.Delta) (any, bool) { return opt(d.CompletedAt, optTime) }},
	{batchCol{"new_lease_expires_at", "timestamptz"}, "lease_expires_at", nil, func(d *task.Delta) (any, bool) { return opt(d.LeaseExpiresAt, optTime) }},
	{batchCol{"new_executor_instance", "text"}, "executor_instance", nil, func(d *task.Delta) (any, bool) { return opt(d.ExecutorInstance, same) }},
	{batchCol{"new_run_at", "timestamptz"}, "run_at", nil, func(d *task.Delta) (any, bool) {
		return opt(d.RunAt, func(t time.Time) any { return batchTime(t) })
	}},
	{batchCol{"new_is_resumed", "boolean"}, "is_resumed", nil, func(d *task.Delta) (any, bool) { return opt(d.IsResumed, same) }},
	{batchCol{"new_service_task_id", "text"}, "service_task_id", nil, func(d *task.Delta) (any, bool) { return opt(d.ServiceTaskID, same) }},
	{batchCol{"new_executor_handle", "jsonb"}, "executor_handle", nil, func(d *task.Delta) (any, bool) { return opt(d.ExecutorHandle, jsonValue) }},
	{batchCol{"new_retry_count", "integer"}, "retry_count", nil, func(d *task.Delta) (any, bool) {
		return opt(d.RetryCount, func(n int) any { return n + d.AddRetries })
	}},
	{batchCol{"add_retries", "integer"}, "retry_count", func(dialect) string { return "tasks.retry_count + %s" }, func(d *task.Delta) (any, bool) {
		return d.AddRetries, !d.RetryCount.Set && d.AddRetries != 0
	}},
	{batchCol{"add_resumes", "integer"}, "resume_attempt_count", func(dialect) string { return "tasks.resume_attempt_count + %s" }, func(d *task.Delta) (any, bool) {
		return d.AddResumes, d.AddResumes != 0
	}},
	{batchCol{"new_last_resume_attempt", "timestamptz"}, "last_resume_attempt", nil, func(d *task.Delta) (any, bool) {
		return batchTime(d.At), d.AddResumes > 0
	}},
	{batchCol{"add_error", "jsonb"}, "errors", func(d dialect) string { return fmt.Sprintf(d.jsonAppend, "tasks.errors", "%s") }, func(d *task.Delta) (any, bool) {
		if d.AppendError == nil {
			return nil, false
		}
		s, err := jsonText(d.AppendError)
		if err != nil {
			// A task.Error is strings, an int and a time: it always encodes.
			panic("sqlstore: encoding a task error: " + err.Error())
		}
		return s, true
	}},
	{batchCol{"new_started_at", "timestamptz"}, "started_at", nil, func(d *task.Delta) (any, bool) { return opt(d.StartedAt, optTime) }},
	{batchCol{"add_provider_seconds", "double precision"}, "provider_seconds", func(dialect) string { return "tasks.provider_seconds + %s" }, func(d *task.Delta) (any, bool) {
		return d.AddUsage.ProviderSeconds, d.AddUsage.ProviderSeconds != 0
	}},
	{batchCol{"add_input_tokens", "bigint"}, "input_tokens", func(dialect) string { return "tasks.input_tokens + %s" }, func(d *task.Delta) (any, bool) {
		return d.AddUsage.InputTokens, d.AddUsage.InputTokens != 0
	}},
	{batchCol{"add_output_tokens", "bigint"}, "output_tokens", func(dialect) string { return "tasks.output_tokens + %s" }, func(d *task.Delta) (any, bool) {
		return d.AddUsage.OutputTokens, d.AddUsage.OutputTokens != 0
	}},
}

// shape is the set of deltaCols a delta writes, one bit each; changes of
// one shape share a statement.
type shape uint32

func shapeOf(d *task.Delta) shape {
	var sh shape
	for i := range deltaCols {
		if _, ok := deltaCols[i].value(d); ok {
			sh |= 1 << i
		}
	}
	return sh
}

// cols returns the columns of sh, in deltaCols order.
func (sh shape) cols() []deltaCol {
	var out []deltaCol
	for i, c := range deltaCols {
		if sh&(1<<i) != 0 {
			out = append(out, c)
		}
	}
	return out
}

// changeStatements caches each shape's statement text.
type changeStatements struct{ m sync.Map } // changeKey → string

// changeKey names a change statement: the shape it writes and whether it
// returns whole rows (baseColumns) or only what events need (eventColumns).
type changeKey struct {
	sh    shape
	whole bool
}

// columns are the columns a change statement returns.
func (k changeKey) columns() string {
	if k.whole {
		return baseColumns
	}
	return eventColumns
}

// changeSQL returns the statement that writes changes of key's shape. On
// SQLite, in process, it writes one row, prepared once per batch: its
// parameters are the shape's values, then the id and the status and
// attempt the row must have. On PostgreSQL it writes a whole batch,
// passed as JSON in $1, locking the rows in id order first, as every
// multi-row writer does (see ExtendLeases), so that writers cannot
// deadlock; the id list repeated as an array lets the planner look the
// rows up by primary key (it estimates json_to_recordset at 100 rows and
// would otherwise hash-join against a scan of the table); it returns the
// rows written, whole or their eventColumns.
func (s *Store) changeSQL(key changeKey) string {
	if q, ok := s.sql.changes.m.Load(key); ok {
		return q.(string)
	}
	cols := key.sh.cols()
	sets := make([]string, len(cols))
	var q string
	if !s.d.jsonBatches {
		for i, c := range cols {
			sets[i] = c.column + " = " + c.set(s.d, "?")
		}
		q = `UPDATE tasks SET ` + strings.Join(sets, ", ") + `
			WHERE id = ? AND status = ? AND attempt = ?`
	} else {
		batch := append([]batchCol{{"id", "uuid"}, {"from_status", "text"}, {"from_attempt", "integer"}}, batchColsOf(cols)...)
		for i, c := range cols {
			sets[i] = c.column + " = " + c.set(s.d, s.d.batchValue(c.batchCol))
		}
		q = `WITH v AS MATERIALIZED (SELECT * FROM ` + s.d.jsonRows("$1", batch) + `),
		owned AS MATERIALIZED (SELECT t.id FROM tasks t JOIN v ON t.id = v.id
			AND t.status = v.from_status AND t.attempt = v.from_attempt
			WHERE t.id = ANY (ARRAY(SELECT id FROM v)) ORDER BY t.id FOR UPDATE OF t)
		UPDATE tasks SET ` + strings.Join(sets, ", ") + `
		FROM v WHERE tasks.id = v.id AND tasks.id IN (SELECT id FROM owned)
		RETURNING ` + qualified(key.columns(), "tasks")
	}
	s.sql.changes.m.Store(key, q)
	return q
}

// set is c's SET expression over value.
func (c deltaCol) set(d dialect, value string) string {
	if c.expr == nil {
		return value
	}
	return fmt.Sprintf(c.expr(d), value)
}

func batchColsOf(cols []deltaCol) []batchCol {
	out := make([]batchCol, len(cols))
	for i, c := range cols {
		out[i] = c.batchCol
	}
	return out
}

// writeChanges writes cs (on PostgreSQL one statement per shape and
// chunk, on SQLite one prepared statement per row), each conditional on
// its row's status and attempt, queues the notifications the written ones
// call for (a wake-up for re-queued tasks, a cancel for stopped runs),
// and returns the rows written, as they are now, by id: whole, or only
// their eventColumns. It takes row
// locks, so a transaction calls it before it inserts events: the
// event-order lock is always taken after a writer's row locks, never
// before (see eventOrderLock).
func (s *Store) writeChanges(ctx context.Context, tx *txn, cs []conditional, whole bool) (map[uuid.UUID]*task.Task, error) {
	written := make(map[uuid.UUID]*task.Task, len(cs))
	var order []shape
	byShape := map[shape][]conditional{}
	for _, c := range cs {
		sh := shapeOf(&c.delta)
		if _, ok := byShape[sh]; !ok {
			order = append(order, sh)
		}
		byShape[sh] = append(byShape[sh], c)
	}
	for _, sh := range order {
		group := byShape[sh]
		for start := 0; start < len(group); start += maxBatch {
			chunk := group[start:min(start+maxBatch, len(group))]
			key := changeKey{sh: sh, whole: whole}
			var err error
			if s.d.jsonBatches {
				err = s.writeBatch(ctx, tx, key, chunk, written)
			} else {
				err = s.writeEach(ctx, tx, key, chunk, written)
			}
			if err != nil {
				return nil, fmt.Errorf("updating task status: %w", err)
			}
		}
	}
	tx.notify(notificationsFor(cs, written)...)
	return written, nil
}

// writeEach runs the shape's prepared statement once per change, then
// reads the rows it wrote in one SELECT (SQLite: the transaction holds the
// only writer, so they are as written; this costs less than RETURNING per
// row).
func (s *Store) writeEach(ctx context.Context, tx *txn, key changeKey, chunk []conditional, written map[uuid.UUID]*task.Task) error {
	st, err := tx.PrepareContext(ctx, s.changeSQL(key))
	if err != nil {
		return err
	}
	defer st.Close()
	cols := key.sh.cols()
	args := make([]any, 0, len(cols)+3)
	ids := make([]uuid.UUID, 0, len(chunk))
	for _, c := range chunk {
		args = args[:0]
		for _, col := range cols {
			v, _ := col.value(&c.delta)
			args = append(args, v)
		}
		args = append(args, c.id.String(), string(c.from), c.attempt)
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return classify(err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return classify(err)
		} else if n == 1 {
			ids = append(ids, c.id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var p params
	rows, err := tx.QueryContext(ctx, `SELECT `+key.columns()+` FROM tasks WHERE id IN (`+uuidList(&p, ids)+`)`, p.vals...)
	if err != nil {
		return err
	}
	return scanWritten(rows, key.whole, written)
}

// scanWritten reads the rows a change statement returned into written
// and closes rows.
func scanWritten(rows *sql.Rows, whole bool, written map[uuid.UUID]*task.Task) error {
	defer rows.Close()
	scan := scanEventTask
	if whole {
		scan = func(r rowScanner) (*task.Task, error) { return scanTask(r) }
	}
	for rows.Next() {
		t, err := scan(rows)
		if err != nil {
			return classify(err)
		}
		written[t.ID] = t
	}
	return classify(rows.Err())
}

// writeBatch writes a chunk of one shape in one statement over a JSON
// array (PostgreSQL).
func (s *Store) writeBatch(ctx context.Context, tx *txn, key changeKey, chunk []conditional, written map[uuid.UUID]*task.Task) error {
	cols := key.sh.cols()
	batch := make([]map[string]any, len(chunk))
	for i, c := range chunk {
		row := make(map[string]any, len(cols)+3)
		row["id"], row["from_status"], row["from_attempt"] = c.id.String(), string(c.from), c.attempt
		for _, col := range cols {
			row[col.name], _ = col.value(&c.delta)
		}
		batch[i] = row
	}
	param, err := jsonText(batch)
	if err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, s.changeSQL(key), param)
	if err != nil {
		return err
	}
	return scanWritten(rows, key.whole, written)
}

// eventsOf returns the events of the written changes among cs, in order.
func eventsOf(cs []conditional, written map[uuid.UUID]*task.Task, kind string, now time.Time) []event.Event {
	out := make([]event.Event, 0, len(cs))
	for _, c := range cs {
		if t := written[c.id]; t != nil {
			out = append(out, event.New(t, kind, now))
		}
	}
	return out
}

// changeLocked checks changes[i] against tasks[i], a row tx has locked
// (so as it is), and writes them with their events. It returns the
// tasks as written, in order; a refused change is the error, and nothing
// is written.
func (s *Store) changeLocked(ctx context.Context, tx *txn, tasks []*task.Task, changes []task.Change, now time.Time) ([]*task.Task, []event.Event, error) {
	cs := make([]conditional, 0, len(tasks))
	for i, t := range tasks {
		if err := changes[i].Check(t); err != nil {
			return nil, nil, err
		}
		cs = append(cs, conditional{id: t.ID, from: t.Status, attempt: t.Attempt, delta: changes[i].Delta(t.Attempt, now)})
	}
	written, err := s.writeChanges(ctx, tx, cs, true)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*task.Task, 0, len(cs))
	for i, c := range cs {
		t := written[c.id]
		if t == nil {
			// The row is locked: only a bug gets here.
			return nil, nil, &task.TransitionError{From: c.from, To: changes[i].To}
		}
		out = append(out, t)
	}
	// The steps' workflows are locked before the events (lock order, see
	// lockStepWorkflows) and advanced after them.
	wfs, err := s.lockStepWorkflows(ctx, tx, written)
	if err != nil {
		return nil, nil, err
	}
	evs, err := s.insertEvents(ctx, tx, eventsOf(cs, written, event.KindStatus, now))
	if err != nil {
		return nil, nil, err
	}
	return out, evs, s.advanceWorkflows(ctx, tx, wfs)
}

// lockTasks loads the tasks with the given ids under a row lock
// (FOR UPDATE on PostgreSQL), keyed by id.
func (s *Store) lockTasks(ctx context.Context, tx *txn, ids []uuid.UUID, scope store.Scope) (map[uuid.UUID]*task.Task, error) {
	return s.loadTasks(ctx, tx, ids, scope, s.d.forUpdate)
}

// loadTasks loads the tasks with the given ids through q, keyed by id;
// lock is appended to the SELECT.
func (s *Store) loadTasks(ctx context.Context, q querier, ids []uuid.UUID, scope store.Scope, lock string) (map[uuid.UUID]*task.Task, error) {
	out := make(map[uuid.UUID]*task.Task, len(ids))
	for start := 0; start < len(ids); start += maxBatch {
		chunk := ids[start:min(start+maxBatch, len(ids))]
		var p params
		where := `id IN (` + uuidList(&p, chunk) + `)`
		if !scope.Admin {
			where += ` AND origin_tenant_id = ` + p.add(scope.TenantID)
		}
		rows, err := q.QueryContext(ctx, `SELECT `+baseColumns+` FROM tasks WHERE `+where+` ORDER BY id`+lock, p.vals...)
		if err != nil {
			return nil, fmt.Errorf("loading tasks: %w", err)
		}
		tasks, err := scanTasks(rows)
		if err != nil {
			return nil, fmt.Errorf("loading tasks: %w", err)
		}
		for _, t := range tasks {
			out[t.ID] = t
		}
	}
	return out, nil
}

// maxBatch bounds the rows of one batch statement or IN list (SQLite allows
// 32766 parameters, PostgreSQL 65535; JSON batches are kept to the same
// size).
const maxBatch = 500

// FinishRuns implements store.Store: the changes of runs, each written as
// its delta in one transaction, on condition that the task is still
// executing at the change's attempt; River's JobSetStateIfRunningMany is
// the model. Nothing is read first: only a change that was not written
// has its row read, to say why (task.ErrNotFound, task.ErrStaleRun or a
// *task.TransitionError).
func (s *Store) FinishRuns(ctx context.Context, changes []store.StatusChange) ([]error, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	errs := make([]error, len(changes))
	now := task.Now()
	cs := make([]conditional, 0, len(changes))
	at := make([]int, 0, len(changes)) // at[j] is the index of cs[j]
	var unwritable []int               // changes no executing row accepts
	seen := make(map[uuid.UUID]bool, len(changes))
	for i := range changes {
		c := &changes[i]
		switch {
		case seen[c.TaskID]:
			errs[i] = fmt.Errorf("%w: task %s changed twice in one batch", task.ErrStaleRun, c.TaskID)
			continue
		case c.Attempt <= 0 || !c.Scope.Admin:
			errs[i] = fmt.Errorf("finishing runs: the change of task %s does not come from a run (attempt %d, admin scope %t)",
				c.TaskID, c.Attempt, c.Scope.Admin)
			continue
		}
		seen[c.TaskID] = true
		if c.Check(&task.Task{ID: c.TaskID, Status: task.StatusExecuting, Attempt: c.Attempt}) != nil {
			unwritable = append(unwritable, i)
			continue
		}
		cs = append(cs, conditional{id: c.TaskID, from: task.StatusExecuting, attempt: c.Attempt, delta: c.Delta(c.Attempt, now)})
		at = append(at, i)
	}
	err := s.inTx(ctx, func(tx *txn) error {
		for _, i := range at {
			errs[i] = nil
		}
		written, err := s.writeChanges(ctx, tx, cs, false)
		if err != nil {
			return err
		}
		refused := slices.Clone(unwritable)
		for j, c := range cs {
			if written[c.id] == nil {
				refused = append(refused, at[j])
			}
		}
		if err := s.whyRefused(ctx, tx, changes, refused, errs); err != nil {
			return err
		}
		// The workflows of the steps these runs finished advance in
		// this transaction: a step's task is created with the status
		// that completes its last dependency, or not at all. They are
		// locked before the events (lock order, see lockStepWorkflows).
		wfs, err := s.lockStepWorkflows(ctx, tx, written)
		if err != nil {
			return err
		}
		if _, err = s.insertEvents(ctx, tx, eventsOf(cs, written, event.KindStatus, now)); err != nil {
			return err
		}
		return s.advanceWorkflows(ctx, tx, wfs)
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// whyRefused sets errs[i], for each i in refused, to why changes[i] was
// not written, from its row as it is now.
func (s *Store) whyRefused(ctx context.Context, tx *txn, changes []store.StatusChange, refused []int, errs []error) error {
	if len(refused) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(refused))
	for j, i := range refused {
		ids[j] = changes[i].TaskID
	}
	rows, err := s.loadTasks(ctx, tx, ids, store.AdminScope, "")
	if err != nil {
		return err
	}
	for _, i := range refused {
		c := &changes[i]
		t := rows[c.TaskID]
		switch {
		case t == nil:
			errs[i] = task.ErrNotFound
		default:
			errs[i] = c.Check(t)
			if errs[i] == nil {
				// The run's attempt has passed and come back: only a
				// bug in the attempt counter gets here.
				errs[i] = fmt.Errorf("%w: task %s moved while its run finished", task.ErrStaleRun, c.TaskID)
			}
		}
	}
	return nil
}
