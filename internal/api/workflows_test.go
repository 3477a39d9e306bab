package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// sseStatuses reads the stream at path until n events of type kind
// arrived (or 10 s passed) and returns their statuses.
func (e *env) sseStatuses(path, kind string, n int) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var out []string
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	event := ""
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == kind:
			var b struct {
				Status     string `json:"status"`
				WorkflowID string `json:"workflow_id"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &b); err != nil || b.WorkflowID == "" {
				e.t.Errorf("event data %s: %v", line, err)
			}
			out = append(out, b.Status)
		}
	}
	return out
}

// waitWorkflow polls a workflow until it reaches want.
func (e *env) waitWorkflow(id, want string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := e.must(200, "GET", "/api/v1/workflows/"+id, nil)
		if m["status"] == want {
			return m
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("workflow %s is %v, want %s: %v", id, m["status"], want, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stepsByID(m map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	steps, _ := m["steps"].([]any)
	for _, s := range steps {
		sm := s.(map[string]any)
		out[sm["id"].(string)] = sm
	}
	return out
}

// TestWorkflowPipelineRuns: generation → image_adjuster → echo from one
// POST, with the adjuster's image the generated artifact's URL (a whole
// reference) and the echo's message interpolating it.
func TestWorkflowPipelineRuns(t *testing.T) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			e := start(t, d)
			m := e.must(201, "POST", "/api/v1/workflows/", map[string]any{"start": true, "steps": []any{
				map[string]any{"id": "gen", "task": map[string]any{"task_type": "generation", "prompt": "a red chair", "width": 64, "height": 64}},
				map[string]any{"id": "adjust", "depends_on": []string{"gen"}, "task": map[string]any{
					"task_type": "image_adjuster", "image_url": "{{steps.gen.artifacts.0.url}}", "brightness": 10}},
				map[string]any{"id": "report", "depends_on": []string{"adjust"}, "task": map[string]any{
					"task_type": "echo", "message": "adjusted {{steps.gen.task_id}} into {{steps.adjust.artifacts.0.url}}"}},
			}})
			id := m["id"].(string)
			if m["status"] != "running" || stepsByID(m)["gen"]["task_id"] == nil || stepsByID(m)["adjust"]["task_id"] != nil {
				t.Fatalf("created workflow %v", m)
			}
			m = e.waitWorkflow(id, "completed")
			steps := stepsByID(m)
			gen := e.must(200, "GET", "/api/v1/tasks/"+steps["gen"]["task_id"].(string), nil)
			adj := e.must(200, "GET", "/api/v1/tasks/"+steps["adjust"]["task_id"].(string), nil)
			rep := e.must(200, "GET", "/api/v1/tasks/"+steps["report"]["task_id"].(string), nil)
			genURL := gen["result"].(map[string]any)["artifacts"].([]any)[0].(map[string]any)["url"]
			if adj["image_url"] != genURL {
				t.Errorf("adjust's image_url %v, want gen's artifact %v", adj["image_url"], genURL)
			}
			if msg, _ := rep["message"].(string); !strings.HasPrefix(msg, "adjusted "+gen["id"].(string)+" into ") {
				t.Errorf("report's message %q", msg)
			}
			list := e.must(200, "GET", "/api/v1/workflows/", nil)
			if ws := list["workflows"].([]any); len(ws) != 1 || ws[0].(map[string]any)["id"] != id {
				t.Errorf("list %v", list)
			}
			// Cleanup deletes the intermediate steps' artifacts only.
			c := e.must(200, "POST", "/api/v1/workflows/"+id+"/cleanup", nil)
			if got := c["steps"].([]any); len(got) != 2 || c["deleted_artifacts"].(float64) < 2 {
				t.Errorf("cleanup %v", c)
			}
			if r := e.do("GET", strings.TrimPrefix(genURL.(string), e.base), nil); r.status != 404 {
				t.Errorf("gen's artifact after cleanup: %d", r.status)
			}
			// The final step's output is kept.
			repTask := e.must(200, "GET", "/api/v1/tasks/"+steps["report"]["task_id"].(string), nil)
			if repTask["status"] != "completed" {
				t.Errorf("report is %v", repTask["status"])
			}
			e.must(409, "POST", "/api/v1/workflows/"+id+"/start", nil)
			// The workflow's events are in the log: the firehose
			// replays them.
			want := []string{"pending", "running", "completed"}
			if got := e.sseStatuses("/api/v1/events?after=0&task_type=workflow", "workflow_status_update", len(want)); !slices.Equal(got, want) {
				t.Errorf("workflow events %v, want %v", got, want)
			}
		})
	}
}

func TestWorkflowCreateRejectsInvalidGraphsNamingTheStep(t *testing.T) {
	e := start(t, "sqlite")
	echo := func(msg string) map[string]any { return map[string]any{"task_type": "echo", "message": msg} }
	cases := []struct {
		name  string
		steps []any
		loc   string
		step  string
	}{
		{"cycle", []any{
			map[string]any{"id": "a", "task": echo("x"), "depends_on": []string{"b"}},
			map[string]any{"id": "b", "task": echo("x"), "depends_on": []string{"a"}}}, "body.steps[0].depends_on", "a"},
		{"unknown reference", []any{
			map[string]any{"id": "a", "task": echo("x")},
			map[string]any{"id": "b", "task": echo("{{steps.zz.data}}"), "depends_on": []string{"a"}}}, "body.steps[1].task", "b"},
		{"unknown step", []any{map[string]any{"id": "a", "task": echo("x"), "depends_on": []string{"nope"}}}, "body.steps[0].depends_on", "a"},
		{"body the type rejects", []any{
			map[string]any{"id": "a", "task": echo("x")},
			map[string]any{"id": "b", "task": map[string]any{"task_type": "echo", "message": "x", "sleep_ms": -1}}}, "body.steps[1].task.sleep_ms", "b"},
		{"base field out of range", []any{
			map[string]any{"id": "a", "task": map[string]any{"task_type": "echo", "message": "x", "priority": 5000}}}, "body.steps[0].task.priority", "a"},
		{"unknown type", []any{map[string]any{"id": "a", "task": map[string]any{"task_type": "nope"}}}, "body.steps[0].task", "a"},
		// A body with references is checked in full only when it is
		// filled, but whether an executor can run it is known now.
		{"no executor for a step with references", []any{
			map[string]any{"id": "a", "task": echo("x")},
			map[string]any{"id": "b", "task": map[string]any{"task_type": "echo", "message": "{{steps.a.data.message}}", "provider_type": "nope"}, "depends_on": []string{"a"}}},
			"body.steps[1].task.provider_type", "b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/workflows/", map[string]any{"steps": c.steps})
			problemAt(t, r, 422, c.loc)
			// The step's id is in the problem: as an error's value, or
			// quoted in the detail.
			if !strings.Contains(string(r.body), `"value":"`+c.step+`"`) && !strings.Contains(string(r.body), `step \"`+c.step+`\"`) {
				t.Errorf("the problem does not name step %s: %s", c.step, r.body)
			}
		})
	}
	if n := e.must(200, "GET", "/api/v1/workflows/", nil)["workflows"].([]any); len(n) != 0 {
		t.Errorf("invalid workflows were stored: %v", n)
	}
}

