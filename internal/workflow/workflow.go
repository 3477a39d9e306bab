// Package workflow is the policy of workflows: DAGs of steps, each a task
// create body whose values may refer to the results of the steps it
// depends on ({{steps.<id>.<path>}}). It checks a workflow when it is
// created (Parse), and decides, each time the store runs it as its
// store.WorkflowHook, which steps get their task (with the references
// filled), which end without one, and how the workflow ends (Policy). The
// store runs the policy inside the transaction that writes a step's
// terminal status, so a step's task is created with the completion of
// its last dependency or not at all.
package workflow

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// MaxSteps bounds the steps of one workflow.
const MaxSteps = 100

// StepSpec is one step as a create request gives it.
type StepSpec struct {
	ID        string          `json:"id"`
	Task      json.RawMessage `json:"task"`
	DependsOn []string        `json:"depends_on,omitempty"`
}

// StepError says which step of a workflow is invalid and why.
type StepError struct {
	// Step is the step's id ("" for the workflow as a whole); Index its
	// position in steps.
	Step  string
	Index int
	// Field is where in the step the problem is ("id", "depends_on",
	// "task", or a field of the task body).
	Field string
	Msg   string
}

func (e *StepError) Error() string {
	if e.Step == "" {
		return fmt.Sprintf("steps[%d]: %s", e.Index, e.Msg)
	}
	return fmt.Sprintf("step %q: %s", e.Step, e.Msg)
}

var stepIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Parse checks a workflow's steps: ids (unique, letters, digits, _ and -),
// dependencies (existing steps, no cycle), the task bodies (JSON objects
// with a task_type), and references (each names a step the step depends
// on, directly or not, and has a path). It returns the steps in the
// order given.
func Parse(steps []StepSpec) error {
	if len(steps) == 0 {
		return &StepError{Index: 0, Field: "steps", Msg: "a workflow needs at least one step"}
	}
	if len(steps) > MaxSteps {
		return &StepError{Index: MaxSteps, Field: "steps", Msg: fmt.Sprintf("a workflow has at most %d steps", MaxSteps)}
	}
	index := make(map[string]int, len(steps))
	for i, st := range steps {
		if !stepIDPattern.MatchString(st.ID) {
			return &StepError{Step: st.ID, Index: i, Field: "id", Msg: "a step id is 1 to 64 letters, digits, _ or -"}
		}
		if _, dup := index[st.ID]; dup {
			return &StepError{Step: st.ID, Index: i, Field: "id", Msg: "two steps have this id"}
		}
		index[st.ID] = i
	}
	for i, st := range steps {
		for _, d := range st.DependsOn {
			if _, ok := index[d]; !ok {
				return &StepError{Step: st.ID, Index: i, Field: "depends_on", Msg: fmt.Sprintf("depends on unknown step %q", d)}
			}
			if d == st.ID {
				return &StepError{Step: st.ID, Index: i, Field: "depends_on", Msg: "depends on itself"}
			}
		}
	}
	if cyc := cycle(steps, index); cyc != nil {
		return &StepError{Step: cyc[0], Index: index[cyc[0]], Field: "depends_on",
			Msg: "the dependencies form a cycle: " + strings.Join(cyc, " → ")}
	}
	for i, st := range steps {
		var obj map[string]any
		if err := json.Unmarshal(st.Task, &obj); err != nil || obj == nil {
			return &StepError{Step: st.ID, Index: i, Field: "task", Msg: "the task must be a JSON object (a task create body)"}
		}
		if name, _ := obj["task_type"].(string); name == "" {
			return &StepError{Step: st.ID, Index: i, Field: "task.task_type", Msg: "the task needs a task_type"}
		}
		anc := ancestors(steps, index, i)
		for _, r := range References(obj) {
			if _, ok := index[r.Step]; !ok {
				return &StepError{Step: st.ID, Index: i, Field: "task", Msg: fmt.Sprintf("%s refers to unknown step %q", r.Text, r.Step)}
			}
			if !anc[r.Step] {
				return &StepError{Step: st.ID, Index: i, Field: "task",
					Msg: fmt.Sprintf("%s refers to step %q, which this step does not depend on", r.Text, r.Step)}
			}
		}
	}
	return nil
}

// cycle returns the steps of a dependency cycle, first step repeated at
// the end, or nil.
func cycle(steps []StepSpec, index map[string]int) []string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(steps))
	var stack []string
	var visit func(i int) []string
	visit = func(i int) []string {
		color[i] = grey
		stack = append(stack, steps[i].ID)
		for _, d := range steps[i].DependsOn {
			j := index[d]
			switch color[j] {
			case grey:
				at := slices.Index(stack, d)
				return append(slices.Clone(stack[at:]), d)
			case white:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return nil
	}
	for i := range steps {
		if color[i] == white {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// ancestors returns the steps step i depends on, directly or not.
func ancestors(steps []StepSpec, index map[string]int, i int) map[string]bool {
	out := map[string]bool{}
	todo := slices.Clone(steps[i].DependsOn)
	for len(todo) > 0 {
		d := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if out[d] {
			continue
		}
		out[d] = true
		todo = append(todo, steps[index[d]].DependsOn...)
	}
	return out
}
