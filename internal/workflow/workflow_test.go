package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

func step(id, body string, deps ...string) StepSpec {
	return StepSpec{ID: id, Task: json.RawMessage(body), DependsOn: deps}
}

const echoBody = `{"task_type":"echo","message":"hi"}`

func TestParseRejectsBadGraphsNamingTheStep(t *testing.T) {
	cases := []struct {
		name  string
		steps []StepSpec
		step  string
		want  string
	}{
		{"cycle", []StepSpec{step("a", echoBody, "c"), step("b", echoBody, "a"), step("c", echoBody, "b")}, "a", "cycle"},
		{"self", []StepSpec{step("a", echoBody, "a")}, "a", "itself"},
		{"unknown dependency", []StepSpec{step("a", echoBody), step("b", echoBody, "zz")}, "b", `unknown step "zz"`},
		{"unknown reference", []StepSpec{step("a", echoBody), step("b", `{"task_type":"echo","message":"{{steps.nope.data}}"}`, "a")}, "b", `unknown step "nope"`},
		{"reference to a step not depended on", []StepSpec{step("a", echoBody), step("b", `{"task_type":"echo","message":"{{steps.a.data}}"}`)}, "b", "does not depend on"},
		{"duplicate id", []StepSpec{step("a", echoBody), step("a", echoBody)}, "a", "two steps"},
		{"bad id", []StepSpec{step("a b", echoBody)}, "a b", "step id"},
		{"no task type", []StepSpec{step("a", `{"message":"x"}`)}, "a", "task_type"},
		{"not an object", []StepSpec{step("a", `[1]`)}, "a", "JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Parse(c.steps)
			var se *StepError
			if !errors.As(err, &se) {
				t.Fatalf("Parse = %v, want a *StepError", err)
			}
			if se.Step != c.step || !strings.Contains(se.Msg, c.want) {
				t.Fatalf("error %+v, want step %q and %q", se, c.step, c.want)
			}
		})
	}
	// A transitive dependency may be referred to.
	if err := Parse([]StepSpec{step("a", echoBody), step("b", echoBody, "a"),
		step("c", `{"task_type":"echo","message":"{{steps.a.data.message}}"}`, "b")}); err != nil {
		t.Fatalf("Parse of a valid graph: %v", err)
	}
}

func TestFillKeepsTypesOfWholeReferencesAndInterpolatesText(t *testing.T) {
	docs := map[string]any{"gen": map[string]any{
		"artifacts": []any{map[string]any{"url": "http://x/a.png", "width": 512.0}},
		"data":      map[string]any{"n": 3.0, "ok": true},
	}}
	got, err := Fill(json.RawMessage(`{"u":"{{steps.gen.artifacts.0.url}}","w":"{{ steps.gen.artifacts.0.width }}",
		"o":"{{steps.gen.data}}","t":"size {{steps.gen.artifacts.0.width}} of {{steps.gen.artifacts.0.url}} {{steps.gen.data.ok}}","k":[1,"x"]}`), docs)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if m["u"] != "http://x/a.png" || m["w"] != 512.0 || m["t"] != "size 512 of http://x/a.png true" {
		t.Fatalf("filled %s", got)
	}
	if o, ok := m["o"].(map[string]any); !ok || o["n"] != 3.0 {
		t.Fatalf("a whole object reference became %#v", m["o"])
	}
	for _, bad := range []string{`"{{steps.gen.artifacts.3.url}}"`, `"x {{steps.gen.nope}}"`, `"{{steps.other.x}}"`, `"{{steps.gen.data.n.x}}"`} {
		if _, err := Fill(json.RawMessage(bad), docs); err == nil {
			t.Errorf("Fill(%s) = nil error", bad)
		}
	}
}

func newPolicy(t *testing.T) *Policy {
	t.Helper()
	reg := registry.New()
	if err := reg.Register(echo.Type()); err != nil {
		t.Fatal(err)
	}
	return &Policy{Builder: &Builder{Registry: reg}}
}

