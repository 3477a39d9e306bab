package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// runExample creates an example's task, through the union route
// (POST /api/v1/tasks/) or the type's own route, checks that it reads back
// as its concrete type through both GET routes, and waits until it
// reaches the example's terminal status. It returns the task id.
func (s *server) runExample(ctx context.Context, def *registry.Definition, ex registry.Example, typedRoute bool) (string, error) {
	fail := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("task type %q, example %q: %w", def.Name, ex.Name, fmt.Errorf(format, a...))
	}
	for _, in := range ex.Inputs {
		if _, err := s.app.Artifacts.Put(ctx, in.Key, in.ContentType, in.Data); err != nil {
			return fail("storing input %s: %w", in.Key, err)
		}
	}
	body := maps.Clone(ex.Body)
	if body == nil {
		body = map[string]any{}
	}
	path := "/api/v1/tasks/"
	if typedRoute {
		path += def.Name
		delete(body, "task_type")
	} else {
		body["task_type"] = def.Name
	}
	created, err := s.expect(ctx, http.StatusCreated, http.MethodPost, path, body)
	if err != nil {
		return fail("creating the task: %w; the example's Body must be valid for the type's create schema", err)
	}
	id, _ := created["id"].(string)
	if created["task_type"] != def.Name || id == "" {
		return fail("POST %s answered task_type %v and id %q", path, created["task_type"], id)
	}
	got, err := s.expect(ctx, http.StatusOK, http.MethodGet, "/api/v1/tasks/"+id, nil)
	if err != nil {
		return fail("reading the task back: %w", err)
	}
	if got["task_type"] != def.Name {
		return fail("GET /api/v1/tasks/%s answered task_type %v", id, got["task_type"])
	}
	if err := sameValues(ex.Body, got); err != nil {
		return fail("GET /api/v1/tasks/%s does not return the type's fields as created: %w "+
			"(check the model's json and db tags and the migration)", id, err)
	}
	typed, err := s.expect(ctx, http.StatusOK, http.MethodGet, "/api/v1/tasks/"+def.Name+"/"+id, nil)
	if err != nil || typed["id"] != id {
		return fail("reading the task through its typed route: %v (id %v)", err, typed["id"])
	}

	final, err := s.waitTerminal(ctx, id)
	if err != nil {
		return fail("%w", err)
	}
	status, _ := final["status"].(string)
	msg, _ := final["error_message"].(string)
	if task.Status(status) != ex.WantStatus {
		return fail("the task ended %s, want %s (error_message %q, errors %v): fix the processor or the example",
			status, ex.WantStatus, msg, final["errors"])
	}
	if ex.WantError != "" && !strings.Contains(msg, ex.WantError) {
		return fail("the task failed with %q, want an error containing %q", msg, ex.WantError)
	}
	if ex.WantStatus == task.StatusCompleted {
		res, err := s.expect(ctx, http.StatusOK, http.MethodGet, "/api/v1/tasks/"+id+"/result", nil)
		if err != nil || res["result"] == nil {
			return fail("a completed task has no result (%v): the processor must return a *task.Result", err)
		}
	}
	return id, nil
}

// waitTerminal polls a task until it is completed, failed or cancelled.
func (s *server) waitTerminal(ctx context.Context, id string) (map[string]any, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last map[string]any
	for {
		got, err := s.expect(ctx, http.StatusOK, http.MethodGet, "/api/v1/tasks/"+id, nil)
		if err == nil {
			last = got
			if st := task.Status(fmt.Sprint(got["status"])); st.Terminal() {
				return got, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("task %s did not finish in time (last seen %v, progress %v, stage %v): %w",
				id, last["status"], last["progress"], last["stage"], ctx.Err())
		case <-tick.C:
		}
	}
}

// checkUpdate creates a task that is not due for an hour, patches it
// through its type's update schema and cancels it.
func (s *server) checkUpdate(ctx context.Context, def *registry.Definition) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("task type %q, update: %w", def.Name, fmt.Errorf(format, a...))
	}
	if len(def.Examples) == 0 {
		return fail("no example to build a task from; declare Examples in its Type()")
	}
	ex := def.Examples[0]
	if i := slices.IndexFunc(def.Examples, func(ex registry.Example) bool { return ex.WantStatus == task.StatusCompleted }); i >= 0 {
		ex = def.Examples[i]
	}
	for _, in := range ex.Inputs {
		if _, err := s.app.Artifacts.Put(ctx, in.Key, in.ContentType, in.Data); err != nil {
			return fail("storing input %s: %w", in.Key, err)
		}
	}
	body := maps.Clone(ex.Body)
	if body == nil {
		body = map[string]any{}
	}
	body["task_type"] = def.Name
	body["run_at"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	created, err := s.expect(ctx, http.StatusCreated, http.MethodPost, "/api/v1/tasks/", body)
	if err != nil {
		return fail("creating a task due in an hour: %w", err)
	}
	id, _ := created["id"].(string)
	patch := map[string]any{"priority": 7}
	for _, uf := range def.UpdateFields {
		if v, ok := ex.Body[uf.Column.JSONName]; ok {
			patch[uf.Column.JSONName] = v
		}
	}
	got, err := s.expect(ctx, http.StatusOK, http.MethodPatch, "/api/v1/tasks/"+id, patch)
	if err != nil {
		return fail("PATCH with its update fields %v: %w", slices.Sorted(maps.Keys(patch)), err)
	}
	if err := sameValues(patch, got); err != nil {
		return fail("the patched task: %w", err)
	}
	if r, err := s.call(ctx, http.MethodPatch, "/api/v1/tasks/"+id, map[string]any{"no_such_field_of_any_type": 1}); err != nil || r.status != http.StatusUnprocessableEntity {
		return fail("PATCH with an unknown field answered %d (%v), want 422", r.status, err)
	}
	if _, err := s.expect(ctx, http.StatusOK, http.MethodPost, "/api/v1/tasks/"+id+"/cancel", nil); err != nil {
		return fail("cancelling: %w", err)
	}
	return nil
}

