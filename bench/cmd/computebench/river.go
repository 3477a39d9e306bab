package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/computeserver/compute/bench/internal/cpustat"
	"github.com/computeserver/compute/bench/probe"
)

// noopArgs is River's no-op job, the counterpart of an echo task.
type noopArgs struct {
	Message string `json:"message"`
}

// Kind implements river.JobArgs.
func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

// Work implements river.Worker.
func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// probeArgs is River's pickup probe; Token says whom to tell.
type probeArgs struct {
	Token uuid.UUID `json:"token"`
}

// Kind implements river.JobArgs.
func (probeArgs) Kind() string { return "bench_probe" }

type probeWorker struct {
	river.WorkerDefaults[probeArgs]
	rec *probe.Recorder
}

// Work implements river.Worker.
func (w probeWorker) Work(_ context.Context, job *river.Job[probeArgs]) error {
	w.rec.Enter(job.Args.Token, time.Now())
	return nil
}

var discard = slog.New(slog.DiscardHandler)

// pgxTx is the transaction type of River's pgx driver.
type pgxTx = pgx.Tx

// riverDB is River set up on one fresh database: its driver, the schema its
// client is told about, and a handle for checks.
type riverDB[TTx any] struct {
	driver riverdriver.Driver[TTx]
	schema string
	check  *sql.DB
	// table is river_job, qualified by the schema on PostgreSQL.
	table   string
	release func()
}

func openRiverSQLite(ctx context.Context, db *freshDB) (*riverDB[*sql.Tx], error) {
	pool, err := sql.Open("sqlite", sqliteDSN(db.path))
	if err != nil {
		return nil, err
	}
	// River's advice for SQLite, and what our store does: one connection.
	pool.SetMaxOpenConns(1)
	pool.SetMaxIdleConns(1)
	pool.SetConnMaxLifetime(0)
	pool.SetConnMaxIdleTime(0)
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	// Checks go through another handle; WAL lets them read while River
	// writes.
	check, err := db.openSQL()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &riverDB[*sql.Tx]{driver: riversqlite.New(pool), check: check, table: "river_job",
		release: func() { check.Close(); pool.Close() }}, nil
}

func openRiverPostgres(ctx context.Context, db *freshDB, baseURL string, conns int32) (*riverDB[pgxTx], error) {
	cfg, err := pgxpool.ParseConfig(baseURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	check, err := db.openSQL()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &riverDB[pgxTx]{driver: riverpgxv5.New(pool), schema: db.schema, check: check,
		table: db.schema + ".river_job", release: func() { check.Close(); pool.Close() }}, nil
}

func (r *riverDB[TTx]) migrate(ctx context.Context) error {
	m, err := rivermigrate.New(r.driver, &rivermigrate.Config{Schema: r.schema, Logger: discard})
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating river: %w", err)
	}
	return nil
}

func (r *riverDB[TTx]) client(o *options, workers *river.Workers) (*river.Client[TTx], error) {
	return river.NewClient(r.driver, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.riverWorkers}},
		FetchCooldown:     o.riverCooldown,
		FetchPollInterval: o.riverPoll,
		Workers:           workers,
		Logger:            discard,
		Schema:            r.schema,
	})
}

// runRiverThroughput inserts N no-op jobs with InsertMany, then times a
// client working them all, and checks River's table agrees.
func runRiverThroughput(ctx context.Context, env *dbEnv, kind string, o *options, run int) (throughputResult, error) {
	db, err := env.fresh(ctx, kind, "river")
	if err != nil {
		return throughputResult{}, err
	}
	defer db.cleanup()
	if kind == dbSQLite {
		r, err := openRiverSQLite(ctx, db)
		if err != nil {
			return throughputResult{}, err
		}
		defer r.release()
		return riverThroughput(ctx, r, kind, o, run)
	}
	r, err := openRiverPostgres(ctx, db, env.pgURL, int32(o.riverConns))
	if err != nil {
		return throughputResult{}, err
	}
	defer r.release()
	return riverThroughput(ctx, r, kind, o, run)
}

// insertRiverJobs inserts o.n no-op jobs with InsertMany, in batches of
// o.insertBatch.
func insertRiverJobs[TTx any](ctx context.Context, client *river.Client[TTx], o *options) error {
	for i := 0; i < o.n; i += o.insertBatch {
		params := make([]river.InsertManyParams, 0, o.insertBatch)
		for j := i; j < min(i+o.insertBatch, o.n); j++ {
			params = append(params, river.InsertManyParams{Args: noopArgs{Message: fmt.Sprintf("bench %d", j)}})
		}
		if _, err := client.InsertMany(ctx, params); err != nil {
			return fmt.Errorf("inserting river jobs: %w", err)
		}
	}
	return nil
}

