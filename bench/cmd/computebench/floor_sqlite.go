package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/task"
)

// On SQLite the floor is the one writer connection's time per task: the
// database runs in this process, so the CPU measured is this process's, and
// the writer is what the engine waits for. Three ways of writing the same
// claims and completions with their events, from the least work to the way
// the store must write them:
//   - set-based: one UPDATE per batch, and the event rows built in SQL by
//     one INSERT … SELECT (not open to the store: the event body is the
//     API's contract and is built in Go by event.New);
//   - events per row: the same updates, the events inserted one prepared
//     statement per row with bodies from event.New, as the store does;
//   - updates per row too: each claim conditional on the row's id and
//     version, each completion setting the columns the store's transition
//     sets, one prepared statement per row, as the store does.

// sqliteFloorDesign is one way of writing the claims and completions.
type sqliteFloorDesign struct {
	Name                        string
	perRowUpdates, perRowEvents bool
}

func sqliteFloorDesigns() []sqliteFloorDesign {
	return []sqliteFloorDesign{
		{Name: "compute: set-based, events built in SQL"},
		{Name: "compute: set-based updates, events per row from event.New", perRowEvents: true},
		{Name: "compute: updates and events per row (as the store writes them)", perRowUpdates: true, perRowEvents: true},
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
	// The rows a batch changed are the ones with its status and time.
	sqliteFloorEvents = `INSERT INTO task_events (task_id, task_type, event_type, status, tenant_id, body, created_at)
		SELECT id, task_type, 'echo_' || status, status, origin_tenant_id, ` + sqliteFloorBody + `, ?2
		FROM tasks WHERE status = ?3 AND updated_at = ?1`
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
// then works them on one writer connection the way d says, and returns
// this process's CPU and the wall time per task, in microseconds.
func floorRunSQLite(ctx context.Context, env *dbEnv, o *options, d sqliteFloorDesign) (cpuMicros, wallMicros float64, err error) {
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
	cpu0 := sampleCPU()
	for done := 0; done < o.n; {
		now := time.Now().UTC()
		if err := inSQLiteTx(ctx, conn, func(tx *sql.Tx) error { return floorSQLiteClaim(ctx, tx, d, now) }); err != nil {
			return 0, 0, fmt.Errorf("claim: %w", err)
		}
		var n int
		err := inSQLiteTx(ctx, conn, func(tx *sql.Tx) (err error) {
			n, err = floorSQLiteComplete(ctx, tx, d, now.Add(time.Microsecond))
			return err
		})
		if err != nil {
			return 0, 0, fmt.Errorf("complete: %w", err)
		}
		if n == 0 {
			return 0, 0, fmt.Errorf("completed %d of %d, then nothing", done, o.n)
		}
		done += n
	}
	cpu1 := sampleCPU()
	if !cpu0.processOK || !cpu1.processOK {
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
	round := func(x float64) float64 { return math.Round(x*10) / 10 }
	return round((cpu1.processSeconds - cpu0.processSeconds) / n * 1e6), round(cpu1.at.Sub(cpu0.at).Seconds() / n * 1e6), nil
}

func inSQLiteTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// floorSQLiteClaim claims up to floorBatch pending tasks and writes their
// events.
func floorSQLiteClaim(ctx context.Context, tx *sql.Tx, d sqliteFloorDesign, now time.Time) error {
	lease := now.Add(30 * time.Second)
	if !d.perRowUpdates {
		if _, err := tx.ExecContext(ctx, sqliteFloorClaimSet, now, lease); err != nil {
			return err
		}
		return floorSQLiteEvents(ctx, tx, d, task.StatusExecuting, now)
	}
	ids, versions, _, err := floorSQLiteRead(ctx, tx, `SELECT id, CAST(updated_at AS TEXT), attempt FROM tasks
		WHERE status = 'pending' AND run_at <= ? ORDER BY priority DESC, run_at, created_at LIMIT 300`, now)
	if err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, sqliteFloorClaimRow)
	if err != nil {
		return err
	}
	defer st.Close()
	for i, id := range ids {
		if _, err := st.ExecContext(ctx, now, now, lease, id, versions[i]); err != nil {
			return err
		}
	}
	return floorSQLiteEvents(ctx, tx, d, task.StatusExecuting, now)
}

// floorSQLiteComplete completes up to floorBatch executing tasks, writes
// their events, and returns how many it completed.
func floorSQLiteComplete(ctx context.Context, tx *sql.Tx, d sqliteFloorDesign, now time.Time) (int, error) {
	n := 0
	if !d.perRowUpdates {
		res, err := tx.ExecContext(ctx, sqliteFloorCompleteSet, now)
		if err != nil {
			return 0, err
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		n = int(k)
	} else {
		ids, versions, attempts, err := floorSQLiteRead(ctx, tx, `SELECT id, CAST(updated_at AS TEXT), attempt FROM tasks
			WHERE status = 'executing' LIMIT 300`)
		if err != nil {
			return 0, err
		}
		st, err := tx.PrepareContext(ctx, sqliteFloorCompleteRow)
		if err != nil {
			return 0, err
		}
		defer st.Close()
		for i, id := range ids {
			res, err := st.ExecContext(ctx, "completed", now, now, now, now, "floor", nil, "[]", "", "", 0,
				`{"message":"bench"}`, 1.0, "", false, 0, nil, "", id, "executing", attempts[i], versions[i], versions[i])
			if err != nil {
				return 0, err
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return 0, fmt.Errorf("completing %s: %d rows, %v", id, k, err)
			}
			n++
		}
	}
	return n, floorSQLiteEvents(ctx, tx, d, task.StatusCompleted, now)
}

// floorSQLiteEvents writes an event for every task the batch at now moved
// to status.
func floorSQLiteEvents(ctx context.Context, tx *sql.Tx, d sqliteFloorDesign, status task.Status, now time.Time) error {
	if !d.perRowEvents {
		_, err := tx.ExecContext(ctx, sqliteFloorEvents, now, now, string(status))
		return err
	}
	ids, _, attempts, err := floorSQLiteRead(ctx, tx, `SELECT id, '', attempt FROM tasks WHERE status = ? AND updated_at = ?`, string(status), now)
	if err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, sqliteFloorEventRow)
	if err != nil {
		return err
	}
	defer st.Close()
	for i, id := range ids {
		t := &task.Task{ID: uuid.MustParse(id), Type: "echo", Status: status, QueueName: "default", Attempt: attempts[i],
			UpdatedAt: now, StartedAt: &now}
		if status == task.StatusCompleted {
			t.CompletedAt, t.Progress = &now, 1
		}
		ev := event.New(t, event.KindStatus, now)
		if _, err := st.ExecContext(ctx, id, ev.TaskType, ev.EventType, string(status), "", string(ev.Body), now); err != nil {
			return err
		}
	}
	return nil
}

// floorSQLiteRead runs a query of (id, version, attempt) rows.
func floorSQLiteRead(ctx context.Context, tx *sql.Tx, q string, args ...any) (ids, versions []string, attempts []int, err error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, v string
			a     int
		)
		if err := rows.Scan(&id, &v, &a); err != nil {
			return nil, nil, nil, err
		}
		ids, versions, attempts = append(ids, id), append(versions, v), append(attempts, a)
	}
	return ids, versions, attempts, rows.Err()
}
