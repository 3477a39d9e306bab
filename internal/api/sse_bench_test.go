package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testredis"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// BenchmarkSSELatency measures commit-to-SSE-client latency: from the
// moment a change begins in the process that commits it (the event body's
// timestamp, taken when the store starts the claim or the status change,
// before its writes and commit) to the moment a client of /api/v1/events
// has read the event. Each iteration runs one echo task (pending,
// executing, completed) to completion, one at a time, and the client
// follows the firehose over real HTTP on loopback. The p50/p99 metrics are
// over the events the engine commits (executing, completed), in every mode;
// create-p50/p99 are over the pending events of single-process modes, whose
// timestamp is taken by the API before it validates and inserts the task.
//
//   - sqlite, postgres: one `serve` process (API + 4 workers in process).
//   - crossprocess-postgres-redis: `compute api` and `compute worker`
//     subprocesses on PostgreSQL with REDIS_URL; the worker's events reach
//     the api process through Redis and PostgreSQL NOTIFY, whichever wakes
//     its relay first.
//   - crossprocess-postgres: the same without Redis (NOTIFY only).
//
// Run: go test -run '^$' -bench SSELatency -benchtime 300x ./internal/api/
func BenchmarkSSELatency(b *testing.B) {
	modes := []string{"sqlite", "postgres", "crossprocess-postgres-redis", "crossprocess-postgres"}
	var bin string
	parent := b
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			cross := mode != "sqlite" && mode != "postgres"
			var base string
			if cross {
				if bin == "" {
					bin = buildCompute(b, parent.TempDir())
				}
				base = benchCluster(b, bin, mode == "crossprocess-postgres-redis")
			} else {
				base = benchServe(b, mode)
			}
			s, status, body := openStreamAt(b, base, "/api/v1/events")
			if s == nil {
				b.Fatalf("stream: %d %s", status, body)
			}
			var lat, created []time.Duration
			b.ResetTimer()
			for range b.N {
				id := benchCreate(b, base)
				for {
					it := s.next()
					ev := it.body(b)
					if ev.TaskID.String() != id {
						continue
					}
					switch {
					case ev.Status != "pending":
						lat = append(lat, it.at.Sub(ev.Timestamp))
					case !cross:
						created = append(created, it.at.Sub(ev.Timestamp))
					}
					if ev.Status == "completed" {
						break
					}
				}
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			p50, p99, most := quantiles(lat)
			b.ReportMetric(ms(p50), "p50-ms")
			b.ReportMetric(ms(p99), "p99-ms")
			b.ReportMetric(float64(len(lat)), "events")
			b.Logf("%s: %d engine events, p50 %s, p99 %s, max %s", mode, len(lat), p50, p99, most)
			if len(created) > 0 {
				p50, p99, most := quantiles(created)
				b.ReportMetric(ms(p50), "create-p50-ms")
				b.ReportMetric(ms(p99), "create-p99-ms")
				b.Logf("%s: %d create events, p50 %s, p99 %s, max %s", mode, len(created), p50, p99, most)
			}
		})
	}
}

// benchServe runs one serve process (API + 4 workers) on loopback.
func benchServe(b *testing.B, dialect string) string {
	b.Helper()
	return testserver.Start(b, testserver.Config(b, dialect, adminKey), app.Options{Workers: true, Version: "bench"}, nil).Base
}

// benchCluster starts `compute api` and `compute worker` (4 slots) on a
// fresh PostgreSQL schema, with Redis when withRedis.
func benchCluster(b *testing.B, bin string, withRedis bool) string {
	b.Helper()
	dsn := testdb.URL(b, "postgres")
	vars := map[string]string{"DATABASE_URL": dsn, "COMPUTE_API_KEY": adminKey, "COMPUTE_LOG_LEVEL": "warn"}
	if withRedis {
		vars["REDIS_URL"], vars["COMPUTE_REDIS_PREFIX"] = testredis.URL(b), testredis.Prefix(b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	apiVars := map[string]string{"COMPUTE_ADDR": addr, "COMPUTE_DATA_DIR": b.TempDir()}
	workerVars := map[string]string{"COMPUTE_WORKERS": "4", "COMPUTE_DATA_DIR": b.TempDir()}
	for k, v := range vars {
		apiVars[k], workerVars[k] = v, v
	}
	api := startCompute(b, bin, "api", apiVars)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("compute api did not become ready: %s", api.out.String())
		}
	}
	startCompute(b, bin, "worker", workerVars)
	return "http://" + addr
}

// benchCreate creates an echo task and returns its id.
func benchCreate(b *testing.B, base string) string {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/tasks/", bytes.NewReader([]byte(`{"task_type":"echo","message":"bench"}`)))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var t struct{ ID string }
	if res.StatusCode != http.StatusCreated || json.Unmarshal(raw, &t) != nil {
		b.Fatalf("create: %d %s", res.StatusCode, raw)
	}
	return t.ID
}

// quantiles returns the median, the 99th percentile and the maximum.
func quantiles(d []time.Duration) (p50, p99, most time.Duration) {
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return q(0.50), q(0.99), d[len(d)-1]
}
