package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func forEachDB(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, start(t, d))
		})
	}
}

func TestCreateGetAndTypedRoutes(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "echo", "message": "hello", "priority": 7, "queue_name": "q1", "origin_zone": "eu",
			"run_at": "2099-01-01T00:00:00Z",
		})
		id := created["id"].(string)
		for k, want := range map[string]any{
			"task_type": "echo", "status": "pending", "message": "hello", "priority": float64(7),
			"queue_name": "q1", "origin_zone": "eu", "provider_type": "local", "progress": float64(0),
			"run_at": "2099-01-01T00:00:00Z", "max_attempts": float64(1),
		} {
			if created[k] != want {
				t.Errorf("created %s = %v, want %v", k, created[k], want)
			}
		}
		got := e.must(200, "GET", "/api/v1/tasks/"+id, nil)
		if fmt.Sprint(got) != fmt.Sprint(created) {
			t.Errorf("GET differs from create:\n%v\n%v", got, created)
		}
		typed := e.must(200, "GET", "/api/v1/tasks/echo/"+id, nil)
		if typed["id"] != id || typed["message"] != "hello" {
			t.Errorf("typed GET = %v", typed)
		}
		viaTyped := e.must(201, "POST", "/api/v1/tasks/echo", map[string]any{"message": "typed route"})
		if viaTyped["task_type"] != "echo" || viaTyped["message"] != "typed route" {
			t.Errorf("typed create = %v", viaTyped)
		}
		// A task is never returned through another type's route.
		problemAt(t, e.do("GET", "/api/v1/tasks/image_adjuster/"+id, nil), 404, "")
		problemAt(t, e.do("GET", "/api/v1/tasks/nosuchtype/"+id, nil), 404, "")
		// The typed route refuses a body naming another type.
		problemAt(t, e.do("POST", "/api/v1/tasks/echo", map[string]any{"task_type": "generation", "message": "x"}), 422, "body.task_type")
	})
}

func TestStatusUpdatesPropagate(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		ok := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "done soon", "sleep_ms": 50})
		bad := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "fail_with": "boom"})

		done := e.waitStatus(ok["id"].(string), "completed")
		if done["progress"] != float64(100) || done["started_at"] == nil || done["completed_at"] == nil || done["executor_instance"] == "" {
			t.Errorf("completed task lacks progress/timestamps/instance: %v", done)
		}
		res := e.must(200, "GET", "/api/v1/tasks/"+ok["id"].(string)+"/result", nil)
		data, _ := res["result"].(map[string]any)["data"].(map[string]any)
		if res["status"] != "completed" || data["message"] != "done soon" {
			t.Errorf("result = %v", res)
		}

		failed := e.waitStatus(bad["id"].(string), "failed")
		errs, _ := failed["errors"].([]any)
		if failed["error_message"] != "boom" || failed["error_category"] != "permanent" || len(errs) != 1 || failed["retry_count"] != float64(1) {
			t.Errorf("failed task = %v", failed)
		}
		if r := e.must(200, "GET", "/api/v1/tasks/"+bad["id"].(string)+"/result", nil); r["result"] != nil || r["error_message"] != "boom" {
			t.Errorf("failed result = %v", r)
		}
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		pending := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "later", "run_at": "2099-01-01T00:00:00Z"})
		c := e.must(200, "POST", "/api/v1/tasks/"+pending["id"].(string)+"/cancel", nil)
		if c["status"] != "cancelled" || c["error_category"] != "cancelled" {
			t.Errorf("cancelled pending = %v", c)
		}
		problemAt(t, e.do("POST", "/api/v1/tasks/"+pending["id"].(string)+"/cancel", nil), 409, "")

		running := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "long", "sleep_ms": 60000})
		id := running["id"].(string)
		e.waitStatus(id, "executing")
		c = e.must(200, "POST", "/api/v1/tasks/"+id+"/cancel", nil)
		if c["status"] != "cancelled" {
			t.Fatalf("cancel executing = %v", c)
		}
		// The processor was stopped: its slot frees, so a new task runs
		// even though the cancelled one would have slept a minute.
		quick := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "after"})
		e.waitStatus(quick["id"].(string), "completed")
		if got := e.must(200, "GET", "/api/v1/tasks/"+id, nil); got["status"] != "cancelled" {
			t.Errorf("cancelled task became %v", got["status"])
		}

		done := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x"})
		e.waitStatus(done["id"].(string), "completed")
		problemAt(t, e.do("POST", "/api/v1/tasks/"+done["id"].(string)+"/cancel", nil), 409, "")
	})
}

