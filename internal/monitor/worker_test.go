package monitor_test

import (
	"fmt"
	"net"
	"sort"
	"testing"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestWorkerRoleMetricsAndRegistry: a worker process (no API) serves its
// run metrics on COMPUTE_METRICS_ADDR, and both processes, API and worker,
// are listed by GET /monitoring/workers with their roles.
func TestWorkerRoleMetricsAndRegistry(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t, dialect, adminKey)
			api := cfg
			api.Workers = 0
			srv := testserver.Start(t, api, app.Options{Version: "v"}, testdb.Logger(t))
			worker := cfg
			worker.MetricsAddr = freeAddr(t)
			testserver.Start(t, worker, app.Options{Workers: true, NoAPI: true, Version: "v"}, testdb.Logger(t))

			for i := range 2 {
				if code := call(t, adminKey, "POST", srv.Base+"/api/v1/tasks/", fmt.Sprintf(`{"task_type":"echo","message":"m%d"}`, i), nil); code != 201 {
					t.Fatalf("create: %d", code)
				}
			}
			waitFor(t, "the worker's metrics to count both runs", func() bool {
				// The worker listens once it serves, a moment after it
				// started.
				c, err := net.Dial("tcp", worker.MetricsAddr)
				if err != nil {
					return false
				}
				c.Close()
				return value(scrape(t, "http://"+worker.MetricsAddr), "compute_task_runs_total", map[string]string{"outcome": "completed"}) == 2
			})
			if got := value(scrape(t, srv.Base), "compute_task_runs_total", nil); got > 0 {
				t.Errorf("the API process, which runs nothing, counts %v runs", got)
			}

			var workers struct {
				Workers []struct {
					Role string
					Up   bool
				}
			}
			if code := call(t, adminKey, "GET", srv.Base+"/api/v1/monitoring/workers", "", &workers); code != 200 {
				t.Fatalf("GET /monitoring/workers: %d", code)
			}
			var roles []string
			for _, w := range workers.Workers {
				if !w.Up {
					t.Errorf("process %+v is not up", w)
				}
				roles = append(roles, w.Role)
			}
			sort.Strings(roles)
			if fmt.Sprint(roles) != "[api worker]" {
				t.Errorf("roles = %v, want [api worker]", roles)
			}
		})
	}
}
