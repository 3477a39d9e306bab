// Command scalebench measures the compute store's list and replay reads
// on large tables, on SQLite and PostgreSQL: a task list filtered by
// status=failed among a million completed tasks, and a tenant's event
// replay from id 0 on a million-event log (30 tenants). It seeds the rows
// with one INSERT … SELECT per table (internal/testutil/seed), runs
// ANALYZE, then runs each query -n times through the store and reports
// p50/p99/max in milliseconds as markdown (and JSON with -json).
//
//	cd bench && go run ./cmd/scalebench -json results/scale.json
//
// With -phase storm it measures admin creates over HTTP during a replay
// storm of tenant event streams instead (storm.go).
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/seed"
)

type options struct {
	dbs            []string
	pgURL, dir     string
	json           string
	tasks, failed  int
	events         int
	eventTasks     int
	tenants, n     int
	pageSize, keep int
	// baseline re-measures without the list_indexes migration's indexes.
	baseline bool
	// phase is "scale" (the store's reads) or "storm" (storm.go).
	phase string
	storm stormOptions
}

// result is one query's latencies on one database.
type result struct {
	DB      string  `json:"db"`
	Query   string  `json:"query"`
	Samples int     `json:"samples"`
	Rows    int     `json:"rows_per_query"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
	MaxMS   float64 `json:"max_ms"`
}

// dbReport is what one database's run measured.
type dbReport struct {
	DB          string   `json:"db"`
	SeedSeconds float64  `json:"seed_seconds"`
	Results     []result `json:"results"`
	// FullReplayMS is one tenant's whole replay from id 0, page by page.
	FullReplayMS     float64 `json:"full_replay_ms"`
	FullReplayEvents int     `json:"full_replay_events"`
	// BaselineFullReplayMS is the same without the indexes (-baseline).
	BaselineFullReplayMS float64 `json:"baseline_full_replay_ms,omitempty"`
}

func main() {
	o := &options{}
	fs := flag.NewFlagSet("scalebench", flag.ExitOnError)
	dbs := fs.String("db", "sqlite,postgres", "databases (comma-separated: sqlite, postgres)")
	fs.StringVar(&o.pgURL, "pg", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server URL; a schema is created and dropped")
	fs.StringVar(&o.dir, "dir", os.TempDir(), "directory for the SQLite file (removed after)")
	fs.StringVar(&o.json, "json", "", "write the results as JSON to this file")
	fs.IntVar(&o.tasks, "tasks", 1_000_000, "completed tasks")
	fs.IntVar(&o.failed, "failed", 1000, "failed tasks, spread over the same time range")
	fs.IntVar(&o.events, "events", 1_000_000, "events in the log")
	fs.IntVar(&o.eventTasks, "event-tasks", 250_000, "tasks the events belong to (the first of the completed ones)")
	fs.IntVar(&o.tenants, "tenants", 30, "tenants the tasks and events are spread over")
	fs.IntVar(&o.n, "n", 500, "measured runs of each query")
	fs.IntVar(&o.pageSize, "page", 500, "events per replay page (the relay's page size)")
	fs.IntVar(&o.keep, "keep", 0, "1: keep the databases")
	fs.BoolVar(&o.baseline, "baseline", false, "then drop the indexes of migration list_indexes and measure again (n/10 runs, or the storm again), for the ratio")
	fs.StringVar(&o.phase, "phase", "scale", "scale: the store's list and replay reads; storm: admin creates over HTTP during a replay storm (storm.go)")
	o.storm.flags(fs)
	_ = fs.Parse(os.Args[1:])
	for _, d := range strings.Split(*dbs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			o.dbs = append(o.dbs, d)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch o.phase {
	case "storm":
		err = runStorm(ctx, o)
	case "scale":
		err = runScale(ctx, o)
	default:
		fmt.Fprintf(os.Stderr, "scalebench: -phase %q: want scale or storm\n", o.phase)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
}

func runScale(ctx context.Context, o *options) error {
	reports, errs := perDB(ctx, o, runDB)
	fmt.Print(markdown(o, reports))
	errs = append(errs, saveJSON(o, map[string]any{"tasks": o.tasks, "failed": o.failed, "events": o.events,
		"event_tasks": o.eventTasks, "tenants": o.tenants, "n": o.n, "page": o.pageSize}, reports))
	return errors.Join(errs...)
}

// perDB runs run on each database of -db in turn; it returns the reports
// of those that finished and the errors of the others.
func perDB[R any](ctx context.Context, o *options, run func(context.Context, *options, string) (R, error)) ([]R, []error) {
	var (
		reports []R
		errs    []error
	)
	for _, kind := range o.dbs {
		rep, err := run(ctx, o, kind)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", kind, err))
			continue
		}
		reports = append(reports, rep)
	}
	return reports, errs
}

// saveJSON writes the reports to -json, when given, with the command line
// and the settings.
func saveJSON(o *options, settings, reports any) error {
	if o.json == "" {
		return nil
	}
	return writeJSON(o.json, map[string]any{"started": time.Now().UTC(), "command": "scalebench " + strings.Join(os.Args[1:], " "),
		"settings": settings, "databases": reports})
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// fresh returns the DSN of a new empty database of kind and its cleanup.
func fresh(ctx context.Context, o *options, kind string) (string, func(), error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	if kind == "sqlite" {
		dir, err := os.MkdirTemp(o.dir, "scalebench-")
		if err != nil {
			return "", nil, err
		}
		// The server's file name in its data directory (storm.go).
		if o.keep == 1 {
			return filepath.Join(dir, "compute.db"), func() {}, nil
		}
		return filepath.Join(dir, "compute.db"), func() { _ = os.RemoveAll(dir) }, nil
	}
	schema := "bench_scale_" + suffix
	db, err := sql.Open("pgx", o.pgURL)
	if err != nil {
		return "", nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		db.Close()
		return "", nil, err
	}
	u, err := url.Parse(o.pgURL)
	if err != nil {
		db.Close()
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		if o.keep != 1 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, _ = db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`)
		}
		db.Close()
	}, nil
}