// checkRoutes checks, for every type, that its typed routes never serve a
// task of another type: GET /tasks/{type}/{id} answers 404 for it, the
// list filtered on the type holds only its tasks, and its create route
// refuses a body of another type. ids are tasks by type.
func (s *server) checkRoutes(ctx context.Context, reg *registry.Registry, ids map[string][]string) error {
	var errs []error
	for _, def := range reg.All() {
		for other, list := range ids {
			for _, id := range list {
				want := http.StatusNotFound
				if other == def.Name {
					want = http.StatusOK
				}
				r, err := s.call(ctx, http.MethodGet, "/api/v1/tasks/"+def.Name+"/"+id, nil)
				if err != nil || r.status != want {
					errs = append(errs, fmt.Errorf("GET /api/v1/tasks/%s/%s (a %s task) answered %d (%v), want %d", def.Name, id, other, r.status, err, want))
				}
			}
		}
		page, err := s.expect(ctx, http.StatusOK, http.MethodGet, "/api/v1/tasks/?limit=500&task_type="+def.Name, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s tasks: %w", def.Name, err))
			continue
		}
		items, _ := page["items"].([]any)
		for _, it := range items {
			if m, _ := it.(map[string]any); m["task_type"] != def.Name {
				errs = append(errs, fmt.Errorf("GET /api/v1/tasks/?task_type=%s returned a %v task (%v)", def.Name, m["task_type"], m["id"]))
			}
		}
		if len(items) < len(ids[def.Name]) {
			errs = append(errs, fmt.Errorf("GET /api/v1/tasks/?task_type=%s returned %d tasks, want at least %d", def.Name, len(items), len(ids[def.Name])))
		}
		for _, other := range reg.All() {
			if other.Name == def.Name || len(other.Examples) == 0 {
				continue
			}
			body := maps.Clone(other.Examples[0].Body)
			if body == nil {
				body = map[string]any{}
			}
			body["task_type"] = other.Name
			r, err := s.call(ctx, http.MethodPost, "/api/v1/tasks/"+def.Name, body)
			if err != nil || r.status/100 != 4 {
				errs = append(errs, fmt.Errorf("POST /api/v1/tasks/%s with a %s body answered %d (%v), want a 4xx: %s", def.Name, other.Name, r.status, err, r.body))
			}
		}
	}
	return errors.Join(errs...)
}

// sameValues checks that every key of want has an equal value in got:
// numbers compare as numbers, RFC 3339 times as instants.
func sameValues(want, got map[string]any) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if k == "task_type" {
			continue
		}
		g, ok := got[k]
		if !ok {
			errs = append(errs, fmt.Errorf("field %s is missing", k))
			continue
		}
		if !valueEqual(want[k], g) {
			errs = append(errs, fmt.Errorf("field %s is %v, want %v", k, g, want[k]))
		}
	}
	return errors.Join(errs...)
}

func valueEqual(want, got any) bool {
	norm := func(v any) any {
		raw, err := json.Marshal(v)
		if err != nil {
			return v
		}
		var out any
		if json.Unmarshal(raw, &out) != nil {
			return v
		}
		return out
	}
	w, g := norm(want), norm(got)
	if ws, ok := w.(string); ok {
		if gs, ok := g.(string); ok {
			wt, werr := time.Parse(time.RFC3339Nano, ws)
			gt, gerr := time.Parse(time.RFC3339Nano, gs)
			if werr == nil && gerr == nil {
				return wt.Equal(gt)
			}
		}
	}
	return reflect.DeepEqual(w, g)
}
