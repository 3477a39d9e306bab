package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// decided is a status change that has been checked against the task's
// current row and applied to t in memory; writeTransitions makes it durable
// on condition that the row still has status from and attempt attempt, and,
// when version is set (a row read outside the transaction), that its
// updated_at is still version.
type decided struct {
	t       *task.Task
	from    task.Status
	attempt int
	version *time.Time
	// ev, when set, is the change's event, built ahead of the write.
	ev *event.Event
}

// decide applies change c to the loaded task t (task.Change.Apply, which
// holds the rules) and returns it as a decided write; when c is refused it
// returns the reason and t is unchanged.
func decide(t *task.Task, c *task.Change, now time.Time) (decided, error) {
	d := decided{t: t, from: t.Status, attempt: t.Attempt}
	if err := c.Apply(t, now); err != nil {
		return decided{}, err
	}
	return d, nil
}

// transitionCols are the columns of a transition batch: the row's id, the
// status and attempt it must still have (and updated_at, when the change
// was decided from a row read outside the transaction), then the columns a
// transition may change.
var transitionCols = []batchCol{
	{"id", "uuid"}, {"from_status", "text"}, {"from_attempt", "integer"}, {"from_updated_at", "timestamptz"},
	{"status", "text"}, {"updated_at", "timestamptz"}, {"started_at", "timestamptz"},
	{"completed_at", "timestamptz"}, {"run_at", "timestamptz"}, {"executor_instance", "text"},
	{"lease_expires_at", "timestamptz"}, {"errors", "jsonb"}, {"error_message", "text"},
	{"error_category", "text"}, {"retry_count", "integer"}, {"result", "jsonb"},
	{"progress", "double precision"}, {"stage", "text"}, {"is_resumed", "boolean"},
	{"resume_attempt_count", "integer"}, {"last_resume_attempt", "timestamptz"},
	{"service_task_id", "text"},
}

// transitionRow is one decided change in a transition batch; its JSON
// names are transitionCols.
type transitionRow struct {
	ID                 string  `json:"id"`
	FromStatus         string  `json:"from_status"`
	FromAttempt        int     `json:"from_attempt"`
	FromUpdatedAt      *string `json:"from_updated_at"`
	Status             string  `json:"status"`
	UpdatedAt          string  `json:"updated_at"`
	StartedAt          *string `json:"started_at"`
	CompletedAt        *string `json:"completed_at"`
	RunAt              string  `json:"run_at"`
	ExecutorInstance   string  `json:"executor_instance"`
	LeaseExpiresAt     *string `json:"lease_expires_at"`
	Errors             string  `json:"errors"`
	ErrorMessage       string  `json:"error_message"`
	ErrorCategory      string  `json:"error_category"`
	RetryCount         int     `json:"retry_count"`
	Result             *string `json:"result"`
	Progress           float64 `json:"progress"`
	Stage              string  `json:"stage"`
	IsResumed          bool    `json:"is_resumed"`
	ResumeAttemptCount int     `json:"resume_attempt_count"`
	LastResumeAttempt  *string `json:"last_resume_attempt"`
	ServiceTaskID      string  `json:"service_task_id"`
}

func newTransitionRow(d decided) (transitionRow, error) {
	t := d.t
	errs, err := jsonText(nonNil(t.Errors))
	if err != nil {
		return transitionRow{}, err
	}
	var result *string
	if len(t.Result) > 0 {
		r := string(t.Result)
		result = &r
	}
	return transitionRow{
		ID: t.ID.String(), FromStatus: string(d.from), FromAttempt: d.attempt, FromUpdatedAt: batchTimePtr(d.version),
		Status: string(t.Status), UpdatedAt: batchTime(t.UpdatedAt), StartedAt: batchTimePtr(t.StartedAt),
		CompletedAt: batchTimePtr(t.CompletedAt), RunAt: batchTime(t.RunAt), ExecutorInstance: t.ExecutorInstance,
		LeaseExpiresAt: batchTimePtr(t.LeaseExpiresAt), Errors: errs, ErrorMessage: t.ErrorMessage,
		ErrorCategory: t.ErrorCategory, RetryCount: t.RetryCount, Result: result,
		Progress: t.Progress, Stage: t.Stage, IsResumed: t.IsResumed,
		ResumeAttemptCount: t.ResumeAttemptCount, LastResumeAttempt: batchTimePtr(t.LastResumeAttempt),
		ServiceTaskID: t.ServiceTaskID,
	}, nil
}

// maxBatch bounds the rows of one batch statement or IN list (SQLite allows
// 32766 parameters, PostgreSQL 65535; JSON batches are kept to the same
// size).
const maxBatch = 500