func runDB(ctx context.Context, o *options, kind string) (dbReport, error) {
	rep := dbReport{DB: kind}
	dsn, cleanup, err := fresh(ctx, o, kind)
	if err != nil {
		return rep, err
	}
	defer cleanup()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	st, err := sqlstore.Open(ctx, dsn, reg, nil)
	if err != nil {
		return rep, err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return rep, err
	}
	raw, err := openRaw(kind, dsn)
	if err != nil {
		return rep, err
	}
	defer raw.Close()

	if rep.SeedSeconds, err = seedLog(ctx, raw, kind, seedSizes{tasks: o.tasks, failed: o.failed, events: o.events, eventTasks: o.eventTasks, tenants: o.tenants}); err != nil {
		return rep, err
	}

	failedList := func(i int) (int, error) {
		p, err := st.ListTasks(ctx, store.ListFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusFailed}, Limit: 50})
		return len(p.Records), err
	}
	tenantList := func(i int) (int, error) {
		p, err := st.ListTasks(ctx, store.ListFilter{Scope: store.Scope{TenantID: seed.Tenant(i, o.tenants)}, Statuses: []task.Status{task.StatusFailed}, Limit: 50})
		return len(p.Records), err
	}
	replay := func(i int) (int, error) {
		evs, err := st.ListEvents(ctx, store.EventFilter{Scope: store.Scope{TenantID: seed.Tenant(i, o.tenants)}, Limit: o.pageSize})
		return len(evs), err
	}
	queries := []struct {
		name string
		fn   func(int) (int, error)
	}{
		{"list status=failed (admin), page of 50", failedList},
		{"list status=failed (tenant key), page of 50", tenantList},
		{fmt.Sprintf("tenant replay from id 0, page of %d", o.pageSize), replay},
	}
	run := func(n int, suffix string) error {
		for _, q := range queries {
			res, err := measure(ctx, n, q.fn)
			if err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			res.DB, res.Query = kind, q.name+suffix
			logf("%s: %s: p50 %.2fms p99 %.2fms max %.2fms (%d rows)", kind, res.Query, res.P50MS, res.P99MS, res.MaxMS, res.Rows)
			rep.Results = append(rep.Results, res)
		}
		return nil
	}
	if err := run(o.n, ""); err != nil {
		return rep, err
	}

	fullReplay := func() (int, float64, error) {
		t0, n := time.Now(), 0
		var after int64
		for {
			evs, err := st.ListEvents(ctx, store.EventFilter{Scope: store.Scope{TenantID: seed.Tenant(7, o.tenants)}, AfterID: after, Limit: o.pageSize})
			if err != nil {
				return n, 0, err
			}
			n += len(evs)
			if len(evs) < o.pageSize {
				return n, float64(time.Since(t0).Microseconds()) / 1000, nil
			}
			after = evs[len(evs)-1].ID
		}
	}
	if rep.FullReplayEvents, rep.FullReplayMS, err = fullReplay(); err != nil {
		return rep, err
	}
	logf("%s: one tenant's full replay: %d events in %.0fms", kind, rep.FullReplayEvents, rep.FullReplayMS)
	if o.baseline {
		if err := dropListIndexes(ctx, raw); err != nil {
			return rep, err
		}
		if err := run(max(o.n/10, 10), " — without the list_indexes indexes"); err != nil {
			return rep, err
		}
		if _, rep.BaselineFullReplayMS, err = fullReplay(); err != nil {
			return rep, err
		}
		logf("%s: one tenant's full replay without the indexes: %.0fms", kind, rep.BaselineFullReplayMS)
	}
	return rep, nil
}

// seedSizes is what seedLog inserts.
type seedSizes struct {
	tasks, failed, events, eventTasks, tenants int
}

