package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/computeserver/compute/internal/tasks/echo"
)

// The floor phase measures what the database server alone spends per task
// on the writes a design requires, with no worker process at all: one
// connection runs the claim and the completion as single statements over
// batches of floorBatch rows, the event rows built inside the statement,
// and the PostgreSQL backend's own CPU time is read from /proc before and
// after. No client-side work, no round trip per row, no locks between
// writers: it is a lower bound for the server's share, to set beside the
// machine's whole CPU budget at a target rate.

// floorBatch is the rows per claim and per completion, about the batch
// sizes both engines reach under load.
const floorBatch = 300

// floorDesign is one schema with the two statements that work it.
type floorDesign struct {
	Name string
	// claim moves up to floorBatch due rows to running, complete moves up
	// to floorBatch running rows to done; both return no rows.
	claim, complete string
	// events is how many event rows a task gets from claim and complete.
	events int
}

// Our claim and completion as one statement each: the claim's update sets
// the columns the store's claim sets; the completion sets those a success
// changes (the store's transition writes all 18 of its columns, from a JSON
// batch, on condition of status, attempt and version); an event row per
// task with a body of the fields event.New writes. Simpler than the store's
// statements, so a lower bound, as River's two statements below are for
// River's (its fetch returns the rows, its completer unnests 12 arrays).
const (
	floorOursEventBody = `json_build_object('event_type', %s, 'task_id', id, 'task_type', task_type,
		'status', status, 'entity_id', id::text, 'origin_instance', origin_instance, 'origin_zone', origin_zone,
		'origin_version', 'dev', 'timestamp', updated_at, 'metadata', json_build_object('attempt', attempt),
		'progress', progress, 'started_at', started_at, 'completed_at', completed_at)`
	floorOursClaimPick = `WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE status = 'pending' AND run_at <= now()
			ORDER BY priority DESC, run_at, created_at LIMIT 300 FOR UPDATE SKIP LOCKED)`
	floorOursClaimSet = `UPDATE tasks SET status = 'executing', executor_instance = 'floor', started_at = COALESCE(started_at, now()),
			updated_at = now(), lease_expires_at = now() + interval '30 seconds', attempt = attempt + 1
			WHERE id IN (SELECT id FROM picked) AND status = 'pending'`
	floorOursCompletePick = `WITH locked AS MATERIALIZED (SELECT id FROM tasks WHERE status = 'executing' ORDER BY id LIMIT 300 FOR UPDATE)`
	floorOursCompleteSet  = `UPDATE tasks SET status = 'completed', progress = 1, completed_at = now(), updated_at = now(),
			lease_expires_at = NULL, result = '{"message":"bench"}'
			WHERE id IN (SELECT id FROM locked) AND status = 'executing'`
	floorOursEventInsert = `
		INSERT INTO task_events (task_id, task_type, event_type, status, tenant_id, body, created_at)
		SELECT id, task_type, %s, status, origin_tenant_id, ` + floorOursEventBody + `, now() FROM upd`
)

func floorDesigns() []floorDesign {
	return []floorDesign{
		{
			Name: "compute: tasks row + event row per change",
			claim: floorOursClaimPick + `, upd AS (` + floorOursClaimSet + ` RETURNING *)` +
				fmt.Sprintf(floorOursEventInsert, "'task.executing'", "'task.executing'"),
			complete: floorOursCompletePick + `, upd AS (` + floorOursCompleteSet + ` RETURNING *)` +
				fmt.Sprintf(floorOursEventInsert, "'task.completed'", "'task.completed'"),
			events: 2,
		},
		{
			Name:     "compute: tasks row only (no events)",
			claim:    floorOursClaimPick + " " + floorOursClaimSet,
			complete: floorOursCompletePick + " " + floorOursCompleteSet,
		},
		{
			// River's fetch (riverdriver's JobGetAvailable, its locking CTE
			// and update) and its completer's batched update.
			Name: "River: fetch + complete",
			claim: `WITH locked_jobs AS (SELECT * FROM river_job WHERE state = 'available' AND queue = 'default'
					AND scheduled_at <= now() ORDER BY priority ASC, scheduled_at ASC, id ASC LIMIT 300 FOR UPDATE SKIP LOCKED)
				UPDATE river_job SET state = 'running', attempt = river_job.attempt + 1, attempted_at = now(),
					attempted_by = array_append(river_job.attempted_by, 'floor')
				FROM locked_jobs WHERE river_job.id = locked_jobs.id`,
			complete: `WITH j AS MATERIALIZED (SELECT id FROM river_job WHERE state = 'running' ORDER BY id LIMIT 300 FOR UPDATE)
				UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id IN (SELECT id FROM j)`,
		},
		{
			// Not a design we have: a narrow queue table (8 columns, 3
			// indexes, bigint ids) with a narrow event row, to show what
			// the wide task row and its indexes cost.
			Name: "a narrow queue table + event row per change",
			claim: `WITH picked AS MATERIALIZED (SELECT id FROM floor_queue WHERE status = 'pending' AND run_at <= now()
					ORDER BY priority DESC, run_at LIMIT 300 FOR UPDATE SKIP LOCKED),
				upd AS (UPDATE floor_queue SET status = 'executing', updated_at = now(), lease_expires_at = now() + interval '30 seconds',
					attempt = attempt + 1 WHERE id IN (SELECT id FROM picked) RETURNING *)
				INSERT INTO floor_events (task_id, body) SELECT id, json_build_object('status', status, 'attempt', attempt) FROM upd`,
			complete: `WITH upd AS (UPDATE floor_queue SET status = 'completed', updated_at = now(), lease_expires_at = NULL,
					result = '{"message":"bench"}' WHERE id IN (SELECT id FROM floor_queue WHERE status = 'executing' LIMIT 300) RETURNING *)
				INSERT INTO floor_events (task_id, body) SELECT id, json_build_object('status', status, 'attempt', attempt) FROM upd`,
			events: 2,
		},
	}
}