func TestPatch(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		p := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "old", "run_at": "2099-01-01T00:00:00Z"})
		id := p["id"].(string)
		u := e.must(200, "PATCH", "/api/v1/tasks/"+id, map[string]any{"message": "new", "priority": 9, "sleep_ms": 10})
		if u["message"] != "new" || u["priority"] != float64(9) || u["sleep_ms"] != float64(10) {
			t.Errorf("patched = %v", u)
		}
		if g := e.must(200, "GET", "/api/v1/tasks/"+id, nil); g["message"] != "new" || g["priority"] != float64(9) {
			t.Errorf("patch not stored: %v", g)
		}
		problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, map[string]any{"sleep_ms": 999999}), 422, "body.sleep_ms")
		problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, map[string]any{"fail_with": "x"}), 422, "body.fail_with")
		problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, map[string]any{"message": ""}), 422, "body.message")
		if g := e.must(200, "GET", "/api/v1/tasks/"+id, nil); g["message"] != "new" || g["sleep_ms"] != float64(10) {
			t.Errorf("a refused patch changed the task: %v", g)
		}
		e.must(200, "POST", "/api/v1/tasks/"+id+"/cancel", nil)
		problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, map[string]any{"message": "late"}), 409, "")
	})
}

func TestErrorsAreProblemsAndChangeNothing(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		seed := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "seed", "run_at": "2099-01-01T00:00:00Z"})
		before := e.must(200, "GET", "/api/v1/tasks/?limit=500", nil)
		big := `{"task_type":"echo","message":"` + strings.Repeat("a", 2<<20) + `"}`
		cases := []struct {
			name, method, path string
			body               any
			hdr                []string
			status             int
			loc                string
		}{
			{"malformed json", "POST", "/api/v1/tasks/", `{"task_type":`, nil, 400, ""},
			{"missing key", "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x"}, []string{"Authorization", ""}, 401, ""},
			{"wrong key", "GET", "/api/v1/tasks/", nil, []string{"Authorization", "Bearer nope-nope-nope"}, 401, ""},
			{"not bearer", "GET", "/api/v1/tasks/", nil, []string{"Authorization", "Basic abc"}, 401, ""},
			{"unknown id", "GET", "/api/v1/tasks/01a219db-3e96-7ead-9359-7651978f18c0", nil, nil, 404, ""},
			{"malformed id", "GET", "/api/v1/tasks/xyz", nil, nil, 404, ""},
			{"unknown type route", "POST", "/api/v1/tasks/nosuchtype", map[string]any{"message": "x"}, nil, 404, ""},
			{"unknown type in body", "POST", "/api/v1/tasks/", map[string]any{"task_type": "nosuchtype"}, nil, 422, "body.task_type"},
			{"missing type", "POST", "/api/v1/tasks/", map[string]any{"message": "x"}, nil, 422, "body.task_type"},
			{"missing required field", "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo"}, nil, 422, "body.message"},
			{"out of range", "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "sleep_ms": 60001}, nil, 422, "body.sleep_ms"},
			{"wrong type", "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": 5}, nil, 422, "body.message"},
			{"unknown field", "POST", "/api/v1/tasks/echo", map[string]any{"message": "x", "colour": "red"}, nil, 422, "body.colour"},
			{"read-only base field", "POST", "/api/v1/tasks/echo", map[string]any{"message": "x", "status": "completed"}, nil, 422, "body.status"},
			{"bad provider", "POST", "/api/v1/tasks/echo", map[string]any{"message": "x", "provider_type": "gpu9000"}, nil, 422, "body.provider_type"},
			{"bad webhook", "POST", "/api/v1/tasks/echo", map[string]any{"message": "x", "webhook_url": "ftp://x"}, nil, 422, "body.webhook_url"},
			{"not an object", "POST", "/api/v1/tasks/", `[1,2]`, nil, 422, ""},
			{"too large", "POST", "/api/v1/tasks/", big, nil, 413, ""},
			{"bad cursor", "GET", "/api/v1/tasks/?cursor=zzz", nil, nil, 422, "query.cursor"},
			{"bad status filter", "GET", "/api/v1/tasks/?status=done", nil, nil, 422, "query.status[0]"},
			{"bad limit", "GET", "/api/v1/tasks/?limit=0", nil, nil, 422, "query.limit"},
			{"cancel unknown", "POST", "/api/v1/tasks/01a219db-3e96-7ead-9359-7651978f18c0/cancel", nil, nil, 404, ""},
			{"patch unknown field", "PATCH", "/api/v1/tasks/" + seed["id"].(string), map[string]any{"nope": 1}, nil, 422, "body.nope"},
			{"patch malformed", "PATCH", "/api/v1/tasks/" + seed["id"].(string), `{`, nil, 400, ""},
			{"artifact unknown", "GET", "/api/v1/artifacts/tasks/" + seed["id"].(string) + "/none.png", nil, nil, 404, ""},
			{"artifact traversal", "GET", "/api/v1/artifacts/tasks/..%2F..%2Fcompute.db", nil, nil, 404, ""},
		}
		for _, tc := range cases {
			r := e.do(tc.method, tc.path, tc.body, tc.hdr...)
			t.Run(tc.name, func(t *testing.T) { problemAt(t, r, tc.status, tc.loc) })
		}
		after := e.must(200, "GET", "/api/v1/tasks/?limit=500", nil)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("bad requests changed stored data:\nbefore %v\nafter  %v", before, after)
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		body := map[string]any{"task_type": "echo", "message": "once", "run_at": "2099-01-01T00:00:00Z"}
		first := e.must(201, "POST", "/api/v1/tasks/", body, "Idempotency-Key", "k-1")
		again := e.must(200, "POST", "/api/v1/tasks/", body, "Idempotency-Key", "k-1")
		if first["id"] != again["id"] {
			t.Fatalf("repeat created another task: %v vs %v", first["id"], again["id"])
		}
		// Keys are scoped to the caller: a tenant using the same key gets
		// its own task.
		tk := e.tenantKey("acme")
		other := e.must(201, "POST", "/api/v1/tasks/", body, "Idempotency-Key", "k-1", "Authorization", "Bearer "+tk)
		if other["id"] == first["id"] {
			t.Fatal("tenant got the admin's task for the same key")
		}
		body["message"] = "different"
		problemAt(t, e.do("POST", "/api/v1/tasks/", body, "Idempotency-Key", "k-1"), 409, "")
		list := e.must(200, "GET", "/api/v1/tasks/", nil)
		if n := len(list["items"].([]any)); n != 2 {
			t.Errorf("%d tasks stored, want 2", n)
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		a, b := e.tenantKey("tenant-a"), e.tenantKey("tenant-b")
		asA := []string{"Authorization", "Bearer " + a}
		asB := []string{"Authorization", "Bearer " + b}
		ta := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "a's", "run_at": "2099-01-01T00:00:00Z"}, asA...)
		if ta["origin_tenant_id"] != "tenant-a" {
			t.Fatalf("tenant not stamped: %v", ta)
		}
		id := ta["id"].(string)
		problemAt(t, e.do("GET", "/api/v1/tasks/"+id, nil, asB...), 404, "")
		problemAt(t, e.do("GET", "/api/v1/tasks/echo/"+id, nil, asB...), 404, "")
		problemAt(t, e.do("GET", "/api/v1/tasks/"+id+"/result", nil, asB...), 404, "")
		problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, map[string]any{"message": "hijack"}, asB...), 404, "")
		problemAt(t, e.do("POST", "/api/v1/tasks/"+id+"/cancel", nil, asB...), 404, "")
		if l := e.must(200, "GET", "/api/v1/tasks/", nil, asB...); len(l["items"].([]any)) != 0 {
			t.Errorf("tenant b lists a's tasks: %v", l)
		}
		problemAt(t, e.do("GET", "/api/v1/tasks/?origin_tenant_id=tenant-a", nil, asB...), 422, "query.origin_tenant_id")
		problemAt(t, e.do("POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "origin_tenant_id": "tenant-a"}, asB...), 422, "body.origin_tenant_id")
		if g := e.must(200, "GET", "/api/v1/tasks/"+id, nil, asA...); g["message"] != "a's" || g["status"] != "pending" {
			t.Errorf("tenant a's task was changed: %v", g)
		}
		if g := e.must(200, "GET", "/api/v1/tasks/"+id, nil); g["id"] != id {
			t.Errorf("admin cannot see tenant task")
		}
		if l := e.must(200, "GET", "/api/v1/tasks/", nil, asA...); len(l["items"].([]any)) != 1 {
			t.Errorf("tenant a lists %v", l)
		}
	})
}