func stored(specs ...StepSpec) *store.Workflow {
	w := &store.Workflow{ID: uuid.New(), TenantID: "acme", Status: store.WorkflowRunning}
	for _, s := range specs {
		w.Steps = append(w.Steps, store.WorkflowStep{ID: s.ID, DependsOn: s.DependsOn, Body: s.Task, Status: store.StepWaiting})
	}
	return w
}

func finish(st *store.WorkflowStep, status task.Status, result string) {
	id := uuid.New()
	st.TaskID, st.Task = &id, &task.Task{ID: id, Status: status, Result: json.RawMessage(result)}
}

func TestPolicyCreatesReadyStepsFillsReferencesAndEnds(t *testing.T) {
	p := newPolicy(t)
	ctx := context.Background()
	w := stored(step("a", echoBody), step("b", `{"task_type":"echo","message":"got {{steps.a.data.message}}"}`, "a"),
		step("c", echoBody, "a", "b"))
	plan, err := p.Advance(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Create) != 1 || plan.Create[0].StepID != "a" || plan.Status != "" {
		t.Fatalf("first plan %+v", plan)
	}
	if rec := plan.Create[0].Record; rec.Task.OriginTenantID != "acme" || rec.Task.Type != "echo" {
		t.Fatalf("step a's task %+v", rec.Task)
	}
	finish(&w.Steps[0], task.StatusCompleted, `{"artifacts":[],"data":{"message":"hi"}}`)
	plan, err = p.Advance(ctx, w)
	if err != nil || len(plan.Create) != 1 || plan.Create[0].StepID != "b" {
		t.Fatalf("second plan %+v, %v", plan, err)
	}
	if f := plan.Create[0].Record.Fields.(*echo.Fields); f.Message != "got hi" {
		t.Fatalf("b's message %q", f.Message)
	}
	finish(&w.Steps[1], task.StatusCompleted, `{}`)
	finish(&w.Steps[2], task.StatusCompleted, `{}`)
	if plan, _ = p.Advance(ctx, w); plan.Status != store.WorkflowCompleted || len(plan.Create) != 0 {
		t.Fatalf("final plan %+v", plan)
	}
}

// A step whose task was deleted (DELETE /tasks/{id} of a finished task)
// never gets another: its dependents are cancelled.
func TestPolicyTreatsADeletedStepTaskAsFailed(t *testing.T) {
	w := stored(step("a", echoBody), step("b", echoBody), step("c", echoBody, "a", "b"))
	finish(&w.Steps[0], task.StatusCompleted, `{}`)
	w.Steps[0].Task = nil // deleted
	plan, err := newPolicy(t).Advance(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Create {
		if c.StepID == "a" || c.StepID == "c" {
			t.Fatalf("plan creates a task for step %s: %+v", c.StepID, plan)
		}
	}
	if len(plan.End) != 1 || plan.End[0].StepID != "c" || plan.End[0].Status != store.StepCancelled {
		t.Fatalf("plan ends %+v, want c cancelled", plan.End)
	}
}

func TestPolicyCancelsDependentsOfAFailedStepAndFailsRejectedBodies(t *testing.T) {
	p := newPolicy(t)
	ctx := context.Background()
	w := stored(step("a", echoBody), step("b", echoBody, "a"), step("c", echoBody, "b"),
		step("d", `{"task_type":"echo","message":"{{steps.e.data.n}}","sleep_ms":-5}`, "e"), step("e", echoBody))
	finish(&w.Steps[0], task.StatusFailed, ``)
	finish(&w.Steps[4], task.StatusCompleted, `{"data":{"n":"x"}}`)
	plan, err := p.Advance(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[string]string{}
	for _, e := range plan.End {
		ends[e.StepID] = e.Status
	}
	if ends["b"] != store.StepCancelled || ends["c"] != store.StepCancelled || ends["d"] != store.StepFailed || len(plan.Create) != 0 {
		t.Fatalf("plan %+v", plan)
	}
	if plan.Status != store.WorkflowFailed || !strings.Contains(plan.Error, `"a"`) {
		t.Fatalf("workflow ends %q (%s), want failed naming a", plan.Status, plan.Error)
	}
}
