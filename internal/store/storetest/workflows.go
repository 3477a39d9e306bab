package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/workflow"
)

// hookSetter is how the suite gives a store its workflow hook.
type hookSetter interface {
	SetWorkflowHook(store.WorkflowHook)
}

// withPolicy gives e's store the workflow package's policy.
func (e *env) withPolicy() {
	e.t.Helper()
	hs, ok := e.s.(hookSetter)
	if !ok {
		e.t.Fatalf("%T has no SetWorkflowHook", e.s)
	}
	hs.SetWorkflowHook(&workflow.Policy{Builder: &workflow.Builder{Registry: e.reg}})
}

func (e *env) newWorkflow(tenant string, start bool, steps ...store.WorkflowStep) *store.Workflow {
	e.t.Helper()
	w, err := e.s.CreateWorkflow(e.ctx, &store.Workflow{ID: uuid.New(), TenantID: tenant, Steps: steps}, start)
	if err != nil {
		e.t.Fatalf("CreateWorkflow: %v", err)
	}
	return w
}

func (e *env) workflow(id uuid.UUID) *store.Workflow {
	e.t.Helper()
	w, err := e.s.GetWorkflow(e.ctx, id, store.AdminScope)
	if err != nil {
		e.t.Fatalf("GetWorkflow(%s): %v", id, err)
	}
	return w
}

func wstep(id, body string, deps ...string) store.WorkflowStep {
	return store.WorkflowStep{ID: id, Body: json.RawMessage(body), DependsOn: deps}
}

// stepsOf returns each step's effective status by id.
func stepsOf(w *store.Workflow) map[string]string {
	out := map[string]string{}
	for i := range w.Steps {
		out[w.Steps[i].ID] = w.Steps[i].Effective()
	}
	return out
}

func stepTask(t *testing.T, w *store.Workflow, id string) *task.Task {
	t.Helper()
	for i := range w.Steps {
		if w.Steps[i].ID == id {
			if w.Steps[i].Task == nil {
				t.Fatalf("step %s has no task", id)
			}
			return w.Steps[i].Task
		}
	}
	t.Fatalf("no step %s", id)
	return nil
}

// claimIDs claims every due echo task and returns them by id.
func (e *env) claimEchoes() map[uuid.UUID]*task.Task {
	e.t.Helper()
	recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 50, Lease: time.Minute, Types: []string{echo.Name}})
	if err != nil {
		e.t.Fatalf("ClaimTasks: %v", err)
	}
	out := map[uuid.UUID]*task.Task{}
	for _, r := range recs {
		out[r.Task.ID] = r.Task
	}
	return out
}

func finishRun(t *task.Task, to task.Status, result string) store.StatusChange {
	c := store.StatusChange{TaskID: t.ID, Scope: store.AdminScope, Change: task.Change{To: to, Attempt: t.Attempt}}
	if to == task.StatusCompleted {
		c.Result = json.RawMessage(result)
	} else {
		c.Err = &task.Error{Message: "boom", Category: task.CategoryPermanent}
	}
	return c
}

func (e *env) finishRuns(cs ...store.StatusChange) {
	e.t.Helper()
	errs, err := e.s.FinishRuns(e.ctx, cs)
	if err != nil {
		e.t.Fatalf("FinishRuns: %v", err)
	}
	for i, err := range errs {
		if err != nil {
			e.t.Fatalf("FinishRuns[%d]: %v", i, err)
		}
	}
}

// workflowStatuses returns the statuses of a workflow's events, in order.
func (e *env) workflowStatuses(id uuid.UUID) []string {
	e.t.Helper()
	var out []string
	for _, ev := range e.events(id) {
		if ev.EventType != store.WorkflowEventType {
			e.t.Errorf("event %d of workflow %s has type %s", ev.ID, id, ev.EventType)
		}
		out = append(out, string(ev.Status))
	}
	return out
}

const echoStep = `{"task_type":"echo","message":"hi"}`