func TestListFiltersAndPagination(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		ids := map[string]bool{}
		for i := range 7 {
			q := "even"
			if i%2 == 1 {
				q = "odd"
			}
			m := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": fmt.Sprint(i), "queue_name": q, "run_at": "2099-01-01T00:00:00Z"})
			ids[m["id"].(string)] = true
		}
		seen := map[string]bool{}
		cursor, pages := "", 0
		var lastCreated string
		for {
			path := "/api/v1/tasks/?limit=3"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			page := e.must(200, "GET", path, nil)
			pages++
			for _, it := range page["items"].([]any) {
				m := it.(map[string]any)
				if seen[m["id"].(string)] {
					t.Fatalf("task %s listed twice", m["id"])
				}
				if lastCreated != "" && m["created_at"].(string) > lastCreated {
					t.Fatalf("not newest first")
				}
				lastCreated = m["created_at"].(string)
				seen[m["id"].(string)] = true
			}
			if page["next_cursor"] == nil {
				break
			}
			cursor = page["next_cursor"].(string)
		}
		if len(seen) != 7 || pages != 3 {
			t.Errorf("saw %d tasks in %d pages, want 7 in 3", len(seen), pages)
		}
		odd := e.must(200, "GET", "/api/v1/tasks/?queue_name=odd&task_type=echo&status=pending", nil)
		if n := len(odd["items"].([]any)); n != 3 {
			t.Errorf("queue filter: %d, want 3", n)
		}
		none := e.must(200, "GET", "/api/v1/tasks/?status=completed", nil)
		if n := len(none["items"].([]any)); n != 0 {
			t.Errorf("status filter: %d, want 0", n)
		}
		future := e.must(200, "GET", "/api/v1/tasks/?created_after=2098-01-01T00:00:00Z", nil)
		if n := len(future["items"].([]any)); n != 0 {
			t.Errorf("created_after filter: %d, want 0", n)
		}
		past := e.must(200, "GET", "/api/v1/tasks/?created_before=2098-01-01T00:00:00Z&created_after=2000-01-01T00:00:00Z", nil)
		if n := len(past["items"].([]any)); n != 7 {
			t.Errorf("created range filter: %d, want 7", n)
		}
		problemAt(t, e.do("GET", "/api/v1/tasks/?task_type=nosuchtype", nil), 422, "query.task_type")
	})
}

