package monitor_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// loadTask is one task of the known load, as created.
type loadTask struct {
	ID       string    `json:"id"`
	Type     string    `json:"task_type"`
	Queue    string    `json:"queue_name"`
	Provider string    `json:"provider_type"`
	Tenant   string    `json:"origin_tenant_id"`
	Created  time.Time `json:"created_at"`
	// message is what a failing task fails with.
	message string
	// kind is K (completes), F (fails), P (stays pending) or E (held
	// executing).
	kind string
}

// cluster is one API process and two worker processes (apps in this test
// process) sharing a database, with a ComfyUI executor "gpu" on two fake
// servers (2 slots and 1) that the test can hold.
type cluster struct {
	api          *testserver.Server
	base         string
	workers      [2]string // the workers' metrics addresses
	fakeA, fakeB *comfyfake.Server
	// dead is the server of executor "spare", down from the start.
	dead *comfyfake.Server
}

func startCluster(t *testing.T, dialect string) *cluster {
	t.Helper()
	c := &cluster{fakeA: comfyfake.StartT(t, comfyfake.Options{}), fakeB: comfyfake.StartT(t, comfyfake.Options{}), dead: comfyfake.StartT(t, comfyfake.Options{})}
	c.dead.Kill()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	txt2img := `{"1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1, "color": 255}},
		"2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "m"}}}`
	if err := os.WriteFile(filepath.Join(dir, "workflows", "txt2img.json"), []byte(txt2img), 0o644); err != nil {
		t.Fatal(err)
	}
	gpu := fmt.Sprintf(`{"servers": [{"url": %q, "slots": 2}, {"url": %q, "slots": 1}], "workflows": "workflows",
		"defaults": {"generation": "txt2img"}, "poll_interval": "50ms"}`, c.fakeA.URL(), c.fakeB.URL())
	cfg := testserver.Config(t, dialect, adminKey)
	spare := fmt.Sprintf(`{"servers": [{"url": %q, "slots": 1}], "workflows": "workflows", "defaults": {"generation": "txt2img"}}`, c.dead.URL())
	cfg.Executors = map[string]config.ExecutorEntry{
		"gpu":   {Type: "comfyui", Settings: json.RawMessage(gpu), Dir: dir},
		"spare": {Type: "comfyui", Settings: json.RawMessage(spare), Dir: dir},
		"mock":  {Type: "mock"},
		"local": {Type: "local"},
	}
	apiCfg := cfg
	apiCfg.Workers = 0
	c.api = testserver.Start(t, apiCfg, app.Options{Version: "v-api"}, testdb.Logger(t))
	c.base = c.api.Base
	for i := range c.workers {
		w := cfg
		w.MetricsAddr = freeAddr(t)
		testserver.Start(t, w, app.Options{Workers: true, NoAPI: true, Version: fmt.Sprintf("v-worker-%d", i)}, testdb.Logger(t))
		c.workers[i] = w.MetricsAddr
	}
	// Held jobs are released before the processes stop.
	t.Cleanup(func() { c.fakeA.Resume(); c.fakeB.Resume() })
	return c
}

// runMetrics scrapes both workers' /metrics once they listen and returns
// the value of name with labels summed over the two.
func (c *cluster) runMetrics(t *testing.T) func(name string, labels map[string]string) float64 {
	t.Helper()
	var fams []map[string]*dto.MetricFamily
	for _, addr := range c.workers {
		fams = append(fams, scrape(t, "http://"+addr))
	}
	return func(name string, labels map[string]string) float64 {
		sum := 0.0
		for _, f := range fams {
			if v := value(f, name, labels); v > 0 {
				sum += v
			}
		}
		return sum
	}
}

// The known load: per tenant, how many tasks of each kind.
var knownLoad = map[string]map[string]int{
	"acme": {"K": 3, "F": 1, "P": 2, "E": 2},
	"beta": {"K": 2, "F": 1, "P": 1, "E": 1},
}

