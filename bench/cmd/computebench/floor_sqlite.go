package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/bench/internal/cpustat"
	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/task"
)

// On SQLite the floor is the one writer connection's time per task: the
// engine's claims and completions queue for it, so the time it holds its
// transactions bounds the throughput. Three ways of writing the same claims
// and completions with their events, from the least work to the way the
// store must write them:
//   - set-based: one UPDATE per batch, and the event rows built in SQL by
//     one INSERT … SELECT (not open to the store: the event body is the
//     API's contract and is built in Go by event.New);
//   - events per row: the same updates (with RETURNING), the events inserted
//     one prepared statement per row with bodies from event.New, as the
//     store does;
//   - updates per row too, as the store does: claims read their candidates
//     before the transaction and update each row on condition of its id and
//     version; completions know their rows and set the columns the store's
//     transition sets, on condition of status, attempt and version.

// sqliteTimeText is how modernc.org/sqlite stores a time.Time with
// _time_format=sqlite: the text a version condition compares.
const sqliteTimeText = "2006-01-02 15:04:05.999999999-07:00"

// sqliteFloorDesign is one way of writing the claims and completions.
type sqliteFloorDesign struct {
	Name                        string
	perRowUpdates, perRowEvents bool
}

func sqliteFloorDesigns() []sqliteFloorDesign {
	return []sqliteFloorDesign{
		{Name: "compute: set-based, events built in SQL"},
		{Name: "compute: set-based updates, events per row from event.New", perRowEvents: true},
		{Name: "compute: updates and events per row, as the store writes them", perRowUpdates: true, perRowEvents: true},
	}
}

