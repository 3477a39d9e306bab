package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/computeserver/compute/bench/internal/cpustat"
	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// The storm phase re-measures issue 10 §4's replay storm: admin creates
// over HTTP against the real server (app.New, API only, on a loopback
// port), first alone, then while one SSE client per tenant key reconnects
// in a loop to GET /api/v1/events with Last-Event-ID: 0 and reads until it
// has caught up with its tenant's log.
//
//	cd bench && go run ./cmd/scalebench -phase storm -json results/storm.json

// stormOptions are the -storm-* flags.
type stormOptions struct {
	events, clients  int
	duration, warmup time.Duration
	// connTimeout bounds one stream connection.
	connTimeout time.Duration
	// profile, when set, is where the measured run during the storm
	// writes a CPU profile (of the first database's first storm).
	profile string
	// quietWait is how long each pair waits for the rest of the machine
	// to use under 25 % of one CPU.
	quietWait time.Duration
	// rounds is how many alone/storm pairs the indexed case measures.
	rounds int
	// oneKey also runs the storm with every stream on one tenant's key.
	oneKey bool
}

func (s *stormOptions) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.events, "storm-events", 440_000, "storm: events in the log, 4 per completed task, over -tenants tenants (one stream per tenant)")
	fs.IntVar(&s.clients, "storm-clients", 16, "storm: concurrent admin create clients")
	fs.DurationVar(&s.duration, "storm-duration", 10*time.Second, "storm: measured time of each create run")
	fs.DurationVar(&s.warmup, "storm-warmup", 2*time.Second, "storm: unmeasured creates (and streams) before each measured run")
	fs.DurationVar(&s.quietWait, "storm-quiet-wait", 20*time.Second, "storm: longest wait before each pair for the rest of the machine to use under 25% of one CPU")
	fs.IntVar(&s.rounds, "storm-rounds", 1, "storm: alone/storm pairs measured with every index; the table shows the pair of the median ratio")
	fs.BoolVar(&s.oneKey, "storm-one-key", false, "storm: then run it again with every stream on the first tenant's key (the per-key replay limit's case)")
	fs.StringVar(&s.profile, "storm-cpuprofile", "", "storm: write a CPU profile of the first measured run during the storm to this file")
	fs.DurationVar(&s.connTimeout, "storm-conn-timeout", 60*time.Second, "storm: longest a stream connection may stay open before it is counted as an error")
}

// stormRun is one pair of create runs, alone and during the storm.
type stormRun struct {
	Alone   createRun `json:"creates_alone"`
	Storm   createRun `json:"creates_during_storm"`
	Streams streamRun `json:"streams"`
	// Ratio is the create rate during the storm over the rate alone.
	Ratio float64 `json:"ratio"`
	// OtherCPUBeforePct is what the rest of the machine used just
	// before the pair, in percent of one CPU.
	OtherCPUBeforePct float64 `json:"other_cpu_before_pct"`
}

// created is the number of 201s of the run, warm-ups included.
func (r stormRun) created() int {
	return r.Alone.Created + r.Alone.Warm + r.Storm.Created + r.Storm.Warm
}

// stormReport is what one database's storm measured.
type stormReport struct {
	DB              string  `json:"db"`
	SeedSeconds     float64 `json:"seed_seconds"`
	Events          int     `json:"events"`
	Tenants         int     `json:"tenants"`
	EventsPerTenant int     `json:"events_per_tenant"`
	ListConns       int     `json:"list_conns"`
	// Indexed is with every migration; Baseline (-baseline) without the
	// list_indexes indexes.
	Indexed  stormRun  `json:"with_indexes"`
	Baseline *stormRun `json:"without_list_indexes,omitempty"`
	// IndexedRounds are every round of Indexed (-storm-rounds), which is
	// the one of the median ratio.
	IndexedRounds []stormRun `json:"with_indexes_rounds,omitempty"`
	// OneKey (-storm-one-key) is with every index, every stream on the
	// first tenant's key.
	OneKey *stormRun `json:"one_key,omitempty"`
	// Check compares the tasks stored with the 201s counted.
	Check string `json:"check"`
}

func runStorm(ctx context.Context, o *options) error {
	load := cpustat.Load1()
	reports, errs := perDB(ctx, o, runStormDB)
	fmt.Print(stormMarkdown(o, reports))
	errs = append(errs, saveJSON(o, map[string]any{"events": o.storm.events, "tenants": o.tenants, "create_clients": o.storm.clients,
		"seconds": o.storm.duration.Seconds(), "one_key": o.storm.oneKey, "rounds": o.storm.rounds, "warmup_seconds": o.storm.warmup.Seconds(), "load1_at_start": load}, reports))
	return errors.Join(errs...)
}