// create posts the task of kind for tenant and returns it as created.
func (c *cluster) create(t *testing.T, key, tenant, kind string, i int) loadTask {
	t.Helper()
	var body string
	lt := loadTask{kind: kind}
	switch kind {
	case "K":
		body = fmt.Sprintf(`{"task_type":"echo","message":"ok %s %d","sleep_ms":30}`, tenant, i)
	case "F":
		lt.message = fmt.Sprintf("boom %s %d", tenant, i)
		body = fmt.Sprintf(`{"task_type":"echo","message":"bad","fail_with":%q,"max_attempts":1}`, lt.message)
	case "P":
		body = fmt.Sprintf(`{"task_type":"echo","message":"held %s %d","queue_name":"held"}`, tenant, i)
	case "E":
		// Each job's image has a size of its own, so that no prompt is a
		// cache hit that executes nothing (and reports no execution time).
		body = fmt.Sprintf(`{"task_type":"generation","prompt":"gated %s %d","width":%d,"height":%d,"provider_type":"gpu"}`,
			tenant, i, 64+8*int(tenant[0]-'a'), 64+8*i)
	}
	if code := call(t, key, "POST", c.base+"/api/v1/tasks/", body, &lt); code != 201 {
		t.Fatalf("create %s: %d", body, code)
	}
	if lt.Tenant != tenant {
		t.Fatalf("task %s of tenant %q, want %q", lt.ID, lt.Tenant, tenant)
	}
	return lt
}

// status reads a task's status and executor instance.
func (c *cluster) status(t *testing.T, id string) (status, instance string) {
	t.Helper()
	var got struct {
		Status   string `json:"status"`
		Instance string `json:"executor_instance"`
	}
	if code := call(t, adminKey, "GET", c.base+"/api/v1/tasks/"+id, "", &got); code != 200 {
		t.Fatalf("GET task %s: %d", id, code)
	}
	return got.Status, got.Instance
}

// TestMonitoringOfAKnownLoad builds a known load on a running cluster (an
// API process, two worker processes, two tenants) on each database: K
// tasks that complete, F that fail, P pending on a paused queue and E held
// executing by a ComfyUI executor whose servers are paused; then checks
// every monitoring route and /metrics against it exactly, releases the
// held jobs and checks the numbers follow.
func TestMonitoringOfAKnownLoad(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, dialect)
			keys := map[string]string{}
			for tenant := range knownLoad {
				keys[tenant] = "monitor-" + tenant + "-key-0123456789abcdef"
				if err := c.api.App.Store.CreateAPIKey(t.Context(), apikey.Record(keys[tenant], "tenant", tenant)); err != nil {
					t.Fatal(err)
				}
			}
			if code := call(t, adminKey, "POST", c.base+"/api/v1/scheduling/pauses", `{"kind":"queue","name":"held"}`, nil); code != 200 {
				t.Fatalf("pausing queue held: %d", code)
			}
			c.fakeA.Pause()
			c.fakeB.Pause()

			var load []loadTask
			for _, kind := range []string{"P", "K", "F", "E"} {
				for _, tenant := range []string{"acme", "beta"} {
					for i := range knownLoad[tenant][kind] {
						load = append(load, c.create(t, keys[tenant], tenant, kind, i))
					}
				}
			}
			want := map[string]string{"K": "completed", "F": "failed", "P": "pending", "E": "executing"}
			waitFor(t, "the load to settle", func() bool {
				for _, lt := range load {
					if s, _ := c.status(t, lt.ID); s != want[lt.kind] {
						return false
					}
				}
				return true
			})
			// The pending ones stay so: their queue is paused.
			time.Sleep(200 * time.Millisecond)
			running := map[string]int{} // by worker instance
			for _, lt := range load {
				s, inst := c.status(t, lt.ID)
				if s != want[lt.kind] {
					t.Fatalf("task %s (%s) is %s, want %s", lt.ID, lt.kind, s, want[lt.kind])
				}
				if lt.kind == "E" {
					running[inst]++
				}
			}
			checkQueues(t, c, load)
			checkWorkers(t, c, running)
			checkExecutors(t, c, load, 3)
			checkTenants(t, c, load, keys)
			checkMetrics(t, c, load, false)

			// Released, the held jobs complete and the numbers follow.
			c.fakeA.Resume()
			c.fakeB.Resume()
			waitFor(t, "the held jobs to complete", func() bool {
				for _, lt := range load {
					if s, _ := c.status(t, lt.ID); lt.kind == "E" && s != "completed" {
						return false
					}
				}
				return true
			})
			for i := range load {
				if load[i].kind == "E" {
					load[i].kind = "K"
				}
			}
			checkQueues(t, c, load)
			checkWorkers(t, c, map[string]int{})
			checkExecutors(t, c, load, 0)
			checkTenants(t, c, load, keys)
			checkMetrics(t, c, load, true)
		})
	}
}

