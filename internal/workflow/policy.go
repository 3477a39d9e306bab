package workflow

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// Policy is the store.WorkflowHook: given a running workflow as it is
// now, it creates the tasks of the waiting steps whose dependencies all
// completed (their references filled from those steps' results), cancels
// the waiting steps a failed or cancelled dependency can never let run,
// fails a step whose filled body its type rejects, and ends the workflow
// once every step has ended: completed when all completed, failed
// otherwise.
type Policy struct {
	Builder *Builder
}

var _ store.WorkflowHook = (*Policy)(nil)

// Advance implements store.WorkflowHook.
func (p *Policy) Advance(ctx context.Context, wf *store.Workflow) (store.WorkflowPlan, error) {
	var plan store.WorkflowPlan
	status := make(map[string]string, len(wf.Steps))
	for i := range wf.Steps {
		status[wf.Steps[i].ID] = wf.Steps[i].Effective()
	}
	byID := make(map[string]*store.WorkflowStep, len(wf.Steps))
	for i := range wf.Steps {
		byID[wf.Steps[i].ID] = &wf.Steps[i]
	}
	// Steps are given in any order; ending one may end its dependents,
	// so repeat until nothing changes.
	for changed := true; changed; {
		changed = false
		for i := range wf.Steps {
			st := &wf.Steps[i]
			if status[st.ID] != store.StepWaiting || st.TaskID != nil {
				continue
			}
			ready, blocked := true, ""
			for _, d := range st.DependsOn {
				switch status[d] {
				case string(task.StatusCompleted):
				case string(task.StatusFailed), string(task.StatusCancelled):
					blocked = d
				default:
					ready = false
				}
			}
			switch {
			case blocked != "":
				why := fmt.Sprintf("step %q it depends on %s", blocked, status[blocked])
				plan.End = append(plan.End, store.StepEnd{StepID: st.ID, Status: store.StepCancelled, Error: why})
				status[st.ID], changed = store.StepCancelled, true
			case ready:
				rec, err := p.build(ctx, wf, st, byID)
				if err != nil {
					if !IsBodyError(err) {
						return store.WorkflowPlan{}, err
					}
					plan.End = append(plan.End, store.StepEnd{StepID: st.ID, Status: store.StepFailed, Error: err.Error()})
					status[st.ID], changed = store.StepFailed, true
					continue
				}
				plan.Create = append(plan.Create, store.StepTask{StepID: st.ID, Record: rec})
				// Planned: no longer waiting, not ended.
				status[st.ID] = store.WorkflowRunning
			}
		}
	}
	ended, failed := true, ""
	for _, st := range wf.Steps {
		switch s := status[st.ID]; s {
		case string(task.StatusCompleted):
		case string(task.StatusFailed), string(task.StatusCancelled):
			if failed == "" {
				failed = fmt.Sprintf("step %q %s", st.ID, s)
			}
		default:
			ended = false
		}
	}
	if ended {
		plan.Status = store.WorkflowCompleted
		if failed != "" {
			plan.Status, plan.Error = store.WorkflowFailed, failed
		}
	}
	return plan, nil
}

// build fills a ready step's references from its dependencies' results
// and builds its task.
func (p *Policy) build(ctx context.Context, wf *store.Workflow, st *store.WorkflowStep, byID map[string]*store.WorkflowStep) (*store.Record, error) {
	var obj any
	if err := json.Unmarshal(st.Body, &obj); err != nil {
		return nil, &BodyError{"the step's task is not JSON"}
	}
	docs := map[string]any{}
	for _, r := range References(obj) {
		if _, done := docs[r.Step]; done {
			continue
		}
		dep := byID[r.Step]
		if dep == nil || dep.Task == nil {
			return nil, &BodyError{fmt.Sprintf("%s: step %q has no task", r.Text, r.Step)}
		}
		doc := map[string]any{}
		if len(dep.Task.Result) > 0 {
			if err := json.Unmarshal(dep.Task.Result, &doc); err != nil {
				return nil, &BodyError{fmt.Sprintf("%s: step %q's result is not a JSON object", r.Text, r.Step)}
			}
		}
		doc["task_id"] = dep.Task.ID.String()
		docs[r.Step] = doc
	}
	body, err := Fill(st.Body, docs)
	if err != nil {
		return nil, &BodyError{err.Error()}
	}
	rec, err := p.Builder.Build(ctx, body, wf.TenantID)
	if err != nil {
		return nil, err
	}
	return rec, nil
}