func testWorkflows(t *testing.T, newEnv func(t *testing.T) *env) {
	t.Run("StepsAdvanceInTheFinishingTransaction", func(t *testing.T) {
		e := newEnv(t)
		e.withPolicy()
		w := e.newWorkflow("acme", true,
			wstep("a", echoStep),
			wstep("b", `{"task_type":"echo","message":"a said {{steps.a.data.message}}"}`, "a"),
			wstep("c", echoStep, "a"),
			wstep("d", echoStep, "b", "c"))
		equal(t, "status after create", w.Status, store.WorkflowRunning)
		equal(t, "steps after create", stepsOf(w), map[string]string{"a": "pending", "b": "pending", "c": "pending", "d": "pending"})
		a := stepTask(t, w, "a")
		if a.OriginTenantID != "acme" {
			t.Errorf("step a's task tenant %q", a.OriginTenantID)
		}
		claimed := e.claimEchoes()
		if len(claimed) != 1 || claimed[a.ID] == nil {
			t.Fatalf("claimed %d tasks, want a's only", len(claimed))
		}
		e.finishRuns(finishRun(claimed[a.ID], task.StatusCompleted, `{"artifacts":[],"data":{"message":"hello"}}`))
		w = e.workflow(w.ID)
		equal(t, "steps after a", stepsOf(w), map[string]string{"a": "completed", "b": "pending", "c": "pending", "d": "pending"})
		b := e.get(stepTask(t, w, "b").ID)
		equal(t, "b's filled message", b.Fields.(*echo.Fields).Message, "a said hello")
		if evs := e.events(b.Task.ID); len(evs) != 1 || evs[0].Status != task.StatusPending {
			t.Errorf("b's task has events %s, want its created event", eventTypes(evs))
		}
		// b and c finish in one transaction: d is created once.
		claimed = e.claimEchoes()
		if len(claimed) != 2 {
			t.Fatalf("claimed %d tasks, want b and c", len(claimed))
		}
		var cs []store.StatusChange
		for _, tk := range claimed {
			cs = append(cs, finishRun(tk, task.StatusCompleted, `{"artifacts":[]}`))
		}
		e.finishRuns(cs...)
		w = e.workflow(w.ID)
		d := stepTask(t, w, "d")
		claimed = e.claimEchoes()
		if len(claimed) != 1 || claimed[d.ID] == nil {
			t.Fatalf("claimed %d tasks, want d's only", len(claimed))
		}
		if n := countTasks(t, e, store.ListFilter{Scope: store.AdminScope}); n != 4 {
			t.Errorf("%d tasks, want 4 (one per step)", n)
		}
		e.finishRuns(finishRun(claimed[d.ID], task.StatusCompleted, `{"artifacts":[]}`))
		w = e.workflow(w.ID)
		equal(t, "final status", w.Status, store.WorkflowCompleted)
		if w.CompletedAt == nil || w.StartedAt == nil {
			t.Errorf("started_at %v, completed_at %v", w.StartedAt, w.CompletedAt)
		}
		equal(t, "workflow events", e.workflowStatuses(w.ID), []string{"pending", "running", "completed"})
	})

	t.Run("AHookErrorRollsBackTheFinish", func(t *testing.T) {
		e := newEnv(t)
		e.withPolicy()
		w := e.newWorkflow("", true, wstep("a", echoStep), wstep("b", echoStep, "a"))
		a := e.claimEchoes()[stepTask(t, w, "a").ID]
		e.s.(hookSetter).SetWorkflowHook(failingHook{})
		errs, err := e.s.FinishRuns(e.ctx, []store.StatusChange{finishRun(a, task.StatusCompleted, `{"artifacts":[]}`)})
		if err == nil {
			t.Fatalf("FinishRuns with a failing hook = %v, nil; want the hook's error", errs)
		}
		equal(t, "a after the failed finish", e.get(a.ID).Task.Status, task.StatusExecuting)
		e.withPolicy()
		e.finishRuns(finishRun(a, task.StatusCompleted, `{"artifacts":[]}`))
		equal(t, "steps", stepsOf(e.workflow(w.ID)), map[string]string{"a": "completed", "b": "pending"})
	})

	t.Run("FailureCancelsDependentsAndResumeReruns", func(t *testing.T) {
		e := newEnv(t)
		e.withPolicy()
		w := e.newWorkflow("", false, wstep("a", echoStep), wstep("b", echoStep, "a"), wstep("c", echoStep, "b"), wstep("x", echoStep))
		equal(t, "unstarted", w.Status, store.WorkflowPending)
		if _, err := e.s.StartWorkflow(e.ctx, w.ID, store.Scope{TenantID: "other"}); !errors.Is(err, store.ErrWorkflowNotFound) {
			t.Errorf("start by another tenant: %v", err)
		}
		if _, err := e.s.StartWorkflow(e.ctx, w.ID, store.AdminScope); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.StartWorkflow(e.ctx, w.ID, store.AdminScope); !errors.Is(err, store.ErrWorkflowState) {
			t.Errorf("second start: %v", err)
		}
		claimed := e.claimEchoes()
		w = e.workflow(w.ID)
		aID, xID := stepTask(t, w, "a").ID, stepTask(t, w, "x").ID
		e.finishRuns(finishRun(claimed[aID], task.StatusFailed, ""), finishRun(claimed[xID], task.StatusCompleted, `{"artifacts":[]}`))
		w = e.workflow(w.ID)
		equal(t, "steps after a failed", stepsOf(w), map[string]string{"a": "failed", "b": "cancelled", "c": "cancelled", "x": "completed"})
		equal(t, "status", w.Status, store.WorkflowFailed)
		w, err := e.s.ResumeWorkflow(e.ctx, w.ID, store.AdminScope)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "steps after resume", stepsOf(w), map[string]string{"a": "pending", "b": "pending", "c": "pending", "x": "completed"})
		if stepTask(t, w, "a").ID == aID || stepTask(t, w, "x").ID != xID {
			t.Errorf("resume must re-run a with a new task and keep x's")
		}
		// Cancel: the pending task is cancelled, waiting steps end.
		w, err = e.s.CancelWorkflow(e.ctx, w.ID, store.AdminScope)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "status after cancel", w.Status, store.WorkflowCancelled)
		equal(t, "steps after cancel", stepsOf(w), map[string]string{"a": "cancelled", "b": "cancelled", "c": "cancelled", "x": "completed"})
		equal(t, "events", e.workflowStatuses(w.ID), []string{"pending", "running", "failed", "running", "cancelled"})
		if _, err := e.s.CancelWorkflow(e.ctx, w.ID, store.AdminScope); !errors.Is(err, store.ErrWorkflowState) {
			t.Errorf("second cancel: %v", err)
		}
	})

	t.Run("ConcurrentLastDependenciesCreateTheStepOnce", func(t *testing.T) {
		e := newEnv(t)
		e.withPolicy()
		for round := range 5 {
			w := e.newWorkflow("", true, wstep("a", echoStep), wstep("b", echoStep), wstep("c", echoStep), wstep("z", echoStep, "a", "b", "c"))
			claimed := e.claimEchoes()
			if len(claimed) != 3 {
				t.Fatalf("round %d: claimed %d", round, len(claimed))
			}
			var wg sync.WaitGroup
			for _, tk := range claimed {
				wg.Go(func() {
					errs, err := e.s.FinishRuns(context.Background(), []store.StatusChange{finishRun(tk, task.StatusCompleted, `{"artifacts":[]}`)})
					if err != nil || errs[0] != nil {
						t.Errorf("FinishRuns: %v %v", err, errs)
					}
				})
			}
			wg.Wait()
			w = e.workflow(w.ID)
			z := stepTask(t, w, "z")
			claimed = e.claimEchoes()
			if len(claimed) != 1 || claimed[z.ID] == nil {
				t.Fatalf("round %d: claimed %d tasks after a, b, c; want z's only", round, len(claimed))
			}
			e.finishRuns(finishRun(claimed[z.ID], task.StatusCompleted, `{"artifacts":[]}`))
			equal(t, "status", e.workflow(w.ID).Status, store.WorkflowCompleted)
		}
	})

	t.Run("CancelRacesFinishes", func(t *testing.T) {
		e := newEnv(t)
		e.withPolicy()
		for round := range 8 {
			w := e.newWorkflow("", true, wstep("a", echoStep), wstep("b", echoStep), wstep("c", echoStep, "a", "b"))
			claimed := e.claimEchoes()
			var wg sync.WaitGroup
			for _, tk := range claimed {
				wg.Go(func() {
					if _, err := e.s.FinishRuns(context.Background(), []store.StatusChange{finishRun(tk, task.StatusCompleted, `{"artifacts":[]}`)}); err != nil {
						t.Errorf("round %d: FinishRuns: %v", round, err)
					}
				})
			}
			wg.Go(func() {
				if _, err := e.s.CancelWorkflow(context.Background(), w.ID, store.AdminScope); err != nil && !errors.Is(err, store.ErrWorkflowState) {
					t.Errorf("round %d: CancelWorkflow: %v", round, err)
				}
			})
			wg.Wait()
			w = e.workflow(w.ID)
			if w.Status != store.WorkflowCancelled {
				t.Errorf("round %d: workflow is %s", round, w.Status)
			}
			for _, tk := range e.claimEchoes() {
				t.Errorf("round %d: task %s was claimable after the cancel", round, tk.ID)
			}
		}
	})

	t.Run("EventsReachWebhooks", func(t *testing.T) { testWorkflowWebhooks(t, newEnv) })
	t.Run("TenantsSeeTheirOwn", func(t *testing.T) {
		e := newEnv(t)
		mine := e.newWorkflow("acme", false, wstep("a", echoStep))
		theirs := e.newWorkflow("other", false, wstep("a", echoStep))
		if _, err := e.s.GetWorkflow(e.ctx, theirs.ID, store.Scope{TenantID: "acme"}); !errors.Is(err, store.ErrWorkflowNotFound) {
			t.Errorf("another tenant's workflow: %v", err)
		}
		list, err := e.s.ListWorkflows(e.ctx, store.WorkflowFilter{Scope: store.Scope{TenantID: "acme"}})
		if err != nil || len(list) != 1 || list[0].ID != mine.ID {
			t.Errorf("acme's list: %v, %v", list, err)
		}
		all, err := e.s.ListWorkflows(e.ctx, store.WorkflowFilter{Scope: store.AdminScope})
		if err != nil || len(all) != 2 || !slices.IsSortedFunc(all, func(a, b *store.Workflow) int { return -compareUUID(a.ID, b.ID) }) {
			t.Errorf("admin's list: %d, %v", len(all), err)
		}
		evs, err := e.s.ListEvents(e.ctx, store.EventFilter{Scope: store.Scope{TenantID: "acme"}})
		if err != nil || len(evs) != 1 || evs[0].TaskID != mine.ID {
			t.Errorf("acme's events: %v, %v", evs, err)
		}
	})
}

func compareUUID(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) }

type failingHook struct{}

func (failingHook) Advance(context.Context, *store.Workflow) (store.WorkflowPlan, error) {
	return store.WorkflowPlan{}, errors.New("the policy failed")
}