// eventually polls check for up to 10 s until it reports nothing, then
// fails the test with what it last reported.
func eventually(t *testing.T, what string, check func() []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		problems := check()
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Errorf("%s: %s", what, p)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// count returns how many tasks of load satisfy keep.
func count(load []loadTask, keep func(loadTask) bool) int {
	n := 0
	for _, lt := range load {
		if keep(lt) {
			n++
		}
	}
	return n
}

func checkQueues(t *testing.T, c *cluster, load []loadTask) {
	t.Helper()
	type counts struct {
		Pending, Executing int
		Completed, Failed  map[string]int
	}
	want := map[string]counts{}
	oldest := map[string]time.Time{}
	for _, lt := range load {
		q := want[lt.Queue]
		if q.Completed == nil {
			q.Completed, q.Failed = map[string]int{"last_1m": 0, "last_5m": 0, "last_15m": 0}, map[string]int{"last_1m": 0, "last_5m": 0, "last_15m": 0}
		}
		switch lt.kind {
		case "P":
			q.Pending++
			if o, ok := oldest[lt.Queue]; !ok || lt.Created.Before(o) {
				oldest[lt.Queue] = lt.Created
			}
		case "E":
			q.Executing++
		case "K", "F":
			m := map[string]map[string]int{"K": q.Completed, "F": q.Failed}[lt.kind]
			for _, w := range []string{"last_1m", "last_5m", "last_15m"} {
				m[w]++
			}
		}
		want[lt.Queue] = q
	}
	eventually(t, "GET /monitoring/queues", func() (problems []string) {
		var got struct {
			At     time.Time
			Queues []struct {
				counts
				Queue           string
				OldestPendingAt *time.Time `json:"oldest_pending_at"`
				OldestAge       float64    `json:"oldest_pending_age_seconds"`
			}
		}
		if code := call(t, adminKey, "GET", c.base+"/api/v1/monitoring/queues", "", &got); code != 200 {
			return []string{fmt.Sprintf("status %d", code)}
		}
		seen := map[string]counts{}
		for _, q := range got.Queues {
			seen[q.Queue] = q.counts
			o, pending := oldest[q.Queue]
			switch {
			case !pending && (q.OldestPendingAt != nil || q.OldestAge != 0):
				problems = append(problems, fmt.Sprintf("queue %s has nothing pending but an oldest pending task at %v (%v s)", q.Queue, q.OldestPendingAt, q.OldestAge))
			case pending && (q.OldestPendingAt == nil || !q.OldestPendingAt.Equal(o)):
				problems = append(problems, fmt.Sprintf("queue %s: oldest pending at %v, want the first pending task's creation %v", q.Queue, q.OldestPendingAt, o))
			case pending && (q.OldestAge < got.At.Sub(o).Seconds()-0.001 || q.OldestAge > got.At.Sub(o).Seconds()+0.001 || q.OldestAge <= 0):
				problems = append(problems, fmt.Sprintf("queue %s: oldest pending age %v s, want %v s (at %v)", q.Queue, q.OldestAge, got.At.Sub(o).Seconds(), got.At))
			}
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			problems = append(problems, fmt.Sprintf("\n got %v\nwant %v", seen, want))
		}
		return problems
	})
}

func checkWorkers(t *testing.T, c *cluster, running map[string]int) {
	t.Helper()
	eventually(t, "GET /monitoring/workers", func() (problems []string) {
		var got struct {
			Workers []struct {
				Instance, Role, Version string
				Up                      bool
				Started                 *time.Time `json:"started_at"`
				Seen                    *time.Time `json:"last_seen_at"`
				Running                 int        `json:"running_tasks"`
			}
		}
		if code := call(t, adminKey, "GET", c.base+"/api/v1/monitoring/workers", "", &got); code != 200 {
			return []string{fmt.Sprintf("status %d", code)}
		}
		var roles []string
		total := 0
		for _, w := range got.Workers {
			roles = append(roles, w.Role+" "+w.Version)
			total += w.Running
			if !w.Up || w.Started == nil || w.Seen == nil || w.Seen.Before(*w.Started) {
				problems = append(problems, fmt.Sprintf("process %+v: want up, started, seen since", w))
			}
			if w.Running != running[w.Instance] {
				problems = append(problems, fmt.Sprintf("process %s (%s) runs %d tasks, want %d", w.Instance, w.Role, w.Running, running[w.Instance]))
			}
		}
		sort.Strings(roles)
		if fmt.Sprint(roles) != "[api v-api worker v-worker-0 worker v-worker-1]" {
			problems = append(problems, fmt.Sprintf("processes %v, want the API and the two workers", roles))
		}
		if want := sum(running); total != want {
			problems = append(problems, fmt.Sprintf("%d running tasks listed, want %d", total, want))
		}
		return problems
	})
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func checkExecutors(t *testing.T, c *cluster, load []loadTask, held int) {
	t.Helper()
	type recent struct{ Completed, Failed int }
	want := map[string]recent{}
	wantErrors := map[string][]string{} // by executor, sorted
	for _, lt := range load {
		r := want[lt.Provider]
		switch lt.kind {
		case "K":
			r.Completed++
		case "F":
			r.Failed++
			wantErrors[lt.Provider] = append(wantErrors[lt.Provider], lt.ID+" echo permanent "+lt.message)
		}
		want[lt.Provider] = r
	}
	eventually(t, "GET /monitoring/executors", func() (problems []string) {
		var got struct {
			Executors []struct {
				Name, Type string
				Running    int
				Last15m    struct {
					recent
					ErrorRate    float64 `json:"error_rate"`
					MeanRun      float64 `json:"mean_run_seconds"`
					RecentErrors []struct {
						TaskID   string `json:"task_id"`
						TaskType string `json:"task_type"`
						At       time.Time
						Category string `json:"error_category"`
						Message  string `json:"error_message"`
					} `json:"recent_errors"`
				} `json:"last_15m"`
				Servers []struct {
					URL       string
					Up        bool
					LastError string     `json:"last_error"`
					CheckedAt *time.Time `json:"checked_at"`
					Slots     int
					SlotsUsed int `json:"slots_used"`
				}
			}
		}
		if code := call(t, adminKey, "GET", c.base+"/api/v1/monitoring/executors", "", &got); code != 200 {
			return []string{fmt.Sprintf("status %d", code)}
		}
		seen := map[string]recent{}
		for _, e := range got.Executors {
			seen[e.Name] = e.Last15m.recent
			var errs []string
			for i, f := range e.Last15m.RecentErrors {
				errs = append(errs, fmt.Sprintf("%s %s %s %s", f.TaskID, f.TaskType, f.Category, f.Message))
				if time.Since(f.At) > time.Minute || time.Until(f.At) > time.Second || (i > 0 && f.At.After(e.Last15m.RecentErrors[i-1].At)) {
					problems = append(problems, fmt.Sprintf("executor %s: error %d at %v, want a recent time, newest first", e.Name, i, f.At))
				}
			}
			sort.Strings(errs)
			slices.Sort(wantErrors[e.Name])
			if fmt.Sprint(errs) != fmt.Sprint(wantErrors[e.Name]) {
				problems = append(problems, fmt.Sprintf("executor %s: recent errors\n%v\nwant the failed tasks\n%v", e.Name, errs, wantErrors[e.Name]))
			}
			w := want[e.Name]
			if n := w.Completed + w.Failed; n > 0 && e.Last15m.ErrorRate != float64(w.Failed)/float64(n) {
				problems = append(problems, fmt.Sprintf("executor %s: error rate %v, want %d/%d", e.Name, e.Last15m.ErrorRate, w.Failed, n))
			}
			if w.Completed > 0 && e.Last15m.MeanRun <= 0 {
				problems = append(problems, fmt.Sprintf("executor %s: mean run %v s", e.Name, e.Last15m.MeanRun))
			}
			// The API process runs no task, yet it tells up from down: it
			// probes the servers it has not called.
			for _, srv := range e.Servers {
				if dead := srv.URL == c.dead.URL(); srv.Up == dead || srv.CheckedAt == nil || dead != (srv.LastError != "") {
					problems = append(problems, fmt.Sprintf("executor %s: server %s up %v (checked at %v, last error %q); want it found %s",
						e.Name, srv.URL, srv.Up, srv.CheckedAt, srv.LastError, map[bool]string{true: "down", false: "up"}[dead]))
				}
			}
			if e.Name == "spare" {
				continue
			}
			if e.Name != "gpu" {
				if e.Running != 0 || len(e.Servers) != 0 {
					problems = append(problems, fmt.Sprintf("executor %s: running %d, servers %v", e.Name, e.Running, e.Servers))
				}
				continue
			}
			slots := map[string]string{}
			used := 0
			for _, s := range e.Servers {
				slots[s.URL] = fmt.Sprintf("up %v slots %d", s.Up, s.Slots)
				used += s.SlotsUsed
				if s.SlotsUsed > s.Slots || (held == 3 && s.SlotsUsed != s.Slots) {
					problems = append(problems, fmt.Sprintf("server %s: %d of %d slots used with %d jobs held", s.URL, s.SlotsUsed, s.Slots, held))
				}
			}
			wantSlots := map[string]string{c.fakeA.URL(): "up true slots 2", c.fakeB.URL(): "up true slots 1"}
			if e.Type != "comfyui" || e.Running != held || used != held || fmt.Sprint(slots) != fmt.Sprint(wantSlots) {
				problems = append(problems, fmt.Sprintf("gpu: type %s, running %d, slots used %d, servers %v; want comfyui, %d, %d, %v",
					e.Type, e.Running, used, slots, held, held, wantSlots))
			}
		}
		for name, w := range want {
			if seen[name] != w {
				problems = append(problems, fmt.Sprintf("executor %s: last 15 minutes %+v, want %+v", name, seen[name], w))
			}
		}
		return problems
	})
}

func checkTenants(t *testing.T, c *cluster, load []loadTask, keys map[string]string) {
	t.Helper()
	status := map[string]string{"K": "completed", "F": "failed", "P": "pending", "E": "executing"}
	want := map[string]map[string]int{}
	for _, lt := range load {
		if want[lt.Tenant] == nil {
			want[lt.Tenant] = map[string]int{}
		}
		want[lt.Tenant][status[lt.kind]]++
	}
	type tenant struct {
		TenantID        string `json:"tenant_id"`
		Tasks           map[string]int
		Total           int
		RunSeconds      float64 `json:"run_seconds"`
		ProviderSeconds float64 `json:"provider_seconds"`
	}
	read := func(key string) ([]tenant, []string) {
		var got struct{ Tenants []tenant }
		if code := call(t, key, "GET", c.base+"/api/v1/monitoring/tenants", "", &got); code != 200 {
			return nil, []string{fmt.Sprintf("status %d", code)}
		}
		var problems []string
		for _, u := range got.Tenants {
			if fmt.Sprint(u.Tasks) != fmt.Sprint(want[u.TenantID]) || u.Total != sum(want[u.TenantID]) {
				problems = append(problems, fmt.Sprintf("tenant %q: %v (total %d), want %v", u.TenantID, u.Tasks, u.Total, want[u.TenantID]))
			}
			// Provider seconds come from the ComfyUI jobs once they
			// finished (execution start to success); echo reports none.
			gen := count(load, func(lt loadTask) bool { return lt.Tenant == u.TenantID && lt.Type == "generation" && lt.kind == "K" })
			if (gen > 0) != (u.ProviderSeconds > 0) {
				problems = append(problems, fmt.Sprintf("tenant %q: %v provider seconds with %d finished ComfyUI jobs", u.TenantID, u.ProviderSeconds, gen))
			}
			// Every tenant has finished tasks, which ran 30 ms at least.
			if u.RunSeconds < 0.03*float64(want[u.TenantID]["completed"]) {
				problems = append(problems, fmt.Sprintf("tenant %q: %v run seconds for %d completed tasks", u.TenantID, u.RunSeconds, want[u.TenantID]["completed"]))
			}
		}
		return got.Tenants, problems
	}
	eventually(t, "GET /monitoring/tenants", func() []string {
		all, problems := read(adminKey)
		if len(all) != 2 || all[0].TenantID != "acme" || all[1].TenantID != "beta" {
			problems = append(problems, fmt.Sprintf("tenants %+v, want acme and beta", all))
		}
		for tenant, key := range keys {
			own, p := read(key)
			problems = append(problems, p...)
			if len(own) != 1 || own[0].TenantID != tenant {
				problems = append(problems, fmt.Sprintf("%s's key sees %+v", tenant, own))
			}
		}
		return problems
	})
}

func checkMetrics(t *testing.T, c *cluster, load []loadTask, released bool) {
	t.Helper()
	type series struct {
		name   string
		labels map[string]string
		want   int
	}
	var runs []series // the workers' own, summed over both
	byType := map[[2]string][]loadTask{}
	for _, lt := range load {
		k := [2]string{lt.Type, lt.Provider}
		byType[k] = append(byType[k], lt)
	}
	for k, tasks := range byType {
		l := func(extra ...string) map[string]string {
			m := map[string]string{"task_type": k[0], "executor": k[1]}
			for i := 0; i+1 < len(extra); i += 2 {
				m[extra[i]] = extra[i+1]
			}
			return m
		}
		is := func(kinds ...string) func(loadTask) bool {
			return func(lt loadTask) bool { return slices.Contains(kinds, lt.kind) }
		}
		runs = append(runs,
			series{"compute_task_runs_total", l("outcome", "completed"), count(tasks, is("K"))},
			series{"compute_task_runs_total", l("outcome", "failed"), count(tasks, is("F"))},
			series{"compute_task_runs_total", l(), count(tasks, is("K", "F"))},
			series{"compute_task_pickup_latency_seconds", l(), count(tasks, is("K", "F", "E"))},
			series{"compute_task_run_duration_seconds", l(), count(tasks, is("K", "F"))},
		)
	}
	var depth []series // the deployment's, the same on every process
	queues := map[string][]loadTask{}
	for _, lt := range load {
		queues[lt.Queue] = append(queues[lt.Queue], lt)
	}
	for q, tasks := range queues {
		depth = append(depth,
			series{"compute_queue_tasks", map[string]string{"queue": q, "status": "pending"}, count(tasks, func(lt loadTask) bool { return lt.kind == "P" })},
			series{"compute_queue_tasks", map[string]string{"queue": q, "status": "executing"}, count(tasks, func(lt loadTask) bool { return lt.kind == "E" })},
			series{"compute_queue_finished_last_5m", map[string]string{"queue": q, "status": "completed"}, count(tasks, func(lt loadTask) bool { return lt.kind == "K" })},
			series{"compute_queue_finished_last_5m", map[string]string{"queue": q, "status": "failed"}, count(tasks, func(lt loadTask) bool { return lt.kind == "F" })},
		)
	}
	eventually(t, fmt.Sprintf("/metrics (held jobs released: %v)", released), func() (problems []string) {
		get := c.runMetrics(t)
		for _, s := range runs {
			if got := get(s.name, s.labels); got != float64(s.want) {
				problems = append(problems, fmt.Sprintf("workers' %s%v = %v, want %d", s.name, s.labels, got, s.want))
			}
		}
		api := scrape(t, c.base)
		if got := value(api, "compute_task_runs_total", nil); got > 0 {
			problems = append(problems, fmt.Sprintf("the API process, which runs nothing, counts %v runs", got))
		}
		for i, fams := range []map[string]*dto.MetricFamily{api, scrape(t, "http://"+c.workers[0]), scrape(t, "http://"+c.workers[1])} {
			for _, s := range depth {
				if got := value(fams, s.name, s.labels); got != float64(s.want) {
					problems = append(problems, fmt.Sprintf("process %d: %s%v = %v, want %d", i, s.name, s.labels, got, s.want))
				}
			}
		}
		return problems
	})
}