// seedLog fills a migrated database: completed and failed echo tasks over
// 30 days, events on the first eventTasks of the completed ones, then the
// planner's statistics. It returns the seconds it took.
func seedLog(ctx context.Context, raw *sql.DB, kind string, n seedSizes) (float64, error) {
	began := time.Now()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	span := 30 * 24 * time.Hour
	logf("%s: seeding %d completed and %d failed tasks, %d events", kind, n.tasks, n.failed, n.events)
	if err := seed.InsertTasks(ctx, raw, kind, seed.Tasks{Batch: 1, N: n.tasks, Status: "completed", Tenants: n.tenants, Queues: 5, Start: start, Step: span / time.Duration(n.tasks)}); err != nil {
		return 0, err
	}
	if n.failed > 0 {
		if err := seed.InsertTasks(ctx, raw, kind, seed.Tasks{Batch: 2, N: n.failed, Status: "failed", Tenants: n.tenants, Queues: 5, Start: start, Step: span / time.Duration(n.failed)}); err != nil {
			return 0, err
		}
	}
	if err := seed.InsertEvents(ctx, raw, kind, seed.Events{Batch: 1, Tasks: n.eventTasks, Tenants: n.tenants, N: n.events, Start: start, Step: span / time.Duration(n.events)}); err != nil {
		return 0, err
	}
	if err := seed.Analyze(ctx, raw); err != nil {
		return 0, err
	}
	if kind == "postgres" {
		// What autovacuum does after a bulk load: the visibility map.
		if _, err := raw.ExecContext(ctx, `VACUUM tasks, task_events`); err != nil {
			return 0, fmt.Errorf("vacuum: %w", err)
		}
	}
	secs := time.Since(began).Seconds()
	logf("%s: seeded in %.0fs", kind, secs)
	return secs, nil
}

// dropListIndexes drops the indexes of migration list_indexes on tasks
// and task_events and refreshes the statistics (the -baseline runs).
func dropListIndexes(ctx context.Context, raw *sql.DB) error {
	for _, ix := range []string{"tasks_status_created", "tasks_type_created", "tasks_queue_created", "tasks_tenant_status_created",
		"task_events_tenant", "task_events_type", "task_events_status"} {
		if _, err := raw.ExecContext(ctx, `DROP INDEX `+ix); err != nil {
			return fmt.Errorf("dropping %s: %w", ix, err)
		}
	}
	return seed.Analyze(ctx, raw)
}

// openRaw opens a plain handle for seeding (the store's SQLite pragmas).
func openRaw(kind, dsn string) (*sql.DB, error) {
	if kind == "postgres" {
		return sql.Open("pgx", dsn)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	db, err := sql.Open("sqlite", "file:"+dsn+"?"+q.Encode())
	if err == nil {
		db.SetMaxOpenConns(1)
	}
	return db, err
}

// measure runs fn n times after 10 warm-up runs and returns the latencies.
func measure(ctx context.Context, n int, fn func(int) (int, error)) (result, error) {
	var rows int
	for i := range 10 {
		if _, err := fn(i); err != nil {
			return result{}, err
		}
	}
	d := make([]float64, 0, n)
	for i := range n {
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		t0 := time.Now()
		r, err := fn(i)
		if err != nil {
			return result{}, err
		}
		d = append(d, float64(time.Since(t0).Microseconds())/1000)
		rows = r
	}
	slices.Sort(d)
	return result{Samples: n, Rows: rows, P50MS: pct(d, 0.50), P99MS: pct(d, 0.99), MaxMS: d[len(d)-1]}, nil
}

// pct is the p-quantile (0 < p < 1) of sorted samples; 0 when there are
// none.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func markdown(o *options, reps []dbReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Scale: %d completed + %d failed tasks, %d events over %d tenants; %d runs per query\n\n",
		o.tasks, o.failed, o.events, o.tenants, o.n)
	b.WriteString("| database | query | rows | p50 ms | p99 ms | max ms | p99 < 20 ms |\n|---|---|---|---|---|---|---|\n")
	for _, r := range reps {
		for _, q := range r.Results {
			ok := "yes"
			if q.P99MS >= 20 {
				ok = "NO"
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %.2f | %.2f | %.2f | %s |\n", r.DB, q.Query, q.Rows, q.P50MS, q.P99MS, q.MaxMS, ok)
		}
	}
	b.WriteString("\n")
	for _, r := range reps {
		fmt.Fprintf(&b, "- %s: seeded in %.0f s; one tenant's whole replay from id 0 (%d events, pages of %d): %.0f ms",
			r.DB, r.SeedSeconds, r.FullReplayEvents, o.pageSize, r.FullReplayMS)
		if r.BaselineFullReplayMS > 0 {
			fmt.Fprintf(&b, " (%.0f ms without the indexes, %.1f×)", r.BaselineFullReplayMS, r.BaselineFullReplayMS/r.FullReplayMS)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
