package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

func testClaimTasks(t *testing.T, newEnv func(t *testing.T) *env) {
	// order creates tasks whose claim order is D, C, B, A, E and a task
	// F that is not due, all in one queue; it returns them by letter.
	// Each is its own tenant's first task, so all take the same turn in
	// the fair share (testScheduling) and the first-come rule orders them:
	// priority, then run_at, then created_at.
	order := func(e *env) map[string]*task.Task {
		now := task.Now()
		n := 0
		mk := func(prio int, runAt, created time.Time) *task.Task {
			n++
			return e.createSink(func(t *task.Task) {
				t.Priority, t.RunAt, t.CreatedAt, t.UpdatedAt, t.QueueName = prio, runAt, created, created, "q"
				t.OriginTenantID = fmt.Sprintf("tenant-%d", n)
			}).Task
		}
		m := map[string]*task.Task{}
		// Created out of order so insertion order cannot pass for the rule.
		m["E"] = mk(-1, now.Add(-10*time.Minute), now.Add(-10*time.Minute))
		m["B"] = mk(5, now.Add(-1*time.Minute), now.Add(-1*time.Minute))
		m["F"] = mk(10, now.Add(time.Hour), now.Add(-20*time.Minute))
		m["A"] = mk(0, now.Add(-3*time.Minute), now.Add(-3*time.Minute))
		m["C"] = mk(5, now.Add(-2*time.Minute), now.Add(-30*time.Second)) // due before B, created after it
		m["D"] = mk(5, now.Add(-2*time.Minute), now.Add(-2*time.Minute))
		// Due, but written in a zone ahead of UTC; and not due, written in a
		// zone behind it. Both compare as instants.
		m["G"] = mk(-2, now.Add(-time.Minute).In(zone), now.Add(-time.Minute))
		m["H"] = mk(10, now.Add(time.Hour).In(time.FixedZone("", -5*3600)), now)
		return m
	}
	wantOrder := []string{"D", "C", "B", "A", "E", "G"}

	t.Run("order one by one", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		m := order(e)
		for _, letter := range wantOrder {
			recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Task.ID != m[letter].ID {
				t.Fatalf("claim returned %v, want task %s (%s)", ids(recs), letter, m[letter].ID)
			}
		}
		recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
		if err != nil || len(recs) != 0 {
			t.Errorf("claim after every due task returned %v, %v; F and H are not due", ids(recs), err)
		}
		for _, l := range []string{"F", "H"} {
			if st := e.get(m[l].ID).Task.Status; st != task.StatusPending {
				t.Errorf("task %s not due is %s", l, st)
			}
		}
	})

	t.Run("order in one claim and its effects", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		m := order(e)
		before := task.Now()
		recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "worker-9", Limit: 4, Lease: 90 * time.Second})
		after := task.Now()
		if err != nil {
			t.Fatal(err)
		}
		var want []uuid.UUID
		for _, l := range wantOrder[:4] {
			want = append(want, m[l].ID)
		}
		if got := ids(recs); !slices.Equal(got, want) {
			t.Fatalf("ClaimTasks(limit 4) = %v, want D C B A = %v", got, want)
		}
		for _, r := range recs {
			stored := e.get(r.Task.ID)
			equal(t, "claimed task", r.Task, stored.Task)
			equal(t, "claimed fields", r.Fields, stored.Fields)
			if _, ok := r.Fields.(*sinkFields); !ok || r.Def != e.sink {
				t.Errorf("claimed record has Fields %T, Def %v", r.Fields, r.Def)
			}
			st := stored.Task
			if st.Status != task.StatusExecuting || st.Attempt != 1 || st.ExecutorInstance != "worker-9" {
				t.Errorf("claimed task: status %s, attempt %d, executor %q", st.Status, st.Attempt, st.ExecutorInstance)
			}
			// The executor that runs the task is its provider.
			if st.ProviderType == "" || st.ExecutorType != st.ProviderType {
				t.Errorf("claimed task: executor_type %q, want its provider_type %q", st.ExecutorType, st.ProviderType)
			}
			within(t, "started_at", st.StartedAt, before, after)
			within(t, "lease_expires_at", st.LeaseExpiresAt, before.Add(90*time.Second), after.Add(90*time.Second))
			evs := e.events(st.ID)
			if len(evs) != 2 || evs[1].Status != task.StatusExecuting || evs[1].EventType != sinkName+"_status_update" {
				t.Errorf("events of a claimed task = %s, want created then executing", eventTypes(evs))
			}
		}
		for _, l := range []string{"E", "G", "F", "H"} {
			if st := e.get(m[l].ID).Task; st.Status != task.StatusPending || st.Attempt != 0 || len(e.events(st.ID)) != 1 {
				t.Errorf("unclaimed task %s: status %s attempt %d", l, st.Status, st.Attempt)
			}
		}
	})

	t.Run("limit, queues and types", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		byQueue := map[string][]uuid.UUID{}
		byType := map[string][]uuid.UUID{}
		for i := range 12 {
			q := []string{"q1", "q2", "q3"}[i%3]
			var r *task.Task
			if i%2 == 0 {
				r = e.createSink(func(t *task.Task) { t.QueueName = q }).Task
			} else {
				r = e.createEcho(func(t *task.Task) { t.QueueName = q }).Task
			}
			byQueue[q] = append(byQueue[q], r.ID)
			byType[r.Type] = append(byType[r.Type], r.ID)
		}
		recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 0, Lease: time.Minute})
		if err != nil || len(recs) != 0 {
			t.Errorf("ClaimTasks(limit 0) = %v, %v; want nothing", ids(recs), err)
		}
		recs, err = e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 3, Lease: time.Minute, Queues: []string{"q1", "q3"}})
		if err != nil || len(recs) != 3 {
			t.Fatalf("ClaimTasks(limit 3, q1 q3) = %v, %v; want 3 tasks", ids(recs), err)
		}
		for _, r := range recs {
			if q := r.Task.QueueName; q != "q1" && q != "q3" {
				t.Errorf("claimed a task of queue %s", q)
			}
		}
		recs, err = e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 100, Lease: time.Minute, Queues: []string{"q2"}, Types: []string{echo.Name}})
		if err != nil {
			t.Fatal(err)
		}
		var want []uuid.UUID
		for _, id := range byQueue["q2"] {
			if slices.Contains(byType[echo.Name], id) {
				want = append(want, id)
			}
		}
		if got := ids(recs); len(got) != len(want) || len(want) == 0 {
			t.Errorf("ClaimTasks(q2, echo) = %v, want %v", got, want)
		}
		for _, r := range recs {
			if _, ok := r.Fields.(*echo.Fields); !ok || !slices.Contains(want, r.Task.ID) {
				t.Errorf("claimed %s with fields %T, want an echo task of q2", r.Task.ID, r.Fields)
			}
		}
		if n := countTasks(t, e, store.ListFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusExecuting}}); n != 3+len(want) {
			t.Errorf("%d tasks executing, want %d", n, 3+len(want))
		}
	})

	t.Run("concurrent claimers", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		const total, workers = 200, 4
		for range total {
			e.createEcho(func(t *task.Task) { t.QueueName = "q" })
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			claimed = map[uuid.UUID]string{}
			dups    []uuid.UUID
			errs    []error
		)
		start := make(chan struct{})
		for w := range workers {
			worker := "worker-" + string(rune('a'+w))
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for {
					recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: worker, Limit: 7, Lease: time.Minute})
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					}
					for _, r := range recs {
						if _, dup := claimed[r.Task.ID]; dup || r.Task.Attempt != 1 || r.Task.ExecutorInstance != worker {
							dups = append(dups, r.Task.ID)
						}
						claimed[r.Task.ID] = worker
					}
					mu.Unlock()
					if err != nil || len(recs) == 0 {
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("claim errors: %v", errs)
		}
		if len(dups) > 0 {
			t.Errorf("tasks claimed twice: %v", dups)
		}
		if len(claimed) != total {
			t.Errorf("claimed %d distinct tasks, want %d", len(claimed), total)
		}
		if n := countTasks(t, e, store.ListFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusExecuting}}); n != total {
			t.Errorf("%d tasks executing, want %d", n, total)
		}
		if evs := e.events(uuid.Nil); len(evs) != 2*total {
			t.Errorf("%d events, want %d (created and executing for each)", len(evs), 2*total)
		}
	})
}