func TestHealthAndOpenAPI(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	if r := e.do("GET", "/healthz", nil, "Authorization", ""); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
	if r := e.do("GET", "/readyz", nil, "Authorization", ""); r.status != 200 {
		t.Errorf("readyz %d", r.status)
	}
	doc := e.must(200, "GET", "/openapi.json", nil, "Authorization", "")
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi version %v", doc["openapi"])
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, union := range []string{"TaskCreate", "TaskPublic"} {
		u := schemas[union].(map[string]any)
		disc := u["discriminator"].(map[string]any)
		if disc["propertyName"] != "task_type" {
			t.Errorf("%s discriminator %v", union, disc)
		}
		mapping := disc["mapping"].(map[string]any)
		for _, name := range e.app.Registry.Names() {
			ref, _ := mapping[name].(string)
			target := strings.TrimPrefix(ref, "#/components/schemas/")
			if schemas[target] == nil {
				t.Errorf("%s: type %s maps to missing schema %q", union, name, ref)
			}
		}
		if n := len(u["oneOf"].([]any)); n != e.app.Registry.Len() {
			t.Errorf("%s has %d variants for %d types", union, n, e.app.Registry.Len())
		}
	}
	create := doc["paths"].(map[string]any)["/api/v1/tasks/"].(map[string]any)["post"].(map[string]any)
	ref := create["requestBody"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)["$ref"]
	if ref != "#/components/schemas/TaskCreate" {
		t.Errorf("create body schema %v", ref)
	}
	types := e.must(200, "GET", "/api/v1/task-types", nil)
	list := types["types"].([]any)
	if len(list) != e.app.Registry.Len() {
		t.Fatalf("task-types lists %d", len(list))
	}
	for _, it := range list {
		m := it.(map[string]any)
		s := m["schemas"].(map[string]any)
		if s["create"] == nil || s["public"] == nil || s["update"] == nil {
			t.Errorf("type %v lacks schemas", m["name"])
		}
		def, _ := e.app.Registry.Lookup(m["name"].(string))
		if amo, ok := m["at_most_once"].(bool); !ok || def == nil || amo != def.AtMostOnce {
			t.Errorf("type %v: at_most_once = %v, want %v", m["name"], m["at_most_once"], def != nil && def.AtMostOnce)
		}
	}
	problemAt(t, e.do("GET", "/api/v1/task-types", nil, "Authorization", ""), 401, "")
}

