package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

const adminKey = "monitor-test-admin-key-0123456789"

// call sends a request with key and decodes a JSON answer into out (when
// not nil); it returns the status code.
func call(t *testing.T, key, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, url, res.StatusCode, raw, err)
		}
	}
	return res.StatusCode
}

// scrape reads /metrics with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", res.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value sums the values (counter, gauge, or a histogram's count) of the
// family's series whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// waitFor polls cond every 50 ms for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetricsAndMonitoringUnderKnownLoad runs a known load (5 tasks that
// complete with a webhook each, 2 that fail, 3 delayed an hour) through a
// server on each database, then checks /metrics, parsed by the Prometheus
// text parser, and the monitoring routes against it.
func TestMetricsAndMonitoringUnderKnownLoad(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			var received atomic.Int64
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				received.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(hook.Close)
			cfg := testserver.Config(t, dialect, adminKey)
			cfg.WebhookAllowPrivate = true
			srv := testserver.Start(t, cfg, app.Options{Workers: true, Version: "test-v1"}, testdb.Logger(t))
			tenantKey := "monitor-test-tenant-key-0123456789"
			if err := srv.App.Store.CreateAPIKey(t.Context(), apikey.Record(tenantKey, "tenant", "acme")); err != nil {
				t.Fatal(err)
			}

			var ids []string
			create := func(body string) {
				var created struct{ ID string }
				if code := call(t, adminKey, "POST", srv.Base+"/api/v1/tasks/", body, &created); code != 201 {
					t.Fatalf("create %s: %d", body, code)
				}
				ids = append(ids, created.ID)
			}
			for i := range 5 {
				create(fmt.Sprintf(`{"task_type":"echo","message":"ok %d","webhook_url":%q}`, i, hook.URL))
			}
			for i := range 2 {
				create(fmt.Sprintf(`{"task_type":"echo","message":"bad %d","fail_with":"boom","max_attempts":1}`, i))
			}
			later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			for i := range 3 {
				var created struct{ ID string }
				body := fmt.Sprintf(`{"task_type":"echo","message":"later %d","queue_name":"later","run_at":%q}`, i, later)
				if code := call(t, adminKey, "POST", srv.Base+"/api/v1/tasks/", body, &created); code != 201 {
					t.Fatalf("create delayed: %d", code)
				}
			}
			waitFor(t, "the seven due tasks to finish", func() bool {
				for _, id := range ids {
					var got struct{ Status string }
					call(t, adminKey, "GET", srv.Base+"/api/v1/tasks/"+id, "", &got)
					if got.Status != "completed" && got.Status != "failed" {
						return false
					}
				}
				return true
			})
			delivered := 0
			waitFor(t, "every webhook delivered", func() bool {
				delivered = 0
				for _, id := range ids[:5] {
					var got struct{ Deliveries []struct{ Status string } }
					call(t, adminKey, "GET", srv.Base+"/api/v1/tasks/"+id+"/webhooks", "", &got)
					if len(got.Deliveries) == 0 {
						return false
					}
					for _, d := range got.Deliveries {
						if d.Status != "delivered" {
							return false
						}
						delivered++
					}
				}
				return true
			})

			// An open event stream is counted.
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.Base+"/api/v1/events", nil)
			req.Header.Set("Authorization", "Bearer "+adminKey)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()

			var fams map[string]*dto.MetricFamily
			waitFor(t, "the run metrics and the open stream", func() bool {
				fams = scrape(t, srv.Base)
				return value(fams, "compute_task_runs_total", nil) == 7 &&
					value(fams, "compute_webhook_deliveries_total", nil) == float64(delivered) &&
					value(fams, "compute_event_streams_open", nil) == 1
			})
			for _, c := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"compute_task_runs_total", map[string]string{"task_type": "echo", "outcome": "completed"}, 5},
				{"compute_task_runs_total", map[string]string{"task_type": "echo", "outcome": "failed"}, 2},
				{"compute_task_run_duration_seconds", map[string]string{"task_type": "echo"}, 7},
				{"compute_task_pickup_latency_seconds", map[string]string{"task_type": "echo"}, 7},
				{"compute_webhook_deliveries_total", map[string]string{"result": "delivered"}, float64(delivered)},
				{"compute_queue_tasks", map[string]string{"queue": "later", "status": "pending"}, 3},
				{"compute_queue_tasks", map[string]string{"queue": "default", "status": "pending"}, 0},
				{"compute_queue_tasks", map[string]string{"status": "executing"}, 0},
				{"compute_queue_finished_last_5m", map[string]string{"queue": "default", "status": "completed"}, 5},
				{"compute_queue_finished_last_5m", map[string]string{"queue": "default", "status": "failed"}, 2},
			} {
				if got := value(fams, c.name, c.labels); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
				}
			}
			if received.Load() < int64(delivered) {
				t.Errorf("the receiver got %d requests, fewer than the %d deliveries counted", received.Load(), delivered)
			}
			if value(fams, "compute_queue_oldest_pending_age_seconds", map[string]string{"queue": "later"}) <= 0 {
				t.Error("the oldest pending task of queue later has no age")
			}
			if value(fams, "go_sql_open_connections", nil) <= 0 {
				t.Errorf("no database pool statistics: %v", fams["go_sql_open_connections"])
			}

			checkMonitoringRoutes(t, srv.Base, tenantKey)
		})
	}
}