const (
	sqliteFloorBody = `json_object('event_type', 'echo_' || status, 'task_id', id, 'task_type', task_type, 'status', status,
		'entity_id', id, 'origin_instance', origin_instance, 'origin_zone', origin_zone, 'origin_version', 'dev',
		'timestamp', updated_at, 'metadata', json_object('attempt', attempt, 'queue_name', queue_name, 'retry_count', retry_count),
		'progress', progress, 'started_at', started_at, 'completed_at', completed_at)`
	sqliteFloorClaimSet = `UPDATE tasks SET status = 'executing', executor_instance = 'floor', started_at = COALESCE(started_at, ?1),
		updated_at = ?1, lease_expires_at = ?2, attempt = attempt + 1
		WHERE id IN (SELECT id FROM tasks WHERE status = 'pending' AND run_at <= ?1 ORDER BY priority DESC, run_at, created_at LIMIT 300)
		AND status = 'pending'`
	sqliteFloorCompleteSet = `UPDATE tasks SET status = 'completed', progress = 1, completed_at = ?1, updated_at = ?1,
		lease_expires_at = NULL, result = '{"message":"bench"}'
		WHERE id IN (SELECT id FROM tasks WHERE status = 'executing' LIMIT 300) AND status = 'executing'`
	// The rows a batch changed, by the ids its UPDATE returned.
	sqliteFloorEvents = `INSERT INTO task_events (task_id, task_type, event_type, status, tenant_id, body, created_at)
		SELECT id, task_type, 'echo_' || status, status, origin_tenant_id, ` + sqliteFloorBody + `, ?1
		FROM tasks WHERE id IN (SELECT value FROM json_each(?2))`
	sqliteFloorClaimRow = `UPDATE tasks SET status = 'executing', executor_instance = 'floor', started_at = COALESCE(started_at, ?),
		updated_at = ?, lease_expires_at = ?, attempt = attempt + 1 WHERE id = ? AND status = 'pending' AND updated_at = ?`
	sqliteFloorCompleteRow = `UPDATE tasks SET status = ?, updated_at = ?, started_at = ?, completed_at = ?, run_at = ?,
		executor_instance = ?, lease_expires_at = ?, errors = ?, error_message = ?, error_category = ?, retry_count = ?,
		result = ?, progress = ?, stage = ?, is_resumed = ?, resume_attempt_count = ?, last_resume_attempt = ?,
		service_task_id = ? WHERE id = ? AND status = ? AND attempt = ? AND (? IS NULL OR updated_at = ?)`
	sqliteFloorEventRow = `INSERT INTO task_events (task_id, task_type, event_type, status, tenant_id, body, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
)

// runFloorSQLite measures every SQLite design o.runs times on fresh files.
func runFloorSQLite(ctx context.Context, env *dbEnv, o *options) ([]floorResult, error) {
	var out []floorResult
	for _, d := range sqliteFloorDesigns() {
		res, err := measureFloor(ctx, o, dbSQLite, d.Name, func() (float64, float64, error) { return floorRunSQLite(ctx, env, o, d) })
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// floorRunSQLite seeds a fresh file with o.n echo tasks through the store,
// then works them on one writer connection the way d says. It returns this
// process's CPU and the time the writer held its transactions, per task,
// in microseconds.
func floorRunSQLite(ctx context.Context, env *dbEnv, o *options, d sqliteFloorDesign) (cpuMicros, writerMicros float64, err error) {
	db, err := env.fresh(ctx, dbSQLite, "floor")
	if err != nil {
		return 0, 0, err
	}
	defer db.cleanup()
	if err := seedOurs(ctx, db.dsn, o); err != nil {
		return 0, 0, fmt.Errorf("seeding: %w", err)
	}
	conn, err := sql.Open("sqlite", sqliteDSN(db.path))
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	var writer time.Duration
	inTx := func(fn func(*sql.Tx) error) error {
		start := time.Now()
		defer func() { writer += time.Since(start) }()
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	cpu0 := cpustat.Now()
	for done := 0; done < o.n; {
		now := time.Now().UTC()
		// As the store does, per-row claims read their candidates before
		// the writer's transaction, and completions know their rows.
		var due []floorRow
		if d.perRowUpdates {
			if due, err = floorSQLiteRead(ctx, conn, `SELECT id, CAST(updated_at AS TEXT), attempt FROM tasks
				WHERE status = 'pending' AND run_at <= ? ORDER BY priority DESC, run_at, created_at LIMIT 300`, now); err != nil {
				return 0, 0, fmt.Errorf("reading due tasks: %w", err)
			}
		}
		// The store builds its events before the transaction (from the
		// rows it read, or the engine's copies); so does the per-row
		// design. The set-based ones learn their rows inside it.
		var claimEvents []event.Event
		if d.perRowUpdates {
			claimEvents = floorEvents(nextAttempt(due), task.StatusExecuting, now)
		}
		var claimed []floorRow
		if err := inTx(func(tx *sql.Tx) (err error) {
			claimed, err = floorSQLiteClaim(ctx, tx, d, now, due, claimEvents)
			return err
		}); err != nil {
			return 0, 0, fmt.Errorf("claim: %w", err)
		}
		finished := now.Add(time.Microsecond)
		var doneEvents []event.Event
		if d.perRowUpdates {
			doneEvents = floorEvents(claimed, task.StatusCompleted, finished)
		}
		var n int
		if err := inTx(func(tx *sql.Tx) (err error) {
			n, err = floorSQLiteComplete(ctx, tx, d, finished, claimed, doneEvents)
			return err
		}); err != nil {
			return 0, 0, fmt.Errorf("complete: %w", err)
		}
		if n == 0 {
			return 0, 0, fmt.Errorf("completed %d of %d, then nothing", done, o.n)
		}
		done += n
	}
	cpu1 := cpustat.Now()
	if !cpu0.ProcessOK || !cpu1.ProcessOK {
		return 0, 0, fmt.Errorf("this process's CPU time is not readable")
	}
	var completed, events int
	if err := conn.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM tasks WHERE status = 'completed'),
		(SELECT count(*) FROM task_events WHERE status <> 'pending')`).Scan(&completed, &events); err != nil {
		return 0, 0, err
	}
	if completed != o.n || events != 2*o.n {
		return 0, 0, fmt.Errorf("check: %d of %d completed, %d events (want %d)", completed, o.n, events, 2*o.n)
	}
	n := float64(o.n)
	return (cpu1.ProcessSeconds - cpu0.ProcessSeconds) / n * 1e6, writer.Seconds() / n * 1e6, nil
}

// nextAttempt is rows as a claim leaves them: one attempt further.
func nextAttempt(rows []floorRow) []floorRow {
	out := make([]floorRow, len(rows))
	for i, r := range rows {
		out[i] = floorRow{id: r.id, version: r.version, attempt: r.attempt + 1}
	}
	return out
}

// floorRow is a task a floor batch works on.
type floorRow struct {
	id, version string
	attempt     int
}

