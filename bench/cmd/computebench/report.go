package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// machine describes where the numbers were taken.
type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemoryGB string `json:"memory_gb"`
	Go       string `json:"go"`
	OS       string `json:"os"`
	Postgres string `json:"postgres,omitempty"`
	SQLite   string `json:"sqlite"`
}

func describeMachine(ctx context.Context, o *options) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb int64
			if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
				m.MemoryGB = fmt.Sprintf("%.1f", float64(kb)/1024/1024)
				break
			}
		}
		f.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if slices.Contains(o.dbs, dbPostgres) {
		if db, err := sql.Open("pgx", o.pgURL); err == nil {
			_ = db.QueryRowContext(ctx, `SHOW server_version`).Scan(&m.Postgres)
			var sc string
			if db.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&sc) == nil {
				m.Postgres += " (synchronous_commit=" + sc + ")"
			}
			db.Close()
		}
	}
	if db, err := sql.Open("sqlite", ":memory:"); err == nil {
		_ = db.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&m.SQLite)
		m.SQLite += " (modernc.org/sqlite)"
		db.Close()
	}
	return m
}

// medianThroughput returns the result with the median PerSec of the runs of
// system on db, and how many runs there were.
func medianThroughput(rs []throughputResult, system, db string) (throughputResult, int, bool) {
	var sel []throughputResult
	for _, r := range rs {
		if r.System == system && r.DB == db {
			sel = append(sel, r)
		}
	}
	if len(sel) == 0 {
		return throughputResult{}, 0, false
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].PerSec < sel[j].PerSec })
	return sel[(len(sel)-1)/2], len(sel), true
}

func runsList(rs []throughputResult, system, db string) string {
	var parts []string
	for _, r := range rs {
		if r.System == system && r.DB == db {
			parts = append(parts, fmt.Sprintf("%.0f", r.PerSec))
		}
	}
	return strings.Join(parts, ", ")
}

// targetResult is one of the targets and whether this run met it.
type targetResult struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

func evaluateTargets(rep *report, o *options) []targetResult {
	var out []targetResult
	want := map[string]float64{dbPostgres: 1.2, dbSQLite: 5}
	for _, db := range o.dbs {
		ours, _, ok1 := medianThroughput(rep.Throughput, "compute", db)
		river, _, ok2 := medianThroughput(rep.Throughput, "river", db)
		if ok1 && ok2 && river.PerSec > 0 {
			ratio := ours.PerSec / river.PerSec
			out = append(out, targetResult{
				Target:   fmt.Sprintf("throughput on %s ≥ %.1f× River", db, want[db]),
				Measured: fmt.Sprintf("%.2f× (%.0f vs %.0f jobs/s)", ratio, ours.PerSec, river.PerSec),
				Met:      ratio >= want[db],
			})
		}
	}
	for _, p := range rep.Pickup {
		if p.System != "compute" {
			continue
		}
		out = append(out, targetResult{
			Target:   fmt.Sprintf("pickup p99 < 10 ms on %s (%s)", p.DB, p.Variant),
			Measured: fmt.Sprintf("p99 %.2f ms", p.P99MS),
			Met:      p.P99MS < 10 && p.Timeouts == 0,
		})
	}
	for _, db := range o.dbs {
		if !slices.ContainsFunc(rep.HTTP, func(h httpResult) bool { return h.Server == serverCompute && h.DB == db }) {
			continue
		}
		var best *httpResult
		for i, h := range rep.HTTP {
			if h.Server != serverCompute || h.DB != db || h.Errors > 0 {
				continue
			}
			if h.P99MS < 20 && (best == nil || h.PerSec > best.PerSec) {
				best = &rep.HTTP[i]
			}
		}
		t := targetResult{Target: fmt.Sprintf("HTTP create on %s ≥ 3,000/s with p99 < 20 ms", db)}
		if best != nil {
			t.Measured = fmt.Sprintf("%.0f/s, p99 %.1f ms at %d clients", best.PerSec, best.P99MS, best.Clients)
			t.Met = best.PerSec >= 3000
		} else {
			t.Measured = "no level had p99 < 20 ms without errors"
		}
		out = append(out, t)
	}
	return out
}