func riverThroughput[TTx any](ctx context.Context, r *riverDB[TTx], kind string, o *options, run int) (throughputResult, error) {
	res := throughputResult{System: "river", DB: kind, Run: run, N: o.n}
	if err := r.migrate(ctx); err != nil {
		return res, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	client, err := r.client(o, workers)
	if err != nil {
		return res, err
	}
	res.Settings = fmt.Sprintf("MaxWorkers=%d FetchCooldown=%s FetchPollInterval=%s, InsertMany batches of %d",
		o.riverWorkers, o.riverCooldown, o.riverPoll, o.insertBatch)
	if kind == dbPostgres {
		res.Settings += fmt.Sprintf(", pgxpool MaxConns=%d", o.riverConns)
	}

	start := time.Now()
	if err := insertRiverJobs(ctx, client, o); err != nil {
		return res, err
	}
	res.InsertSeconds = time.Since(start).Seconds()
	res.InsertPerSec = float64(o.n) / res.InsertSeconds

	// River sends completion events after the completer has written them.
	events, cancel := client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: o.n + 1000, Kinds: []river.EventKind{river.EventKindJobCompleted},
	})
	defer cancel()
	stopProfile := o.profile(fmt.Sprintf("throughput-river-%s-%d", kind, run))
	cpu0 := cpustat.Now()
	start = time.Now()
	if err := client.Start(ctx); err != nil {
		stopProfile()
		return res, err
	}
	got := 0
	deadline := time.After(o.timeout)
wait:
	for got < o.n {
		select {
		case <-events:
			got++
		case <-deadline:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	elapsed := time.Since(start)
	res.CPU = cpustat.Between(cpu0, cpustat.Now())
	stopProfile()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 30*time.Second)
	_ = client.Stop(stopCtx)
	stopCancel()
	if got < o.n {
		return res, fmt.Errorf("river: only %d of %d jobs completed within %s", got, o.n, o.timeout)
	}
	res.WorkSeconds = elapsed.Seconds()
	res.PerSec = float64(o.n) / res.WorkSeconds
	completed, err := countWhere(ctx, r.check, `SELECT COUNT(*) FROM `+r.table+` WHERE state = 'completed'`)
	if err != nil {
		return res, err
	}
	res.Check = fmt.Sprintf("completed=%d", completed)
	if completed != o.n {
		return res, fmt.Errorf("river on %s: %d jobs completed, want %d", kind, completed, o.n)
	}
	return res, nil
}

// runRiverPickup measures River's pickup at light load: one job at a time,
// inserted with Insert, from the call's return to the worker's first line.
func runRiverPickup(ctx context.Context, env *dbEnv, kind string, o *options) (pickupResult, error) {
	db, err := env.fresh(ctx, kind, "riverpick")
	if err != nil {
		return pickupResult{}, err
	}
	defer db.cleanup()
	if kind == dbSQLite {
		r, err := openRiverSQLite(ctx, db)
		if err != nil {
			return pickupResult{}, err
		}
		defer r.release()
		return riverPickup(ctx, r, kind, o)
	}
	r, err := openRiverPostgres(ctx, db, env.pgURL, int32(o.riverConns))
	if err != nil {
		return pickupResult{}, err
	}
	defer r.release()
	return riverPickup(ctx, r, kind, o)
}

func riverPickup[TTx any](ctx context.Context, r *riverDB[TTx], kind string, o *options) (pickupResult, error) {
	res := pickupResult{System: "river", DB: kind, Variant: "same client"}
	if err := r.migrate(ctx); err != nil {
		return res, err
	}
	rec := probe.NewRecorder()
	workers := river.NewWorkers()
	river.AddWorker(workers, &probeWorker{rec: rec})
	po := *o
	// Light load: 8 workers, and a short cooldown so that River's fetch
	// after a wake-up is not held back (its throughput setting is tuned
	// for batches, not latency).
	po.riverWorkers, po.riverCooldown = 8, min(o.riverCooldown, 10*time.Millisecond)
	client, err := r.client(&po, workers)
	if err != nil {
		return res, err
	}
	res.Settings = fmt.Sprintf("MaxWorkers=%d FetchCooldown=%s FetchPollInterval=%s", po.riverWorkers, po.riverCooldown, po.riverPoll)
	if err := client.Start(ctx); err != nil {
		return res, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	}()
	time.Sleep(500 * time.Millisecond) // let the producer and its listener settle
	create := func(ctx context.Context, token uuid.UUID) error {
		_, err := client.Insert(ctx, probeArgs{Token: token}, nil)
		return err
	}
	res.samples, err = samplePickups(ctx, o, rec, create)
	if err != nil {
		return res, err
	}
	res.summarise()
	return res, nil
}

// percentile returns the p-th percentile (0–100) of sorted values, nearest
// rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func sortedCopy(v []float64) []float64 {
	out := append([]float64(nil), v...)
	sort.Float64s(out)
	return out
}