// checkMonitoringRoutes checks the monitoring routes against the load of
// TestMetricsAndMonitoringUnderKnownLoad.
func checkMonitoringRoutes(t *testing.T, base, tenantKey string) {
	t.Helper()
	var queues struct {
		Queues []struct {
			Queue                   string
			Pending, Executing      int
			OldestPendingAgeSeconds float64 `json:"oldest_pending_age_seconds"`
			Completed, Failed       map[string]int
		}
	}
	if code := call(t, adminKey, "GET", base+"/api/v1/monitoring/queues", "", &queues); code != 200 {
		t.Fatalf("GET /monitoring/queues: %d", code)
	}
	got := map[string]string{}
	for _, q := range queues.Queues {
		got[q.Queue] = fmt.Sprintf("pending %d executing %d completed %v failed %v", q.Pending, q.Executing, q.Completed, q.Failed)
		if q.Queue == "later" && q.OldestPendingAgeSeconds <= 0 {
			t.Errorf("queue later: oldest pending age %v", q.OldestPendingAgeSeconds)
		}
	}
	want := map[string]string{
		"default": "pending 0 executing 0 completed map[last_15m:5 last_1m:5 last_5m:5] failed map[last_15m:2 last_1m:2 last_5m:2]",
		"later":   "pending 3 executing 0 completed map[last_15m:0 last_1m:0 last_5m:0] failed map[last_15m:0 last_1m:0 last_5m:0]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("queues:\n got %v\nwant %v", got, want)
	}
	if code := call(t, tenantKey, "GET", base+"/api/v1/monitoring/queues", "", nil); code != 403 {
		t.Errorf("GET /monitoring/queues with a tenant key: %d, want 403", code)
	}

	var workers struct {
		Workers []struct {
			Instance, Role, Version string
			Up                      bool
			RunningTasks            int `json:"running_tasks"`
		}
	}
	if code := call(t, adminKey, "GET", base+"/api/v1/monitoring/workers", "", &workers); code != 200 {
		t.Fatalf("GET /monitoring/workers: %d", code)
	}
	if len(workers.Workers) != 1 || workers.Workers[0].Role != "serve" || workers.Workers[0].Version != "test-v1" ||
		!workers.Workers[0].Up || workers.Workers[0].RunningTasks != 0 || workers.Workers[0].Instance == "" {
		t.Errorf("workers = %+v, want this one serve process, up, running nothing", workers.Workers)
	}

	var executors struct {
		Executors []struct {
			Name, Type string
			Running    int
			Last15m    struct {
				Completed, Failed int
				ErrorRate         float64 `json:"error_rate"`
				MeanRunSeconds    float64 `json:"mean_run_seconds"`
			} `json:"last_15m"`
		}
	}
	if code := call(t, adminKey, "GET", base+"/api/v1/monitoring/executors", "", &executors); code != 200 {
		t.Fatalf("GET /monitoring/executors: %d", code)
	}
	if len(executors.Executors) == 0 {
		t.Error("no executors listed")
	}
	completed, failed := 0, 0
	for _, e := range executors.Executors {
		if e.Type == "" || e.Running != 0 {
			t.Errorf("executor %+v: want a type and nothing running", e)
		}
		completed, failed = completed+e.Last15m.Completed, failed+e.Last15m.Failed
		if e.Last15m.Completed+e.Last15m.Failed > 0 && (e.Last15m.ErrorRate != float64(e.Last15m.Failed)/float64(e.Last15m.Completed+e.Last15m.Failed) ||
			e.Last15m.MeanRunSeconds <= 0) {
			t.Errorf("executor %s: last 15 minutes %+v", e.Name, e.Last15m)
		}
	}
	if completed != 5 || failed != 2 {
		t.Errorf("executors' last 15 minutes: %d completed, %d failed; want 5 and 2", completed, failed)
	}

	type tenants struct {
		Tenants []struct {
			TenantID string `json:"tenant_id"`
			Tasks    map[string]int
			Total    int
		}
	}
	var all tenants
	if code := call(t, adminKey, "GET", base+"/api/v1/monitoring/tenants", "", &all); code != 200 {
		t.Fatalf("GET /monitoring/tenants: %d", code)
	}
	if len(all.Tenants) != 1 || all.Tenants[0].TenantID != "" || all.Tenants[0].Total != 10 ||
		fmt.Sprint(all.Tenants[0].Tasks) != "map[completed:5 failed:2 pending:3]" {
		t.Errorf("tenants = %+v, want the admin's 10 tasks", all.Tenants)
	}
	var own tenants
	if code := call(t, tenantKey, "GET", base+"/api/v1/monitoring/tenants", "", &own); code != 200 {
		t.Fatalf("GET /monitoring/tenants with a tenant key: %d", code)
	}
	if len(own.Tenants) != 0 {
		t.Errorf("a tenant with no tasks sees %+v", own.Tenants)
	}
}