// transitionSQL is the UPDATE of writeTransitions for dialect d. On
// PostgreSQL it writes a whole batch, passed as JSON in $1; the id list
// repeated as an array lets the planner look the rows up by primary key
// (it estimates json_to_recordset at 100 rows and would otherwise hash-join
// against a scan of the table). On SQLite, in process, a statement per row
// prepared once per batch costs less than either a long VALUES list or
// JSON: its parameters are the columns from status on, then id,
// from_status, from_attempt and from_updated_at (twice).
func transitionSQL(d dialect) string {
	const keys = 4 // id, from_status, from_attempt, from_updated_at
	sets := make([]string, 0, len(transitionCols)-keys)
	if !d.jsonBatches {
		for _, c := range transitionCols[keys:] {
			sets = append(sets, c.name+" = ?")
		}
		return `UPDATE tasks SET ` + strings.Join(sets, ", ") + `
			WHERE id = ? AND status = ? AND attempt = ? AND (? IS NULL OR updated_at = ?)`
	}
	for _, c := range transitionCols[keys:] {
		sets = append(sets, c.name+" = "+d.batchValue(c))
	}
	// The rows are locked in id order first, as every multi-row writer
	// does (see ExtendLeases), so that writers cannot deadlock.
	return `WITH v AS MATERIALIZED (SELECT * FROM ` + d.jsonRows("$1", transitionCols) + `),
		owned AS MATERIALIZED (SELECT t.id FROM tasks t JOIN v ON t.id = v.id
			AND t.status = v.from_status AND t.attempt = v.from_attempt
			AND (v.from_updated_at IS NULL OR t.updated_at = v.from_updated_at)
			WHERE t.id = ANY (ARRAY(SELECT id FROM v)) ORDER BY t.id FOR UPDATE OF t)
		UPDATE tasks SET ` + strings.Join(sets, ", ") + `
		FROM v WHERE tasks.id = v.id AND tasks.id IN (SELECT id FROM owned)
		RETURNING tasks.id`
}

// sqliteArgs are the parameters of SQLite's per-row transitionSQL, from
// the same row the PostgreSQL batch carries: times as the text SQLite
// stores for them, JSON documents as text.
func (r transitionRow) sqliteArgs() []any {
	opt := func(p *string) any {
		if p == nil {
			return nil
		}
		return *p
	}
	return []any{r.Status, r.UpdatedAt, opt(r.StartedAt),
		opt(r.CompletedAt), r.RunAt, r.ExecutorInstance,
		opt(r.LeaseExpiresAt), r.Errors, r.ErrorMessage,
		r.ErrorCategory, r.RetryCount, opt(r.Result),
		r.Progress, r.Stage, r.IsResumed,
		r.ResumeAttemptCount, opt(r.LastResumeAttempt), r.ServiceTaskID,
		r.ID, r.FromStatus, r.FromAttempt, opt(r.FromUpdatedAt), opt(r.FromUpdatedAt)}
}

// updateTransitions writes one chunk of decided changes and returns the
// ids of the rows it wrote.
func (s *Store) updateTransitions(ctx context.Context, tx *txn, chunk []decided) (map[uuid.UUID]bool, error) {
	if s.d.jsonBatches {
		return s.updateTransitionsBatch(ctx, tx, chunk)
	}
	return s.updateTransitionsEach(ctx, tx, chunk)
}

