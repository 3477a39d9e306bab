package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/bench/probe"
	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
)

// Pickup variants.
const (
	variantSameStore     = "same store"
	variantSeparateStore = "separate creator store"
)

// pickupResult summarises one pickup-latency series.
type pickupResult struct {
	System   string `json:"system"`
	DB       string `json:"db"`
	Variant  string `json:"variant"`
	Settings string `json:"settings"`
	Samples  int    `json:"samples"`
	Timeouts int    `json:"timeouts"`
	// Pickup runs from the create call's return to the processor's (or
	// worker's) first line.
	P50MS float64 `json:"p50_ms"`
	P90MS float64 `json:"p90_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// CreateP50MS is the create call's own duration.
	CreateP50MS float64 `json:"create_p50_ms"`
	// StoredP50MS and StoredP99MS are started_at − created_at as the store
	// wrote them (ours only): they include the create transaction.
	StoredP50MS float64 `json:"stored_p50_ms,omitempty"`
	StoredP99MS float64 `json:"stored_p99_ms,omitempty"`

	samples []pickupSample
}

type pickupSample struct {
	callStart, callEnd, entered time.Time
}

func (r *pickupResult) summarise() {
	var pick, create []float64
	for _, s := range r.samples {
		pick = append(pick, ms(max(0, s.entered.Sub(s.callEnd))))
		create = append(create, ms(s.callEnd.Sub(s.callStart)))
	}
	r.Samples = len(pick)
	pick, create = sortedCopy(pick), sortedCopy(create)
	r.P50MS, r.P90MS, r.P99MS = percentile(pick, 50), percentile(pick, 90), percentile(pick, 99)
	if len(pick) > 0 {
		r.MaxMS = pick[len(pick)-1]
	}
	r.CreateP50MS = percentile(create, 50)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// samplePickups creates one job at a time at o.pickupRate per second and
// waits for each to be picked up; the first o.pickupWarmup samples are not
// kept.
func samplePickups(ctx context.Context, o *options, rec *probe.Recorder, create func(context.Context, uuid.UUID) error) ([]pickupSample, error) {
	interval := time.Duration(float64(time.Second) / o.pickupRate)
	var out []pickupSample
	timeouts := 0
	next := time.Now()
	for i := 0; i < o.pickupSamples+o.pickupWarmup; i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		token, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		entered := rec.Expect(token)
		s := pickupSample{callStart: time.Now()}
		if err := create(ctx, token); err != nil {
			return nil, fmt.Errorf("creating probe %d: %w", i, err)
		}
		s.callEnd = time.Now()
		select {
		case s.entered = <-entered:
		case <-time.After(5 * time.Second):
			rec.Forget(token)
			timeouts++
			if timeouts > 3 {
				return nil, fmt.Errorf("probes are not picked up (%d timeouts of 5s)", timeouts)
			}
			continue
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if i >= o.pickupWarmup {
			out = append(out, s)
		}
	}
	if timeouts > 0 {
		return out, fmt.Errorf("%d probes were not picked up within 5s", timeouts)
	}
	return out, nil
}

// newProbeRecord builds a pending bench_probe task with the given id.
func newProbeRecord(def *registry.Definition, id uuid.UUID) *store.Record {
	now := task.Now()
	t := &task.Task{
		ID: id, Type: def.Name, Status: task.StatusPending,
		ProviderType: def.DefaultProvider, QueueName: def.DefaultQueue,
		CreatedAt: now, UpdatedAt: now, RunAt: now,
		Errors: []task.Error{}, MaxAttempts: def.MaxAttempts, TimeoutSeconds: int(def.Timeout / time.Second),
	}
	return &store.Record{Task: t, Fields: &probe.Fields{Label: "pickup"}, Def: def}
}

// runOursPickup measures pickup at light load: an idle engine (polling only
// every o.pickupPoll, so a fast pickup must come from a wake-up) and one
// probe task created at a time through CreateTask, by the engine's own store
// or by a second store with its own connections (variantSeparateStore), as
// another API process would.
func runOursPickup(ctx context.Context, env *dbEnv, kind, variant string, o *options) (pickupResult, error) {
	res := pickupResult{System: "compute", DB: kind, Variant: variant}
	db, err := env.fresh(ctx, kind, "computepick")
	if err != nil {
		return res, err
	}
	defer db.cleanup()
	rec := probe.NewRecorder()
	st, reg, err := openOurs(ctx, db.dsn, probe.Type(rec))
	if err != nil {
		return res, err
	}
	defer st.Close()
	creator := st
	if variant == variantSeparateStore {
		creator, err = sqlstore.Open(ctx, db.dsn, reg, nil)
		if err != nil {
			return res, err
		}
		defer creator.Close()
	}
	def, _ := reg.Lookup(probe.Name)
	eng := queue.New(queue.Config{Instance: "computebench-pickup", Concurrency: 8, PollInterval: o.pickupPoll}, st, reg, nil, nil)
	res.Settings = fmt.Sprintf("Concurrency=8 PollInterval=%s; %d samples at %.0f/s", o.pickupPoll, o.pickupSamples, o.pickupRate)
	if err := eng.Start(ctx); err != nil {
		return res, err
	}
	defer eng.Stop()
	time.Sleep(500 * time.Millisecond) // let the LISTEN connection come up
	create := func(ctx context.Context, id uuid.UUID) error {
		_, _, err := creator.CreateTask(ctx, newProbeRecord(def, id))
		return err
	}
	res.samples, err = samplePickups(ctx, o, rec, create)
	if err != nil {
		return res, err
	}
	res.summarise()

	check, err := db.openSQL()
	if err != nil {
		return res, err
	}
	defer check.Close()
	stored, err := storedPickups(ctx, check)
	if err != nil {
		return res, err
	}
	res.StoredP50MS, res.StoredP99MS = percentile(stored, 50), percentile(stored, 99)
	return res, nil
}

// storedPickups returns started_at − created_at of every probe task, in
// milliseconds, sorted.
func storedPickups(ctx context.Context, db *sql.DB) ([]float64, error) {
	rows, err := db.QueryContext(ctx, `SELECT created_at, started_at FROM tasks WHERE task_type = 'bench_probe' AND started_at IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []float64
	for rows.Next() {
		var created, started time.Time
		if err := rows.Scan(&created, &started); err != nil {
			return nil, err
		}
		out = append(out, ms(started.Sub(created)))
	}
	return sortedCopy(out), rows.Err()
}