func TestWorkflowTenantsAndActions(t *testing.T) {
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	acme, other := e.tenantKey("acme"), e.tenantKey("other")
	body := map[string]any{"steps": []any{
		map[string]any{"id": "a", "task": map[string]any{"task_type": "echo", "message": "x"}},
		map[string]any{"id": "b", "task": map[string]any{"task_type": "echo", "message": "{{steps.a.data.message}}"}, "depends_on": []string{"a"}},
	}}
	m := e.must(201, "POST", "/api/v1/workflows/", body, "Authorization", "Bearer "+acme)
	id := m["id"].(string)
	if m["status"] != "pending" || m["origin_tenant_id"] != "acme" {
		t.Fatalf("created %v", m)
	}
	e.must(404, "GET", "/api/v1/workflows/"+id, nil, "Authorization", "Bearer "+other)
	e.must(404, "POST", "/api/v1/workflows/"+id+"/start", nil, "Authorization", "Bearer "+other)
	if ws := e.must(200, "GET", "/api/v1/workflows/", nil, "Authorization", "Bearer "+other)["workflows"].([]any); len(ws) != 0 {
		t.Errorf("other tenant lists %v", ws)
	}
	e.must(409, "POST", "/api/v1/workflows/"+id+"/resume", nil, "Authorization", "Bearer "+acme)
	m = e.must(200, "POST", "/api/v1/workflows/"+id+"/start", nil, "Authorization", "Bearer "+acme)
	a := stepsByID(m)["a"]
	if m["status"] != "running" || a["status"] != "pending" || a["task_id"] == nil {
		t.Fatalf("started %v", m)
	}
	task := e.must(200, "GET", "/api/v1/tasks/"+a["task_id"].(string), nil, "Authorization", "Bearer "+acme)
	if task["origin_tenant_id"] != "acme" {
		t.Errorf("step task tenant %v", task["origin_tenant_id"])
	}
	m = e.must(200, "POST", "/api/v1/workflows/"+id+"/cancel", nil, "Authorization", "Bearer "+acme)
	if s := stepsByID(m); m["status"] != "cancelled" || s["a"]["status"] != "cancelled" || s["b"]["status"] != "cancelled" {
		t.Fatalf("cancelled %v", m)
	}
	m = e.must(200, "POST", "/api/v1/workflows/"+id+"/resume", nil, "Authorization", "Bearer "+acme)
	if s := stepsByID(m); m["status"] != "running" || s["a"]["status"] != "pending" || s["a"]["task_id"] == a["task_id"] {
		t.Fatalf("resumed %v", m)
	}
	e.must(404, "GET", "/api/v1/workflows/not-a-uuid", nil)
}