func TestRetry(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		bad := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "fail_with": "boom"})
		id := bad["id"].(string)
		e.waitStatus(id, "failed")
		// Fix the input is not possible (PATCH is for pending tasks), but a
		// retry runs it again: it fails again, with the history kept.
		r := e.must(200, "POST", "/api/v1/tasks/"+id+"/retry", nil)
		if r["status"] != "pending" && r["status"] != "executing" && r["status"] != "failed" {
			t.Fatalf("after retry: %v", r["status"])
		}
		if r["error_message"] != nil && r["status"] == "pending" {
			t.Errorf("retry kept the error message: %v", r)
		}
		again := e.waitStatus(id, "failed")
		if errs := again["errors"].([]any); len(errs) != 2 {
			t.Errorf("errors after a retry: %v", errs)
		}
		ok := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "fine"})
		e.waitStatus(ok["id"].(string), "completed")
		problemAt(t, e.do("POST", "/api/v1/tasks/"+ok["id"].(string)+"/retry", nil), 409, "")
		pending := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "later", "run_at": "2099-01-01T00:00:00Z"})
		problemAt(t, e.do("POST", "/api/v1/tasks/"+pending["id"].(string)+"/retry", nil), 409, "")
		c := e.must(200, "POST", "/api/v1/tasks/"+pending["id"].(string)+"/cancel", nil)
		if c["status"] != "cancelled" {
			t.Fatal(c)
		}
		// A cancelled task can be retried; a retry runs it now, whatever
		// its original run_at.
		if r := e.must(200, "POST", "/api/v1/tasks/"+pending["id"].(string)+"/retry", nil); r["status"] == "cancelled" {
			t.Errorf("retry of cancelled: %v", r["status"])
		}
		e.waitStatus(pending["id"].(string), "completed")
		problemAt(t, e.do("POST", "/api/v1/tasks/01a219db-3e96-7ead-9359-7651978f18c0/retry", nil), 404, "")
	})
}