// joinSorted formats each key and value of m with format, in key order,
// joined by commas.
func joinSorted(m map[string]float64, format string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf(format, k, m[k])
	}
	return strings.Join(parts, ", ")
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	m := rep.Machine
	p("# computebench results\n\n")
	p("%s · %d CPUs (%s) · %s GB · %s · PostgreSQL %s · SQLite %s · %s · took %.0f s\n\n",
		rep.Started.Format(time.RFC3339), m.CPUs, m.CPUModel, m.MemoryGB, m.Go, orNone(m.Postgres), m.SQLite, m.OS, rep.Seconds)
	if len(rep.LoadAverages) > 0 {
		p("1-minute load average (shared machine): %s\n\n", joinSorted(rep.LoadAverages, "%s %.2f"))
	}
	if len(rep.OthersCPU) > 0 {
		p("CPU used by the rest of the machine just before each phase (percent of one CPU): %s\n\n", joinSorted(rep.OthersCPU, "%s %.0f%%"))
	}

	if len(rep.Throughput) > 0 {
		p("## Throughput (no-op jobs, median of runs)\n\n")
		p("| DB | system | N | insert jobs/s | work s | jobs/s | vs River | runs (jobs/s) | CPU %% machine / this process / rest | settings |\n")
		p("|---|---|---:|---:|---:|---:|---:|---|---|---|\n")
		for _, db := range []string{dbSQLite, dbPostgres} {
			river, _, rok := medianThroughput(rep.Throughput, "river", db)
			for _, sys := range []string{"compute", "river"} {
				r, _, ok := medianThroughput(rep.Throughput, sys, db)
				if !ok {
					continue
				}
				ratio := "—"
				if rok && river.PerSec > 0 {
					ratio = fmt.Sprintf("%.2f×", r.PerSec/river.PerSec)
				}
				p("| %s | %s | %d | %.0f | %.2f | **%.0f** | %s | %s | %.0f / %.0f / %.0f | %s |\n", db, sys, r.N, r.InsertPerSec, r.WorkSeconds, r.PerSec, ratio,
					runsList(rep.Throughput, sys, db), r.CPU.MachinePct, r.CPU.ProcessPct, r.CPU.OtherPct, r.Settings)
			}
		}
		p("\nEngine behaviour during the median compute runs (seen through a wrapper of the store):\n\n")
		p("| DB | claims | empty claims | tasks/claim | ms/claim | claim busy %% | FinishRuns calls | tasks/FinishRuns | ms/FinishRuns | finish busy %% |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, db := range []string{dbSQLite, dbPostgres} {
			r, _, ok := medianThroughput(rep.Throughput, "compute", db)
			if !ok || r.Engine == nil {
				continue
			}
			e := r.Engine
			p("| %s | %d | %d | %.1f | %.2f | %.0f | %d | %.1f | %.2f | %.0f |\n", db, e.ClaimCalls, e.ClaimEmpty, e.AvgClaimBatch, e.AvgClaimMS,
				e.ClaimBusyPct, e.FinishCalls, e.AvgFinishBatch, e.AvgFinishMS, e.FinishBusyPct)
		}
		p("\n")
	}

	if len(rep.Pickup) > 0 {
		p("## Pickup latency at light load (create call returns → processor's first line)\n\n")
		p("| DB | system | variant | samples | p50 ms | p90 ms | p99 ms | max ms | stored started−created p50 / p99 ms | create call p50 ms | settings |\n")
		p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range rep.Pickup {
			stored := "—"
			if r.System == "compute" {
				stored = fmt.Sprintf("%.2f / %.2f", r.StoredP50MS, r.StoredP99MS)
			}
			p("| %s | %s | %s | %d | %.2f | %.2f | **%.2f** | %.2f | %s | %.2f | %s |\n", r.DB, r.System, r.Variant, r.Samples,
				r.P50MS, r.P90MS, r.P99MS, r.MaxMS, stored, r.CreateP50MS, r.Settings)
		}
		p("\n")
	}

	if len(rep.HTTP) > 0 {
		p("## HTTP create (POST /api/v1/tasks/, echo body, load generator in the same process)\n\n")
		baseline := map[int]float64{}
		for _, h := range rep.HTTP {
			if h.Server == serverBaselineHuma {
				baseline[h.Clients] = h.PerSec
			}
		}
		p("| server | DB | clients | requests/s | vs baseline huma | p50 ms | p90 ms | p99 ms | max ms | errors | CPU %% machine / this process |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, h := range rep.HTTP {
			ratio := "—"
			if b := baseline[h.Clients]; b > 0 && h.Server != serverBaselineHuma {
				ratio = fmt.Sprintf("%.2f×", h.PerSec/b)
			}
			p("| %s | %s | %d | **%.0f** | %s | %.2f | %.2f | **%.2f** | %.2f | %d | %.0f / %.0f |\n", h.Server, orNone(h.DB), h.Clients, h.PerSec, ratio,
				h.P50MS, h.P90MS, h.P99MS, h.MaxMS, h.Errors, h.CPU.MachinePct, h.CPU.ProcessPct)
		}
		checked := map[string]bool{}
		for _, h := range rep.HTTP {
			if h.Check != "" && !checked[h.DB] {
				checked[h.DB] = true
				p("\nCheck after the %s run on %s: %s.\n", h.Server, h.DB, h.Check)
			}
		}
		p("\n")
	}

	if len(rep.Floor) > 0 {
		p("## CPU per task for the writes alone (floor)\n\n")
		p("One connection runs each design's claims and completions in batches of %d with their events, and nothing else runs: on PostgreSQL as one statement each with the events built in the statement, the backend's CPU read from /proc; on SQLite the three ways in floor_sqlite.go, this process's CPU, and the time the writer held its transactions (median of runs).\n\n", floorBatch)
		p("| DB | design | N | CPU µs/task | wall (PostgreSQL) or writer (SQLite) µs/task | runs, CPU µs |\n|---|---|---:|---:|---:|---|\n")
		for _, f := range rep.Floor {
			runs := make([]string, len(f.Runs))
			for i, r := range f.Runs {
				runs[i] = fmt.Sprintf("%.1f", r)
			}
			p("| %s | %s | %d | **%.1f** | %.1f | %s |\n", f.DB, f.Design, f.N, f.CPUMicros, f.WallMicros, strings.Join(runs, ", "))
		}
		if rate, budget, ok := floorBudget(rep); ok {
			p("\nPostgreSQL: at 1.2× River's median throughput in this run (%.0f tasks/s), the machine's %d CPUs give **%.1f µs** of CPU per task for everything: the database server and the worker process together.\n", rate, rep.Machine.CPUs, budget)
		}
		if rate, budget, ok := floorWriterBudget(rep); ok {
			p("\nSQLite: at 5× River's median throughput in this run (%.0f tasks/s), the one writer connection has **%.1f µs** per task (compare the writer column).\n", rate, budget)
		}
		p("\n")
	}

	if len(rep.Targets) > 0 {
		p("## Targets\n\n| target | measured | met |\n|---|---|---|\n")
		for _, t := range rep.Targets {
			met := "no"
			if t.Met {
				met = "yes"
			}
			p("| %s | %s | %s |\n", t.Target, t.Measured, met)
		}
		p("\n")
	}
	if len(rep.Errors) > 0 {
		p("## Errors\n\n")
		for _, e := range rep.Errors {
			p("- %s\n", e)
		}
		p("\n")
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