// tenantLog is one tenant's part of the seeded log: what a replay from 0
// must deliver.
type tenantLog struct {
	key    string
	lastID int64
	count  int
}

func runStormDB(ctx context.Context, o *options, kind string) (stormReport, error) {
	rep := stormReport{DB: kind, Events: o.storm.events, Tenants: o.tenants, ListConns: config.Default().DBListConns}
	dsn, cleanup, err := fresh(ctx, o, kind)
	if err != nil {
		return rep, err
	}
	defer cleanup()
	raw, err := openRaw(kind, dsn)
	if err != nil {
		return rep, err
	}
	defer raw.Close()
	adminKey, tenants, seeded, err := prepareStorm(ctx, o, kind, dsn, raw, &rep)
	if err != nil {
		return rep, err
	}
	// run measures rounds pairs on one server; it returns the pair of
	// the median ratio, and every pair.
	run := func(label string, streams []tenantLog, rounds int) (stormRun, []stormRun, error) {
		srv, err := startServer(ctx, kind, dsn)
		if err != nil {
			return stormRun{}, nil, err
		}
		var (
			all    []stormRun
			runErr error
		)
		for i := range rounds {
			// The machine is shared: start each pair when the rest of it
			// is quiet (or say it was not).
			other, _ := cpustat.WaitQuiet(ctx, 25, o.storm.quietWait, logf)
			r, err := measureStorm(ctx, o, srv.base, adminKey, streams)
			r.OtherCPUBeforePct = other
			if runErr = err; err != nil {
				break
			}
			logf("%s%s, round %d: creates alone %.0f/s (p50 %.1f ms, p99 %.1f ms); during the storm %.0f/s (p50 %.1f ms, p99 %.1f ms): %.2f×; "+
				"%d replays caught up, %.0f events/s, %d answered 429, %d errors",
				kind, label, i+1, r.Alone.PerSec, r.Alone.P50MS, r.Alone.P99MS, r.Storm.PerSec, r.Storm.P50MS, r.Storm.P99MS, r.Ratio,
				r.Streams.CaughtUp, r.Streams.EventsPerSec, r.Streams.TooMany, r.Streams.Errors)
			all = append(all, r)
		}
		if err := errors.Join(runErr, srv.stop()); err != nil {
			return stormRun{}, all, err
		}
		byRatio := slices.Clone(all)
		slices.SortFunc(byRatio, func(a, b stormRun) int { return cmp.Compare(a.Ratio, b.Ratio) })
		return byRatio[len(byRatio)/2], all, nil
	}
	var all []stormRun
	if rep.Indexed, all, err = run("", tenants, max(o.storm.rounds, 1)); err != nil {
		return rep, err
	}
	created := 0
	for _, r := range all {
		created += r.created()
	}
	if len(all) > 1 {
		rep.IndexedRounds = all
	}
	if o.storm.oneKey && len(tenants) > 0 {
		one := make([]tenantLog, len(tenants))
		for i := range one {
			one[i] = tenants[0]
		}
		r, _, err := run(" with one key", one, 1)
		if err != nil {
			return rep, err
		}
		rep.OneKey = &r
		created += r.created()
	}
	if o.baseline {
		if err := dropListIndexes(ctx, raw); err != nil {
			return rep, err
		}
		b, _, err := run(" without the list_indexes indexes", tenants, 1)
		if err != nil {
			return rep, err
		}
		rep.Baseline = &b
		created += b.created()
	}
	var stored int
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM tasks`).Scan(&stored); err != nil {
		return rep, fmt.Errorf("counting tasks: %w", err)
	}
	rep.Check = fmt.Sprintf("tasks created over HTTP=%d, 201 responses=%d", stored-seeded, created)
	if stored-seeded != created {
		return rep, fmt.Errorf("%d tasks stored but %d creates answered 201", stored-seeded, created)
	}
	return rep, nil
}

// prepareStorm migrates and seeds the database, makes the admin key and
// one key per tenant through the store, and reads what each tenant's
// replay must deliver. seeded is the number of tasks seeded.
func prepareStorm(ctx context.Context, o *options, kind, dsn string, raw *sql.DB, rep *stormReport) (admin string, tenants []tenantLog, seeded int, err error) {
	reg := registry.New()
	reg.MustRegister(echo.Type())
	st, err := sqlstore.Open(ctx, dsn, reg, nil)
	if err != nil {
		return "", nil, 0, err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return "", nil, 0, err
	}
	seeded = max(o.storm.events/4, 1)
	if rep.SeedSeconds, err = seedLog(ctx, raw, kind, seedSizes{tasks: seeded, events: o.storm.events, eventTasks: seeded, tenants: o.tenants}); err != nil {
		return "", nil, 0, err
	}
	admin = apikey.Generate()
	if err := st.CreateAPIKey(ctx, apikey.Record(admin, "scalebench storm admin", "")); err != nil {
		return "", nil, 0, err
	}
	rows, err := raw.QueryContext(ctx, `SELECT tenant_id, MAX(id), COUNT(*) FROM task_events GROUP BY tenant_id ORDER BY tenant_id`)
	if err != nil {
		return "", nil, 0, fmt.Errorf("reading the tenants' logs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name string
			t    tenantLog
		)
		if err := rows.Scan(&name, &t.lastID, &t.count); err != nil {
			return "", nil, 0, err
		}
		t.key = apikey.Generate()
		if err := st.CreateAPIKey(ctx, apikey.Record(t.key, "scalebench storm "+name, name)); err != nil {
			return "", nil, 0, err
		}
		tenants = append(tenants, t)
		rep.EventsPerTenant = max(rep.EventsPerTenant, t.count)
	}
	if err := rows.Err(); err != nil {
		return "", nil, 0, err
	}
	return admin, tenants, seeded, nil
}

// server is the real API server, running in this process.
type server struct {
	base string
	stop func() error
}

// startServer runs app.New's API (no workers) on a loopback port over the
// seeded database, with the default settings.
func startServer(ctx context.Context, kind, dsn string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Addr = ln.Addr().String()
	cfg.Workers = 0
	cfg.LogLevel = "error"
	var dataDir string
	if kind == "postgres" {
		if dataDir, err = os.MkdirTemp("", "scalebench-storm-"); err != nil {
			ln.Close()
			return nil, err
		}
		cfg.DataDir, cfg.DatabaseURL = dataDir, dsn
	} else {
		cfg.DataDir = filepath.Dir(dsn)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	a, err := app.New(ctx, cfg, app.Options{Version: "scalebench"}, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(sctx, ln) }()
	return &server{base: "http://" + ln.Addr().String(), stop: func() error {
		cancel()
		err := <-errc
		err = errors.Join(err, a.Close())
		if dataDir != "" {
			_ = os.RemoveAll(dataDir)
		}
		return err
	}}, nil
}

func stormMarkdown(o *options, reps []stormReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Replay storm: %d events over %d tenants, %d create clients, %s per run\n\n",
		o.storm.events, o.tenants, o.storm.clients, o.storm.duration)
	b.WriteString("| database | indexes | creates/s alone | p50 / p99 ms | creates/s in the storm | p50 / p99 ms | ratio | replays caught up | events/s replayed | 429s | stream errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(db, ix string, r stormRun) {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.1f / %.1f | %.0f | %.1f / %.1f | %.2f | %d | %.0f | %d | %d |\n", db, ix,
			r.Alone.PerSec, r.Alone.P50MS, r.Alone.P99MS, r.Storm.PerSec, r.Storm.P50MS, r.Storm.P99MS, r.Ratio,
			r.Streams.CaughtUp, r.Streams.EventsPerSec, r.Streams.TooMany, r.Streams.Errors)
	}
	for _, r := range reps {
		row(r.DB, "all", r.Indexed)
		if r.OneKey != nil {
			row(r.DB, "all; every stream on one key", *r.OneKey)
		}
		if r.Baseline != nil {
			row(r.DB, "without list_indexes", *r.Baseline)
		}
	}
	b.WriteString("\n")
	for _, r := range reps {
		fmt.Fprintf(&b, "- %s: CPU (%% of one CPU) machine / this process, alone %.0f / %.0f, in the storm %.0f / %.0f\n", r.DB,
			r.Indexed.Alone.CPU.MachinePct, r.Indexed.Alone.CPU.ProcessPct, r.Indexed.Storm.CPU.MachinePct, r.Indexed.Storm.CPU.ProcessPct)
		fmt.Fprintf(&b, "- %s: seeded in %.0f s; up to %d events per tenant; %s\n", r.DB, r.SeedSeconds, r.EventsPerTenant, r.Check)
	}
	return b.String()
}