// floorResult is the CPU one design's statements took per task.
type floorResult struct {
	DB     string `json:"db"`
	Design string `json:"design"`
	N      int    `json:"n"`
	Batch  int    `json:"batch"`
	// CPUMicros is the median over runs of the user+system CPU per task,
	// in microseconds: the PostgreSQL backend's, or on SQLite this
	// process's. WallMicros is the elapsed time per task on PostgreSQL, and
	// on SQLite the time the writer connection held its transactions.
	CPUMicros  float64   `json:"cpu_us_per_task"`
	WallMicros float64   `json:"wall_us_per_task"`
	Runs       []float64 `json:"runs_cpu_us"`
}

// runFloor measures every design of each database in o.dbs.
func runFloor(ctx context.Context, env *dbEnv, o *options) ([]floorResult, error) {
	var out []floorResult
	for _, kind := range o.dbs {
		var (
			res []floorResult
			err error
		)
		if kind == dbPostgres {
			res, err = runFloorPostgres(ctx, env, o)
		} else {
			res, err = runFloorSQLite(ctx, env, o)
		}
		out = append(out, res...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// runFloorPostgres measures every design o.runs times on fresh schemas.
func runFloorPostgres(ctx context.Context, env *dbEnv, o *options) ([]floorResult, error) {
	var out []floorResult
	for i, d := range floorDesigns() {
		res, err := measureFloor(ctx, o, dbPostgres, d.Name, func() (float64, float64, error) { return floorRun(ctx, env, o, i, d) })
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// measureFloor runs one design o.runs times and reports the medians.
func measureFloor(ctx context.Context, o *options, db, name string, run func() (cpuMicros, wallMicros float64, err error)) (floorResult, error) {
	res := floorResult{DB: db, Design: name, N: o.n, Batch: floorBatch}
	var walls []float64
	for r := 1; r <= o.runs && ctx.Err() == nil; r++ {
		cpu, wall, err := run()
		if err != nil {
			return res, fmt.Errorf("floor on %s, %s: %w", db, name, err)
		}
		cpu, wall = math.Round(cpu*10)/10, math.Round(wall*10)/10
		res.Runs = append(res.Runs, cpu)
		walls = append(walls, wall)
	}
	res.CPUMicros, res.WallMicros = median(res.Runs), median(walls)
	logf("floor %-8s %-62s %6.1f µs CPU per task (runs %v), %6.1f µs wall or writer", db, name, res.CPUMicros, res.Runs, res.WallMicros)
	return res, nil
}

// floorRun seeds a fresh schema with o.n due rows for design number i,
// then works them all on one connection and returns the backend's CPU and
// the wall time per task, in microseconds.
func floorRun(ctx context.Context, env *dbEnv, o *options, i int, d floorDesign) (cpuMicros, wallMicros float64, err error) {
	db, err := env.fresh(ctx, dbPostgres, "floor")
	if err != nil {
		return 0, 0, err
	}
	defer db.cleanup()
	table, err := floorSeed(ctx, db, env, o, i)
	if err != nil {
		return 0, 0, fmt.Errorf("seeding: %w", err)
	}
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	for _, q := range []string{`VACUUM ANALYZE ` + table, `CHECKPOINT`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", q, err)
		}
	}
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return 0, 0, err
	}
	cpu0, err := backendCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for done := 0; done < o.n; {
		if _, err := conn.Exec(ctx, d.claim); err != nil {
			return 0, 0, fmt.Errorf("claim: %w", err)
		}
		tag, err := conn.Exec(ctx, d.complete)
		if err != nil {
			return 0, 0, fmt.Errorf("complete: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return 0, 0, fmt.Errorf("completed %d of %d, then nothing", done, o.n)
		}
		done += int(tag.RowsAffected())
	}
	wall := time.Since(start)
	cpu1, err := backendCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	if err := floorCheck(ctx, conn, table, o.n, d.events); err != nil {
		return 0, 0, err
	}
	n := float64(o.n)
	return float64(cpu1-cpu0) / n / float64(time.Microsecond), float64(wall) / n / float64(time.Microsecond), nil
}

// floorSeed creates design i's tables in db with o.n due rows and returns
// the queue table's name. Ours and River's are made by their own code.
func floorSeed(ctx context.Context, db *freshDB, env *dbEnv, o *options, i int) (string, error) {
	switch i {
	case 0, 1:
		return "tasks", seedOurs(ctx, db.dsn, o)
	case 2:
		r, err := openRiverPostgres(ctx, db, env.pgURL, 4)
		if err != nil {
			return "", err
		}
		defer r.release()
		if err := r.migrate(ctx); err != nil {
			return "", err
		}
		workers := river.NewWorkers()
		river.AddWorker(workers, &noopWorker{})
		client, err := r.client(o, workers)
		if err != nil {
			return "", err
		}
		if err := insertRiverJobs(ctx, client, o); err != nil {
			return "", err
		}
		return "river_job", nil
	default:
		conn, err := pgx.Connect(ctx, db.dsn)
		if err != nil {
			return "", err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `
			CREATE TABLE floor_queue (id bigint PRIMARY KEY, status text NOT NULL, priority int NOT NULL DEFAULT 0,
				run_at timestamptz NOT NULL, attempt int NOT NULL DEFAULT 0, lease_expires_at timestamptz,
				updated_at timestamptz NOT NULL, result jsonb);
			CREATE INDEX floor_queue_claim ON floor_queue (priority DESC, run_at) WHERE status = 'pending';
			CREATE INDEX floor_queue_running ON floor_queue (id) WHERE status = 'executing';
			CREATE TABLE floor_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, task_id bigint NOT NULL, body json NOT NULL);
			CREATE INDEX floor_events_task ON floor_events (task_id, id);
			INSERT INTO floor_queue (id, status, run_at, updated_at) SELECT g, 'pending', now(), now() FROM generate_series(1, `+strconv.Itoa(o.n)+`) g`)
		return "floor_queue", err
	}
}

// seedOurs creates o.n pending echo tasks through the store, as the
// throughput phase does, in the fresh database at dsn.
func seedOurs(ctx context.Context, dsn string, o *options) error {
	st, reg, err := openOurs(ctx, dsn, echo.Type())
	if err != nil {
		return err
	}
	defer st.Close()
	return createEchoTasks(ctx, st, reg, o)
}

// floorCheck makes sure the statements did the work: every row finished,
// with the events the design writes.
func floorCheck(ctx context.Context, conn *pgx.Conn, table string, n, events int) error {
	col, done, evTable := "status", "completed", "floor_events"
	switch table {
	case "river_job":
		col = "state"
	case "tasks":
		evTable = "task_events WHERE status <> 'pending'"
	}
	var got int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE `+col+` = $1`, done).Scan(&got); err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("check: %d of %d rows completed", got, n)
	}
	if events == 0 {
		return nil
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+evTable).Scan(&got); err != nil {
		return err
	}
	if got != events*n {
		return fmt.Errorf("check: %d event rows, want %d", got, events*n)
	}
	return nil
}

// backendCPU is the user+system CPU time the process pid has used, from
// /proc: the database server must run on this machine.
func backendCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("the floor phase reads the PostgreSQL backend's CPU from /proc, so the server must be local: %w", err)
	}
	// The command name (field 2) may hold spaces; fields after its
	// closing parenthesis start at field 3.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime: fields 14 and 15
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	// USER_HZ is 100 on Linux for every architecture Go supports here.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// median returns the median of xs (the lower middle for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// floorBudget is the whole machine's CPU time per task, in microseconds, at
// 1.2× River's median PostgreSQL throughput in rep: what the server and the
// worker process together may spend per task for the target to be possible.
func floorBudget(rep *report) (rate, micros float64, ok bool) {
	river, _, found := medianThroughput(rep.Throughput, "river", dbPostgres)
	if !found || river.PerSec <= 0 {
		return 0, 0, false
	}
	rate = 1.2 * river.PerSec
	return rate, float64(rep.Machine.CPUs) / rate * 1e6, true
}

// floorWriterBudget is the SQLite writer's time per task, in microseconds,
// at 5x River's median SQLite throughput in rep: one connection writes
// everything, so that is all the time it may take.
func floorWriterBudget(rep *report) (rate, micros float64, ok bool) {
	river, _, found := medianThroughput(rep.Throughput, "river", dbSQLite)
	if !found || river.PerSec <= 0 {
		return 0, 0, false
	}
	rate = 5 * river.PerSec
	return rate, 1e6 / rate, true
}
