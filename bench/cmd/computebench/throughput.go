package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/bench/internal/cpustat"
	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// throughputResult is one run of one system working N no-op jobs.
type throughputResult struct {
	System string `json:"system"`
	DB     string `json:"db"`
	Run    int    `json:"run"`
	N      int    `json:"n"`
	// InsertSeconds is how long inserting the N jobs took, in batches.
	InsertSeconds float64 `json:"insert_seconds"`
	InsertPerSec  float64 `json:"insert_per_sec"`
	// WorkSeconds runs from the worker's start to the last durable
	// completion.
	WorkSeconds float64 `json:"work_seconds"`
	PerSec      float64 `json:"per_sec"`
	Settings    string  `json:"settings"`
	Check       string  `json:"check"`
	// CPU is how busy the machine and this process were while working.
	CPU cpustat.Use `json:"cpu"`
	// Engine is what the compute engine's claims and completions looked
	// like (ours only).
	Engine *engineStats `json:"engine,omitempty"`
}

// newEchoRecord builds a pending echo task the way the API's newTask does
// for a body with only a message.
func newEchoRecord(def *registry.Definition, msg string) *store.Record {
	now := task.Now()
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	t := &task.Task{
		ID: id, Type: def.Name, Status: task.StatusPending,
		ProviderType: def.DefaultProvider, QueueName: def.DefaultQueue,
		CreatedAt: now, UpdatedAt: now, RunAt: now,
		Errors: []task.Error{}, MaxAttempts: def.MaxAttempts, TimeoutSeconds: int(def.Timeout / time.Second),
	}
	return &store.Record{Task: t, Fields: &echo.Fields{Message: msg}, Def: def}
}

// openOurs opens and migrates the compute store at dsn with the given task
// types registered.
func openOurs(ctx context.Context, dsn string, types ...registry.Declaration) (*sqlstore.Store, *registry.Registry, error) {
	reg := registry.New()
	for _, d := range types {
		if err := reg.Register(d); err != nil {
			return nil, nil, err
		}
	}
	st, err := sqlstore.Open(ctx, dsn, reg, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, reg, nil
}

// createEchoTasks creates o.n pending echo tasks with CreateTasks, in
// batches of o.insertBatch.
func createEchoTasks(ctx context.Context, st *sqlstore.Store, reg *registry.Registry, o *options) error {
	def, ok := reg.Lookup(echo.Name)
	if !ok {
		return fmt.Errorf("the echo type is not registered")
	}
	for i := 0; i < o.n; i += o.insertBatch {
		recs := make([]*store.Record, 0, o.insertBatch)
		for j := i; j < min(i+o.insertBatch, o.n); j++ {
			recs = append(recs, newEchoRecord(def, fmt.Sprintf("bench %d", j)))
		}
		if err := st.CreateTasks(ctx, recs); err != nil {
			return fmt.Errorf("creating tasks: %w", err)
		}
	}
	return nil
}

// runOursThroughput creates N echo tasks with CreateTasks, then times an
// engine working them all, and checks every task completed with its three
// events.
func runOursThroughput(ctx context.Context, env *dbEnv, kind string, o *options, run int) (throughputResult, error) {
	res := throughputResult{System: "compute", DB: kind, Run: run, N: o.n}
	db, err := env.fresh(ctx, kind, "compute")
	if err != nil {
		return res, err
	}
	defer db.cleanup()
	st, reg, err := openOurs(ctx, db.dsn, echo.Type())
	if err != nil {
		return res, err
	}
	defer st.Close()

	stopProfile := o.profile(fmt.Sprintf("insert-compute-%s-%d", kind, run))
	start := time.Now()
	if err := createEchoTasks(ctx, st, reg, o); err != nil {
		return res, err
	}
	res.InsertSeconds = time.Since(start).Seconds()
	res.InsertPerSec = float64(o.n) / res.InsertSeconds
	stopProfile()

	concurrency := o.oursConcurrency(kind)
	cfg := queue.Config{
		Instance: "computebench", Concurrency: concurrency, PollInterval: o.oursPoll,
		ShutdownGrace: 10 * time.Second, Completers: o.oursCompleters,
	}
	res.Settings = fmt.Sprintf("Concurrency=%d PollInterval=%s, CreateTasks batches of %d", concurrency, o.oursPoll, o.insertBatch)
	cs := newCountingStore(st, o.n)
	eng := queue.New(cfg, cs, reg, nil, nil)
	stopProfile = o.profile(fmt.Sprintf("throughput-compute-%s-%d", kind, run))
	cpu0 := cpustat.Now()
	start = time.Now()
	if err := eng.Start(ctx); err != nil {
		stopProfile()
		return res, err
	}
	select {
	case <-cs.done:
	case <-time.After(o.timeout):
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	res.CPU = cpustat.Between(cpu0, cpustat.Now())
	stopProfile()
	eng.Stop()
	got := cs.completed.Load()
	if got < int64(o.n) {
		return res, fmt.Errorf("only %d of %d tasks completed within %s", got, o.n, o.timeout)
	}
	res.WorkSeconds = elapsed.Seconds()
	res.PerSec = float64(o.n) / res.WorkSeconds
	stats := cs.stats(elapsed)
	res.Engine = &stats

	check, err := db.openSQL()
	if err != nil {
		return res, err
	}
	defer check.Close()
	completed, err := countWhere(ctx, check, `SELECT COUNT(*) FROM tasks WHERE status = 'completed'`)
	if err != nil {
		return res, err
	}
	events := map[string]int{}
	rows, err := check.QueryContext(ctx, `SELECT status, COUNT(*) FROM task_events GROUP BY status`)
	if err != nil {
		return res, err
	}
	total := 0
	for rows.Next() {
		var (
			s string
			n int
		)
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return res, err
		}
		events[s] = n
		total += n
	}
	rows.Close()
	res.Check = fmt.Sprintf("completed=%d events=%d (pending=%d executing=%d completed=%d)",
		completed, total, events["pending"], events["executing"], events["completed"])
	if completed != o.n || total != 3*o.n || events["pending"] != o.n || events["executing"] != o.n || events["completed"] != o.n {
		return res, fmt.Errorf("compute on %s: check failed: %s, want %d completed and %d events", kind, res.Check, o.n, 3*o.n)
	}
	return res, nil
}
