// Command computebench measures the compute server's queue and API against
// River, side by side in one run, on SQLite and PostgreSQL: throughput of
// no-op work, pickup latency at light load, and HTTP create throughput and
// latency next to a baseline server with no database. It prints a markdown
// report and writes the full results as JSON.
//
//	cd bench && go run ./cmd/computebench -json results/latest.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/computeserver/compute/bench/internal/cpustat"
)

// options are the command's flags.
type options struct {
	dbs     []string
	systems []string
	phases  []string
	pgURL   string
	dir     string
	json    string
	prof    string
	trace   bool
	keep    bool

	quietCPU  float64
	quietWait time.Duration

	n           int
	runs        int
	insertBatch int
	timeout     time.Duration

	oursConcSQLite int
	oursConcPG     int
	oursPoll       time.Duration
	oursCompleters int

	riverWorkers  int
	riverCooldown time.Duration
	riverPoll     time.Duration
	riverConns    int

	pickupSamples int
	pickupWarmup  int
	pickupRate    float64
	pickupPoll    time.Duration
	pickupRiver   bool

	httpClients  []int
	httpDuration time.Duration
	httpWarmup   time.Duration
	httpBaseline bool
}

func (o *options) oursConcurrency(kind string) int {
	if kind == dbPostgres {
		return o.oursConcPG
	}
	return o.oursConcSQLite
}

func (o *options) has(phase string) bool { return slices.Contains(o.phases, phase) }

// profile starts a CPU profile (and with -trace an execution trace) named
// name when -cpuprofile-dir is set and returns the function that stops it.
func (o *options) profile(name string) func() {
	if o.prof == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(o.prof, name+".pprof"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		f.Close()
		return func() {}
	}
	var tf *os.File
	if o.trace {
		if tf, err = os.Create(filepath.Join(o.prof, name+".trace")); err == nil {
			if err := trace.Start(tf); err != nil {
				tf.Close()
				tf = nil
			}
		}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if tf != nil {
			trace.Stop()
			tf.Close()
		}
	}
}