// updateTransitionsEach runs the prepared UPDATE once per change (SQLite).
func (s *Store) updateTransitionsEach(ctx context.Context, tx *txn, chunk []decided) (map[uuid.UUID]bool, error) {
	written := make(map[uuid.UUID]bool, len(chunk))
	st, err := tx.PrepareContext(ctx, s.sql.transition)
	if err != nil {
		return nil, fmt.Errorf("updating task status: %w", err)
	}
	defer st.Close()
	for _, d := range chunk {
		row, err := newTransitionRow(d)
		if err != nil {
			return nil, err
		}
		res, err := st.ExecContext(ctx, row.sqliteArgs()...)
		if err != nil {
			return nil, fmt.Errorf("updating task status: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("updating task status: %w", err)
		}
		if n == 1 {
			written[d.t.ID] = true
		}
	}
	return written, nil
}

// updateTransitionsBatch writes the chunk in one statement over a JSON
// array, locking the rows in id order first (PostgreSQL).
func (s *Store) updateTransitionsBatch(ctx context.Context, tx *txn, chunk []decided) (map[uuid.UUID]bool, error) {
	written := make(map[uuid.UUID]bool, len(chunk))
	batch := make([]transitionRow, len(chunk))
	for i, d := range chunk {
		var err error
		if batch[i], err = newTransitionRow(d); err != nil {
			return nil, err
		}
	}
	param, err := jsonText(batch)
	if err != nil {
		return nil, err
	}
	r, err := tx.QueryContext(ctx, s.sql.transition, param)
	if err != nil {
		return nil, fmt.Errorf("updating task status: %w", err)
	}
	defer r.Close()
	for r.Next() {
		var id string
		if err := r.Scan(&id); err != nil {
			return nil, fmt.Errorf("updating task status: %w", err)
		}
		u, _ := uuid.Parse(id)
		written[u] = true
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("updating task status: %w", err)
	}
	return written, nil
}

// writeTransitions writes decided changes (updateDecided) and then their
// events. It returns the events, in the order of ds, of the changes that
// were written; a change whose row moved meanwhile (which the callers' row
// locks prevent) is reported in refused.
func (s *Store) writeTransitions(ctx context.Context, tx *txn, ds []decided, kind string, now time.Time) (evs []event.Event, refused map[uuid.UUID]bool, err error) {
	written, err := s.updateDecided(ctx, tx, ds)
	if err != nil {
		return nil, nil, err
	}
	refused = map[uuid.UUID]bool{}
	for _, d := range ds {
		if !written[d.t.ID] {
			refused[d.t.ID] = true
		}
	}
	evs, err = s.insertEvents(ctx, tx, eventsOf(ds, written, kind, now))
	return evs, refused, err
}

// updateDecided writes decided changes (on PostgreSQL one UPDATE per chunk,
// on SQLite one prepared UPDATE per row), conditional on each row's status
// and attempt (and version), queues the notifications the written ones
// call for (a wake-up for re-queued tasks, a cancel for stopped runs), and
// returns the ids it wrote. It takes row locks, so a transaction calls it before
// it inserts events: the event-order lock is always taken after a
// writer's row locks, never before (see eventOrderLock).
func (s *Store) updateDecided(ctx context.Context, tx *txn, ds []decided) (map[uuid.UUID]bool, error) {
	written := make(map[uuid.UUID]bool, len(ds))
	for start := 0; start < len(ds); start += maxBatch {
		chunk := ds[start:min(start+maxBatch, len(ds))]
		w, err := s.updateTransitions(ctx, tx, chunk)
		if err != nil {
			return nil, err
		}
		for id := range w {
			written[id] = true
		}
	}
	var done []decided
	for _, d := range ds {
		if written[d.t.ID] {
			done = append(done, d)
		}
	}
	tx.notify(notificationsFor(done)...)
	return written, nil
}

// eventsOf returns the events of the written changes among ds, in order:
// the one built ahead of the write where there is one.
func eventsOf(ds []decided, written map[uuid.UUID]bool, kind string, now time.Time) []event.Event {
	out := make([]event.Event, 0, len(ds))
	for _, d := range ds {
		switch {
		case !written[d.t.ID]:
		case d.ev != nil:
			out = append(out, *d.ev)
		default:
			out = append(out, event.New(d.t, kind, now))
		}
	}
	return out
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

// FinishRuns implements store.Store: many status changes in one
// transaction. errs[i] is the
// refusal of changes[i] (task.ErrNotFound, task.ErrStaleRun or a
// *task.TransitionError) or nil when it was written.
//
// The rows are read (unless the change carries its Known copy) and the
// changes decided before the transaction, from the read pool
// (readFinish), so the writer (SQLite's only one; on PostgreSQL the
// event-order lock) is held only for the writes (writeFinish). Those are
// conditional on each row's status, attempt and updated_at as read: a row
// that another writer changed in between is not written, and is read
// again under lock and decided afresh in the same transaction, as is every
// change the first reading refused. The events of both passes are
// inserted last, after every row lock is taken.
func (s *Store) FinishRuns(ctx context.Context, changes []store.StatusChange) ([]error, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	f, err := s.readFinish(ctx, changes)
	if err != nil {
		return nil, err
	}
	return s.writeFinish(ctx, &f)
}

// finishing is a FinishRuns batch between its phases: what readFinish read
// and decided, which writeFinish writes.
type finishing struct {
	// errs is the refusal of each change so far.
	errs []error
	// uniq are the changes of distinct tasks, at[j] the index of uniq[j]
	// in the batch.
	uniq []store.StatusChange
	at   []int
	// first are the changes decided from the rows as read, at now.
	first []indexedDecision
	now   time.Time
}

// readFinish is FinishRuns' first phase, outside any transaction: it
// refuses a second change of a task, reads the rows of the changes that
// carry no Known copy from the read pool, and decides each change against
// its row (or copy), versioned by the updated_at it was decided from.
func (s *Store) readFinish(ctx context.Context, changes []store.StatusChange) (finishing, error) {
	errs := make([]error, len(changes))
	// A task changed twice in one batch: the second change is refused
	// here, once, whatever the passes below make of the first.
	// uniq and at go to the write phase: sized once, as they outlive
	// this call.
	uniq, at := make([]store.StatusChange, 0, len(changes)), make([]int, 0, len(changes))
	var ids []uuid.UUID
	seen := make(map[uuid.UUID]bool, len(changes))
	for i, c := range changes {
		if seen[c.TaskID] {
			errs[i] = fmt.Errorf("%w: task %s changed twice in one batch", task.ErrStaleRun, c.TaskID)
			continue
		}
		seen[c.TaskID] = true
		uniq, at = append(uniq, c), append(at, i)
		if c.Known == nil || c.Known.ID != c.TaskID {
			ids = append(ids, c.TaskID)
		}
	}
	read := map[uuid.UUID]*task.Task{}
	if len(ids) > 0 {
		var err error
		if read, err = s.loadTasks(ctx, s.r, ids, store.AdminScope, ""); err != nil {
			return finishing{}, err
		}
	}
	for _, c := range uniq {
		if c.Known != nil && c.Known.ID == c.TaskID {
			k := *c.Known
			k.Errors = slices.Clone(c.Known.Errors)
			read[c.TaskID] = &k
		}
	}
	now := task.Now()
	first, _ := decideAll(uniq, read, now, true)
	for i := range first {
		ev := event.New(first[i].d.t, event.KindStatus, now)
		first[i].d.ev = &ev
	}
	return finishing{errs: errs, uniq: uniq, at: at, first: first, now: now}, nil
}

// writeFinish is FinishRuns' second phase, in one transaction: it writes
// the changes readFinish decided, conditionally on the rows being as they
// were read, reads the others again under lock and decides them afresh,
// writes those, and inserts the events of both.
func (s *Store) writeFinish(ctx context.Context, f *finishing) ([]error, error) {
	errs, uniq, at, first, now := f.errs, f.uniq, f.at, f.first, f.now
	err := s.inTx(ctx, func(tx *txn) error {
		for _, i := range at {
			errs[i] = nil
		}
		ds := make([]decided, 0, len(first))
		for _, fd := range first {
			ds = append(ds, fd.d)
		}
		written, err := s.updateDecided(ctx, tx, ds)
		if err != nil {
			return err
		}
		evs := eventsOf(ds, written, event.KindStatus, now)
		done := make([]bool, len(uniq))
		for _, fd := range first {
			done[fd.i] = written[fd.d.t.ID]
		}
		var again []store.StatusChange
		var againAt []int
		for j, c := range uniq {
			if !done[j] {
				again, againAt = append(again, c), append(againAt, at[j])
			}
		}
		if len(again) > 0 {
			againIDs := make([]uuid.UUID, len(again))
			for j, c := range again {
				againIDs[j] = c.TaskID
			}
			locked, err := s.lockTasks(ctx, tx, againIDs, store.AdminScope)
			if err != nil {
				return err
			}
			// The rows may have been written after the first now.
			later := task.Now()
			second, refusals := decideAll(again, locked, later, false)
			for j, e := range refusals {
				errs[againAt[j]] = e
			}
			ds2 := make([]decided, 0, len(second))
			for _, fd := range second {
				ds2 = append(ds2, fd.d)
			}
			written2, err := s.updateDecided(ctx, tx, ds2)
			if err != nil {
				return err
			}
			for _, fd := range second {
				if !written2[fd.d.t.ID] {
					errs[againAt[fd.i]] = &task.TransitionError{From: fd.d.from, To: fd.d.t.Status}
				}
			}
			evs = append(evs, eventsOf(ds2, written2, event.KindStatus, later)...)
		}
		_, err = s.insertEvents(ctx, tx, evs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// indexedDecision is a decided change and the index of its change.
type indexedDecision struct {
	d decided
	i int
}

// decideAll decides each change against its task in tasks (which it
// changes). It returns the allowed changes and, per change, the refusal
// (nil for the allowed ones). With versioned, each decision is made
// conditional on the updated_at it was decided from.
func decideAll(changes []store.StatusChange, tasks map[uuid.UUID]*task.Task, now time.Time, versioned bool) ([]indexedDecision, []error) {
	var ds []indexedDecision
	errs := make([]error, len(changes))
	seen := make(map[uuid.UUID]bool, len(changes))
	for i, c := range changes {
		t := tasks[c.TaskID]
		switch {
		case t == nil:
			errs[i] = task.ErrNotFound
			continue
		case seen[c.TaskID]:
			errs[i] = fmt.Errorf("%w: task %s changed twice in one batch", task.ErrStaleRun, c.TaskID)
			continue
		}
		version := t.UpdatedAt
		d, err := decide(t, &changes[i].Change, now)
		if err != nil {
			errs[i] = err
			continue
		}
		if versioned {
			d.version = &version
		}
		seen[c.TaskID] = true
		ds = append(ds, indexedDecision{d: d, i: i})
	}
	return ds, errs
}