func testRunWrites(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)

	// claimed returns a task claimed twice: the first run is stale.
	claimed := func(e *env) (rec *store.Record, stale, current int) {
		r := e.createSink(nil)
		first := e.claim(r.Task.ID, r.Task.QueueName)
		e.setStatus(store.StatusChange{TaskID: r.Task.ID, Change: task.Change{To: task.StatusPending, Attempt: first.Task.Attempt}})
		second := e.claim(r.Task.ID, r.Task.QueueName)
		return second, first.Task.Attempt, second.Task.Attempt
	}

	t.Run("SaveFields", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec, stale, current := claimed(e)
		id := rec.Task.ID
		before, evs := e.get(id), e.events(id)
		zombie := fullFields()
		zombie.Output = "from the stale run"
		for _, attempt := range []int{stale, 0, current + 1} {
			if err := e.s.SaveFields(e.ctx, id, attempt, e.sink, zombie); !errors.Is(err, task.ErrStaleRun) {
				t.Errorf("SaveFields(attempt %d): err = %v, want task.ErrStaleRun", attempt, err)
			}
		}
		e.assertUnchanged(before, evs)

		f := rec.Fields.(*sinkFields)
		f.Output, f.Counter, f.Tags, f.Note = "result.png", 99, []string{"done"}, ptr("saved")
		if err := e.s.SaveFields(e.ctx, id, current, e.sink, f); err != nil {
			t.Fatalf("SaveFields by the owning run: %v", err)
		}
		equal(t, "saved fields", e.get(id).Fields, f)

		other := e.createSink(nil)
		if err := e.s.SaveFields(e.ctx, other.Task.ID, 0, e.sink, other.Fields); !errors.Is(err, task.ErrStaleRun) {
			t.Errorf("SaveFields of a pending task: err = %v, want task.ErrStaleRun", err)
		}
	})

	t.Run("SetProgress", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec, stale, current := claimed(e)
		id := rec.Task.ID
		before, evs := e.get(id), e.events(id)
		if _, err := e.s.SetProgress(e.ctx, store.ProgressUpdate{TaskID: id, Attempt: stale, Progress: 5, Stage: "zombie", Lease: time.Hour, Emit: true}); !errors.Is(err, task.ErrStaleRun) {
			t.Errorf("SetProgress by a stale run: err = %v, want task.ErrStaleRun", err)
		}
		e.assertUnchanged(before, evs)

		start := task.Now()
		ev, err := e.s.SetProgress(e.ctx, store.ProgressUpdate{TaskID: id, Attempt: current, Progress: 42.5, Stage: "denoising", Lease: 5 * time.Minute})
		if err != nil || ev != nil {
			t.Fatalf("SetProgress without Emit = %v, %v; want no event", ev, err)
		}
		st := e.get(id).Task
		if st.Progress != 42.5 || st.Stage != "denoising" {
			t.Errorf("progress %v, stage %q", st.Progress, st.Stage)
		}
		within(t, "lease_expires_at", st.LeaseExpiresAt, start.Add(5*time.Minute), task.Now().Add(5*time.Minute))
		if now := e.events(id); len(now) != len(evs) {
			t.Errorf("SetProgress without Emit wrote events: %s", eventTypes(now))
		}

		ev, err = e.s.SetProgress(e.ctx, store.ProgressUpdate{TaskID: id, Attempt: current, Progress: 60, Stage: "upscaling", Lease: time.Minute, Emit: true})
		if err != nil || ev == nil {
			t.Fatalf("SetProgress with Emit = %v, %v; want an event", ev, err)
		}
		after := e.events(id)
		if len(after) != len(evs)+1 {
			t.Fatalf("events = %s, want one progress event more", eventTypes(after))
		}
		last := after[len(after)-1]
		if last.ID != ev.ID || last.EventType != sinkName+"_progress_update" || last.Status != task.StatusExecuting {
			t.Errorf("progress event = %+v (returned %+v)", last, ev)
		}
		if !jsonEqual(last.Body, ev.Body) {
			t.Errorf("stored body %s, returned %s", last.Body, ev.Body)
		}
		if st := e.get(id).Task; st.Progress != 60 || st.Stage != "upscaling" {
			t.Errorf("after emitting: progress %v, stage %q", st.Progress, st.Stage)
		}
	})

	t.Run("SetServiceTaskID", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec, stale, current := claimed(e)
		id := rec.Task.ID
		before, evs := e.get(id), e.events(id)
		if err := e.s.SetServiceTaskID(e.ctx, id, stale, "zombie-job"); !errors.Is(err, task.ErrStaleRun) {
			t.Errorf("SetServiceTaskID by a stale run: err = %v, want task.ErrStaleRun", err)
		}
		e.assertUnchanged(before, evs)
		if err := e.s.SetServiceTaskID(e.ctx, id, current, "job-123"); err != nil {
			t.Fatalf("SetServiceTaskID: %v", err)
		}
		if got := e.get(id).Task.ServiceTaskID; got != "job-123" {
			t.Errorf("service_task_id = %q", got)
		}
		if err := e.s.SetServiceTaskID(e.ctx, uuid.New(), 1, "x"); !errors.Is(err, task.ErrStaleRun) && !errors.Is(err, task.ErrNotFound) {
			t.Errorf("SetServiceTaskID(unknown id): err = %v", err)
		}
	})

	t.Run("SetExecutorHandle", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec, stale, current := claimed(e)
		id := rec.Task.ID
		if len(rec.Task.ExecutorHandle) != 0 {
			t.Fatalf("a new task has handle %s", rec.Task.ExecutorHandle)
		}
		before, evs := e.get(id), e.events(id)
		zombie := json.RawMessage(`{"executor":"mock","external_id":"zombie","version":1}`)
		if err := e.s.SetExecutorHandle(e.ctx, id, stale, zombie, "zombie"); !errors.Is(err, task.ErrStaleRun) {
			t.Errorf("SetExecutorHandle by a stale run: err = %v, want task.ErrStaleRun", err)
		}
		e.assertUnchanged(before, evs)
		h := json.RawMessage(`{"executor":"gpu","server":"http://gpu-1:8188","external_id":"p-1","version":1,"state":{"n":[1,2]}}`)
		if err := e.s.SetExecutorHandle(e.ctx, id, current, h, "p-1"); err != nil {
			t.Fatalf("SetExecutorHandle: %v", err)
		}
		got := e.get(id).Task
		if !jsonEqual(got.ExecutorHandle, h) || got.ServiceTaskID != "p-1" {
			t.Errorf("after saving: handle %s, service_task_id %q; want %s, p-1", got.ExecutorHandle, got.ServiceTaskID, h)
		}
		if n := len(e.events(id)); n != len(evs) {
			t.Errorf("saving a handle wrote %d events", n-len(evs))
		}
		// A claim hands the saved handle to the next run of a resumed
		// task (a re-queue without resume clears it: see task.Change).
		e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: task.StatusPending, Attempt: current, Resume: true}})
		if next := e.claim(id, rec.Task.QueueName); !jsonEqual(next.Task.ExecutorHandle, h) {
			t.Errorf("claimed run got handle %s, want %s", next.Task.ExecutorHandle, h)
		}
		if err := e.s.SetExecutorHandle(e.ctx, id, current+1, json.RawMessage(`{"broken`), "x"); err == nil {
			t.Error("SetExecutorHandle accepted a handle that is not JSON")
		}
		if err := e.s.SetExecutorHandle(e.ctx, uuid.New(), 1, h, "x"); !errors.Is(err, task.ErrStaleRun) && !errors.Is(err, task.ErrNotFound) {
			t.Errorf("SetExecutorHandle(unknown id): err = %v", err)
		}
	})

	t.Run("AddRunError", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec, stale, current := claimed(e)
		id := rec.Task.ID
		before, evs := e.get(id), e.events(id)
		if err := e.s.AddRunError(e.ctx, id, stale, task.Error{Message: "zombie", Category: task.CategoryProviderUnavailable}); !errors.Is(err, task.ErrStaleRun) {
			t.Errorf("AddRunError by a stale run: err = %v, want task.ErrStaleRun", err)
		}
		e.assertUnchanged(before, evs)
		for _, msg := range []string{"server http://gpu-1 failed", "server http://gpu-2 failed"} {
			if err := e.s.AddRunError(e.ctx, id, current, task.Error{Message: msg, Category: task.CategoryProviderUnavailable}); err != nil {
				t.Fatalf("AddRunError: %v", err)
			}
		}
		got := e.get(id).Task
		if len(got.Errors) != len(before.Task.Errors)+2 {
			t.Fatalf("errors after two additions: %+v", got.Errors)
		}
		last := got.Errors[len(got.Errors)-1]
		if last.Message != "server http://gpu-2 failed" || last.Attempt != current || last.Category != task.CategoryProviderUnavailable || last.At.IsZero() {
			t.Errorf("the last error is %+v; want gpu-2's at attempt %d with its time", last, current)
		}
		if got.Status != task.StatusExecuting || got.ErrorMessage != before.Task.ErrorMessage {
			t.Errorf("recording an error changed the run: status %s, error_message %q", got.Status, got.ErrorMessage)
		}
		if err := e.s.AddRunError(e.ctx, uuid.New(), 1, task.Error{Message: "x"}); !errors.Is(err, task.ErrStaleRun) {
			t.Errorf("AddRunError(unknown id): err = %v", err)
		}
	})

	t.Run("ProviderRequestedKept", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		named := e.createSink(func(tk *task.Task) { tk.ProviderRequested = true })
		other := e.createSink(nil)
		if !e.get(named.Task.ID).Task.ProviderRequested || e.get(other.Task.ID).Task.ProviderRequested {
			t.Error("provider_requested is not stored as created")
		}
		if c := e.claim(named.Task.ID, named.Task.QueueName); !c.Task.ProviderRequested {
			t.Error("a claim does not hand the run provider_requested")
		}
	})
}