// floorSQLiteClaim claims up to floorBatch pending tasks (the due ones,
// for per-row updates), writes their events, and returns what it claimed.
func floorSQLiteClaim(ctx context.Context, tx *sql.Tx, d sqliteFloorDesign, now time.Time, due []floorRow, evs []event.Event) ([]floorRow, error) {
	lease := now.Add(30 * time.Second)
	var claimed []floorRow
	if !d.perRowUpdates {
		var err error
		if claimed, err = floorSQLiteRead(ctx, tx, sqliteFloorClaimSet+` RETURNING id, '', attempt`, now, lease); err != nil {
			return nil, err
		}
		if !d.perRowEvents {
			return claimed, floorSQLiteEventsInSQL(ctx, tx, claimed, now)
		}
		return claimed, floorSQLiteEventRows(ctx, tx, floorEvents(claimed, task.StatusExecuting, now))
	} else {
		st, err := tx.PrepareContext(ctx, sqliteFloorClaimRow)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		version := now.Format(sqliteTimeText)
		for _, r := range due {
			res, err := st.ExecContext(ctx, now, now, lease, r.id, r.version)
			if err != nil {
				return nil, err
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return nil, fmt.Errorf("claiming %s: %d rows, %v", r.id, k, err)
			}
			claimed = append(claimed, floorRow{id: r.id, version: version, attempt: r.attempt + 1})
		}
	}
	return claimed, floorSQLiteEventRows(ctx, tx, evs)
}

// floorSQLiteComplete completes up to floorBatch executing tasks (the
// claimed ones, for per-row updates), writes their events, and returns how
// many it completed.
func floorSQLiteComplete(ctx context.Context, tx *sql.Tx, d sqliteFloorDesign, now time.Time, claimed []floorRow, evs []event.Event) (int, error) {
	if !d.perRowUpdates {
		done, err := floorSQLiteRead(ctx, tx, sqliteFloorCompleteSet+` RETURNING id, '', attempt`, now)
		if err != nil {
			return 0, err
		}
		if !d.perRowEvents {
			return len(done), floorSQLiteEventsInSQL(ctx, tx, done, now)
		}
		return len(done), floorSQLiteEventRows(ctx, tx, floorEvents(done, task.StatusCompleted, now))
	}
	st, err := tx.PrepareContext(ctx, sqliteFloorCompleteRow)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	for _, r := range claimed {
		res, err := st.ExecContext(ctx, "completed", now, now, now, now, "floor", nil, "[]", "", "", 0,
			`{"message":"bench"}`, 1.0, "", false, 0, nil, "", r.id, "executing", r.attempt, r.version, r.version)
		if err != nil {
			return 0, err
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			return 0, fmt.Errorf("completing %s: %d rows, %v", r.id, k, err)
		}
	}
	return len(claimed), floorSQLiteEventRows(ctx, tx, evs)
}

// floorEvents builds the events of rows moved to status at now, as
// event.New builds them.
func floorEvents(rows []floorRow, status task.Status, now time.Time) []event.Event {
	evs := make([]event.Event, len(rows))
	for i, r := range rows {
		t := &task.Task{ID: uuid.MustParse(r.id), Type: "echo", Status: status, QueueName: "default", Attempt: r.attempt,
			UpdatedAt: now, StartedAt: &now}
		if status == task.StatusCompleted {
			t.CompletedAt, t.Progress = &now, 1
		}
		evs[i] = event.New(t, event.KindStatus, now)
	}
	return evs
}

// floorSQLiteEventRows inserts the events one prepared statement per row.
func floorSQLiteEventRows(ctx context.Context, tx *sql.Tx, evs []event.Event) error {
	st, err := tx.PrepareContext(ctx, sqliteFloorEventRow)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, ev := range evs {
		if _, err := st.ExecContext(ctx, ev.TaskID.String(), ev.TaskType, ev.EventType, string(ev.Status), "", string(ev.Body), ev.CreatedAt); err != nil {
			return err
		}
	}
	return nil
}

// floorSQLiteEventsInSQL inserts the events of rows with one INSERT …
// SELECT that builds their bodies.
func floorSQLiteEventsInSQL(ctx context.Context, tx *sql.Tx, rows []floorRow, now time.Time) error {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, sqliteFloorEvents, now, string(b))
	return err
}

// querier is a connection or a transaction.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// floorSQLiteRead runs a query of (id, version, attempt) rows.
func floorSQLiteRead(ctx context.Context, db querier, q string, args ...any) ([]floorRow, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []floorRow
	for rows.Next() {
		var r floorRow
		if err := rows.Scan(&r.id, &r.version, &r.attempt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