func (o *options) settings() map[string]any {
	return map[string]any{
		"quiet_cpu_pct": o.quietCPU, "quiet_wait": o.quietWait.String(),
		"dbs": o.dbs, "systems": o.systems, "phases": o.phases, "n": o.n, "runs": o.runs, "insert_batch": o.insertBatch,
		"compute_concurrency_sqlite": o.oursConcSQLite, "compute_concurrency_postgres": o.oursConcPG,
		"compute_poll_interval": o.oursPoll.String(), "compute_completers": o.oursCompleters,
		"river_max_workers": o.riverWorkers, "river_fetch_cooldown": o.riverCooldown.String(),
		"river_fetch_poll_interval": o.riverPoll.String(), "river_pgxpool_max_conns": o.riverConns,
		"pickup_samples": o.pickupSamples, "pickup_rate_per_sec": o.pickupRate, "pickup_poll_interval": o.pickupPoll.String(),
		"http_clients": o.httpClients, "http_duration": o.httpDuration.String(), "http_warmup": o.httpWarmup.String(),
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("computebench", flag.ContinueOnError)
	dbs := fs.String("db", "sqlite,postgres", "databases to run on (comma-separated: sqlite, postgres)")
	systems := fs.String("systems", "compute,river", "systems to measure (comma-separated: compute, river)")
	phases := fs.String("phases", "throughput,pickup,http,floor", "what to measure (comma-separated: throughput, pickup, http, floor)")
	fs.StringVar(&o.pgURL, "pg", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server URL; a schema is created and dropped per system and run")
	fs.StringVar(&o.dir, "dir", os.TempDir(), "directory for the SQLite files (one per system and run, removed after)")
	fs.StringVar(&o.json, "json", "", "write the results as JSON to this file")
	fs.StringVar(&o.prof, "cpuprofile-dir", "", "write a CPU profile of every measured phase into this directory")
	fs.Float64Var(&o.quietCPU, "quiet-cpu", 25, "before each phase, wait until the rest of the machine uses less than this percent of one CPU (0: do not wait)")
	fs.DurationVar(&o.quietWait, "quiet-wait", 45*time.Second, "longest wait for a quiet machine before each phase")
	fs.BoolVar(&o.keep, "keep", false, "keep the SQLite files and PostgreSQL schemas for inspection")
	fs.BoolVar(&o.trace, "trace", false, "with -cpuprofile-dir, also write an execution trace of every measured phase")
	fs.IntVar(&o.n, "n", 10000, "jobs per throughput run")
	fs.IntVar(&o.runs, "runs", 5, "throughput runs per system and database (the median is reported)")
	fs.IntVar(&o.insertBatch, "insert-batch", 1000, "jobs per CreateTasks / InsertMany call")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up a throughput run after this long")
	fs.IntVar(&o.oursConcSQLite, "compute-concurrency-sqlite", 1000, "engine Concurrency on SQLite")
	fs.IntVar(&o.oursConcPG, "compute-concurrency-postgres", 1000, "engine Concurrency on PostgreSQL")
	fs.IntVar(&o.oursCompleters, "compute-completers", 0, "engine Completers (0: the engine's default for the database)")
	fs.DurationVar(&o.oursPoll, "compute-poll", 100*time.Millisecond, "engine PollInterval for throughput")
	fs.IntVar(&o.riverWorkers, "river-workers", 2000, "River MaxWorkers for throughput")
	fs.DurationVar(&o.riverCooldown, "river-cooldown", 25*time.Millisecond, "River FetchCooldown")
	fs.DurationVar(&o.riverPoll, "river-poll", 100*time.Millisecond, "River FetchPollInterval")
	fs.IntVar(&o.riverConns, "river-conns", 20, "River pgxpool MaxConns (the compute store uses 20)")
	fs.IntVar(&o.pickupSamples, "pickup-samples", 200, "pickup samples per series")
	fs.IntVar(&o.pickupWarmup, "pickup-warmup", 5, "pickup samples discarded first")
	fs.Float64Var(&o.pickupRate, "pickup-rate", 20, "pickup samples per second")
	fs.DurationVar(&o.pickupPoll, "pickup-poll", time.Second, "engine PollInterval while measuring pickup (wake-ups must do the work)")
	fs.BoolVar(&o.pickupRiver, "pickup-river", true, "also measure River's pickup, for reference")
	clients := fs.String("http-clients", "8,16,32,64", "concurrent HTTP clients (comma-separated levels)")
	fs.DurationVar(&o.httpDuration, "http-duration", 8*time.Second, "measured duration of each HTTP level")
	fs.DurationVar(&o.httpWarmup, "http-warmup", time.Second, "unmeasured warm-up before each HTTP level")
	fs.BoolVar(&o.httpBaseline, "http-baseline", true, "also drive baseline servers without a database")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.dbs = splitList(*dbs)
	for _, d := range o.dbs {
		if d != dbSQLite && d != dbPostgres {
			return nil, fmt.Errorf("-db: unknown database %q", d)
		}
	}
	o.systems = splitList(*systems)
	for _, s := range o.systems {
		if s != "compute" && s != "river" {
			return nil, fmt.Errorf("-systems: unknown system %q", s)
		}
	}
	o.phases = splitList(*phases)
	for _, p := range o.phases {
		if p != "throughput" && p != "pickup" && p != "http" && p != "floor" {
			return nil, fmt.Errorf("-phases: unknown phase %q", p)
		}
	}
	for _, c := range splitList(*clients) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-http-clients: %q is not a positive number", c)
		}
		o.httpClients = append(o.httpClients, n)
	}
	if o.n < 1 || o.runs < 1 || o.insertBatch < 1 || o.pickupSamples < 1 || o.pickupRate <= 0 {
		return nil, errors.New("-n, -runs, -insert-batch, -pickup-samples and -pickup-rate must be positive")
	}
	if o.prof != "" {
		if err := os.MkdirAll(o.prof, 0o750); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// report is everything one run measured.
type report struct {
	Started    time.Time          `json:"started"`
	Command    string             `json:"command"`
	Machine    machine            `json:"machine"`
	Settings   map[string]any     `json:"settings"`
	Throughput []throughputResult `json:"throughput"`
	Pickup     []pickupResult     `json:"pickup"`
	HTTP       []httpResult       `json:"http"`
	// Floor is the database's CPU per task for each design's writes alone
	// (floor.go, floor_sqlite.go).
	Floor   []floorResult  `json:"floor,omitempty"`
	Targets []targetResult `json:"targets"`
	// LoadAverages are the 1-minute load averages seen before each phase
	// (after waiting for a quiet machine) and at the end.
	LoadAverages map[string]float64 `json:"load_averages"`
	// OthersCPU is the CPU the rest of the machine used just before each
	// phase, in percent of one CPU.
	OthersCPU map[string]float64 `json:"others_cpu_pct"`
	Errors    []string           `json:"errors,omitempty"`
	Seconds   float64            `json:"seconds"`
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "computebench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		fmt.Print(rep.markdown())
		if o.json != "" {
			if werr := writeJSON(o.json, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "computebench: writing JSON:", werr)
				os.Exit(1)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "computebench:", err)
		os.Exit(1)
	}
}

func writeJSON(path string, rep *report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// logf reports progress on stderr, so stdout stays the report.
func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(ctx context.Context, o *options) (*report, error) {
	started := time.Now()
	rep := &report{Started: started.UTC(), Command: "computebench " + strings.Join(os.Args[1:], " "), Settings: o.settings(),
		LoadAverages: map[string]float64{}, OthersCPU: map[string]float64{}}
	quiet := func(phase string) {
		if o.quietCPU <= 0 {
			return
		}
		other, ok := cpustat.WaitQuiet(ctx, o.quietCPU, o.quietWait, logf)
		if !ok {
			logf("the machine is busy (the rest uses %.0f%% CPU); measuring %s anyway", other, phase)
		}
		rep.OthersCPU["before "+phase] = other
		rep.LoadAverages["before "+phase] = cpustat.Load1()
	}
	base, err := os.MkdirTemp(o.dir, "computebench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		logf("keeping the databases: SQLite files under %s, PostgreSQL schemas bench_*", base)
	} else {
		defer os.RemoveAll(base)
	}
	env := &dbEnv{dir: base, pgURL: o.pgURL, keep: o.keep}
	rep.Machine = describeMachine(ctx, o)
	var errs []error
	fail := func(what string, err error) {
		logf("FAILED %s: %v", what, err)
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
		rep.Errors = append(rep.Errors, what+": "+err.Error())
	}

	if o.has("throughput") {
		quiet("throughput")
		for _, kind := range o.dbs {
			for r := 1; r <= o.runs && ctx.Err() == nil; r++ {
				// Alternate which system goes first, so neither always
				// gets the warmer database server.
				order := []string{"compute", "river"}
				if r%2 == 0 {
					order = []string{"river", "compute"}
				}
				for _, sys := range order {
					if !slices.Contains(o.systems, sys) {
						continue
					}
					runtime.GC()
					var res throughputResult
					var err error
					if sys == "compute" {
						res, err = runOursThroughput(ctx, env, kind, o, r)
					} else {
						res, err = runRiverThroughput(ctx, env, kind, o, r)
					}
					if err != nil {
						fail(fmt.Sprintf("throughput %s on %s, run %d", sys, kind, r), err)
						continue
					}
					logf("throughput %-7s %-8s run %d: %8.0f jobs/s (%.2fs; insert %.0f/s) %s", sys, kind, r, res.PerSec, res.WorkSeconds, res.InsertPerSec, res.Check)
					rep.Throughput = append(rep.Throughput, res)
				}
			}
		}
	}

	if o.has("pickup") {
		quiet("pickup")
		for _, kind := range o.dbs {
			variants := []string{variantSameStore}
			if kind == dbPostgres {
				variants = append(variants, variantSeparateStore)
			}
			for _, v := range variants {
				if ctx.Err() != nil {
					break
				}
				runtime.GC()
				res, err := runOursPickup(ctx, env, kind, v, o)
				if err != nil {
					fail(fmt.Sprintf("pickup compute on %s (%s)", kind, v), err)
					continue
				}
				logf("pickup compute %-8s %-22s p50 %.2fms p99 %.2fms max %.2fms", kind, v, res.P50MS, res.P99MS, res.MaxMS)
				rep.Pickup = append(rep.Pickup, res)
			}
			if o.pickupRiver && slices.Contains(o.systems, "river") && ctx.Err() == nil {
				runtime.GC()
				res, err := runRiverPickup(ctx, env, kind, o)
				if err != nil {
					fail(fmt.Sprintf("pickup river on %s", kind), err)
					continue
				}
				logf("pickup river   %-8s %-22s p50 %.2fms p99 %.2fms max %.2fms", kind, res.Variant, res.P50MS, res.P99MS, res.MaxMS)
				rep.Pickup = append(rep.Pickup, res)
			}
		}
	}

	if o.has("http") {
		quiet("http")
		if o.httpBaseline {
			for _, useHuma := range []bool{true, false} {
				runtime.GC()
				res, err := runBaselineHTTP(ctx, o, useHuma)
				for _, r := range res {
					logf("http %-18s %-8s c=%-3d %7.0f req/s p50 %.2fms p99 %.2fms errors %d", r.Server, r.DB, r.Clients, r.PerSec, r.P50MS, r.P99MS, r.Errors)
				}
				rep.HTTP = append(rep.HTTP, res...)
				if err != nil {
					fail("http baseline", err)
				}
			}
		}
		for _, kind := range o.dbs {
			if ctx.Err() != nil {
				break
			}
			runtime.GC()
			res, err := runComputeHTTP(ctx, env, kind, o)
			for _, r := range res {
				logf("http %-18s %-8s c=%-3d %7.0f req/s p50 %.2fms p99 %.2fms errors %d", r.Server, r.DB, r.Clients, r.PerSec, r.P50MS, r.P99MS, r.Errors)
			}
			rep.HTTP = append(rep.HTTP, res...)
			if err != nil {
				fail("http compute on "+kind, err)
			}
		}
	}

	if o.has("floor") && ctx.Err() == nil {
		quiet("floor")
		res, err := runFloor(ctx, env, o)
		rep.Floor = res
		if err != nil {
			fail("floor", err)
		}
	}

	rep.LoadAverages["end"] = cpustat.Load1()
	rep.Targets = evaluateTargets(rep, o)
	rep.Seconds = time.Since(started).Seconds()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return rep, errors.Join(errs...)
}
