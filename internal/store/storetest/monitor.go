package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// testMonitor covers the operations view's counts (store.Monitor) against
// a known set of tasks.
func testMonitor(t *testing.T, newEnv func(t *testing.T) *env) {
	monitor := func(e *env) store.Monitor {
		m, ok := e.s.(store.Monitor)
		if !ok {
			e.t.Fatal("the store does not implement store.Monitor")
		}
		return m
	}
	// load creates, in queue q of tenant tenant, pending tasks, one
	// executing on executor ex, completed and failed ones; it returns
	// when the first pending task was created.
	load := func(e *env, q, tenant, ex string, pending, completed, failed int) time.Time {
		e.t.Helper()
		in := func(t *task.Task) { t.QueueName, t.OriginTenantID, t.ProviderType = q, tenant, ex }
		var first time.Time
		for i := range pending {
			rec := e.createSink(in)
			if i == 0 {
				first = rec.Task.CreatedAt
			}
		}
		finish := func(to task.Status) {
			rec := e.createSink(func(t *task.Task) { in(t); t.QueueName = q + "-claim" })
			c := e.claim(rec.Task.ID, q+"-claim")
			time.Sleep(5 * time.Millisecond) // a measurable run
			e.setStatus(store.StatusChange{TaskID: rec.Task.ID, Change: task.Change{To: to, Attempt: c.Task.Attempt, Result: json.RawMessage(`{"artifacts":[]}`)}})
		}
		for range completed {
			finish(task.StatusCompleted)
		}
		for range failed {
			finish(task.StatusFailed)
		}
		rec := e.createSink(func(t *task.Task) { in(t); t.QueueName = q + "-run" })
		e.claim(rec.Task.ID, q+"-run")
		return first
	}
	find := func(t *testing.T, stats []store.QueueStats, q string) store.QueueStats {
		t.Helper()
		for _, s := range stats {
			if s.Queue == q {
				return s
			}
		}
		t.Fatalf("no stats for queue %q in %+v", q, stats)
		return store.QueueStats{}
	}

	t.Run("queue stats", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		m := monitor(e)
		oldest := load(e, "qa", "t1", "mock", 3, 2, 1)
		now := task.Now()
		stats, err := m.QueueStats(e.ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(stats) != 3 {
			t.Errorf("QueueStats has %d queues, want 3 (qa, qa-claim, qa-run): %+v", len(stats), stats)
		}
		qa := find(t, stats, "qa")
		if qa.Pending != 3 || qa.Executing != 0 || !qa.OldestPending.Equal(oldest) {
			t.Errorf("qa = %+v, want 3 pending, none executing, oldest %v", qa, oldest)
		}
		run := find(t, stats, "qa-run")
		if run.Pending != 0 || run.Executing != 1 || !run.OldestPending.IsZero() {
			t.Errorf("qa-run = %+v, want 1 executing", run)
		}
		for _, tc := range []struct {
			name            string
			at              time.Duration
			completed, fail [3]int
		}{
			{"now", 0, [3]int{2, 2, 2}, [3]int{1, 1, 1}},
			{"3 minutes later", 3 * time.Minute, [3]int{0, 2, 2}, [3]int{0, 1, 1}},
			{"10 minutes later", 10 * time.Minute, [3]int{0, 0, 2}, [3]int{0, 0, 1}},
		} {
			stats, err := m.QueueStats(e.ctx, now.Add(tc.at))
			if err != nil {
				t.Fatal(err)
			}
			c := find(t, stats, "qa-claim")
			if c.Completed != tc.completed || c.Failed != tc.fail {
				t.Errorf("%s: qa-claim completed %v failed %v, want %v and %v", tc.name, c.Completed, c.Failed, tc.completed, tc.fail)
			}
		}
		stats, err = m.QueueStats(e.ctx, now.Add(20*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stats {
			if s.Queue == "qa-claim" {
				t.Errorf("a queue with nothing live or recent is listed: %+v", s)
			}
		}
	})

	t.Run("tenant usage and executing counts", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		m := monitor(e)
		load(e, "qa", "t1", "exa", 2, 3, 1)
		load(e, "qb", "t2", "exb", 1, 1, 0)
		all, err := m.TenantUsage(e.ctx, store.AdminScope)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].TenantID != "t1" || all[1].TenantID != "t2" {
			t.Fatalf("TenantUsage(admin) = %+v, want t1 and t2", all)
		}
		want := map[string]int{"pending": 2, "executing": 1, "completed": 3, "failed": 1}
		equal(t, "t1 by status", all[0].ByStatus, want)
		if s := all[0].RunSeconds; s <= 0.015 || s > 60 {
			t.Errorf("t1 run seconds = %v, want the four runs of at least 5 ms each", s)
		}
		own, err := m.TenantUsage(e.ctx, store.Scope{TenantID: "t2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(own) != 1 || own[0].TenantID != "t2" {
			t.Fatalf("TenantUsage(t2) = %+v, want t2 alone", own)
		}
		equal(t, "t2 by status", own[0].ByStatus, map[string]int{"pending": 1, "executing": 1, "completed": 1})
		byEx, byInst, err := m.ExecutingBy(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "executing by executor", byEx, map[string]int{"exa": 1, "exb": 1})
		equal(t, "executing by instance", byInst, map[string]int{"worker-1": 2})
		stats, err := m.ExecutorStats(e.ctx, task.Now().Add(-15*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if a, b := stats["exa"], stats["exb"]; len(stats) != 2 || a.Completed != 3 || a.Failed != 1 || b.Completed != 1 || b.Failed != 0 ||
			a.RunSeconds < 0.015 || a.RunSeconds > 60 || b.RunSeconds < 0.005 {
			t.Errorf("ExecutorStats = %+v, want exa 3 completed (at least 15 ms) and 1 failed, exb 1 completed", stats)
		}
		if later, err := m.ExecutorStats(e.ctx, task.Now().Add(time.Minute)); err != nil || len(later) != 0 {
			t.Errorf("ExecutorStats from a minute ahead = %v, %v; want nothing", later, err)
		}
	})

	t.Run("recent failures", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		m := monitor(e)
		fail := func(ex, msg string) uuid.UUID {
			rec := e.createSink(func(t *task.Task) { t.QueueName, t.ProviderType = "qf", ex })
			c := e.claim(rec.Task.ID, "qf")
			time.Sleep(2 * time.Millisecond) // distinct completion times
			e.setStatus(store.StatusChange{TaskID: rec.Task.ID, Change: task.Change{To: task.StatusFailed, Attempt: c.Task.Attempt,
				Err: &task.Error{Attempt: c.Task.Attempt, Message: msg, Category: task.CategoryPermanent, At: task.Now()}}})
			return rec.Task.ID
		}
		since := task.Now().Add(-time.Second)
		fail("exa", "first")
		second, third := fail("exa", "second"), fail("exa", "third")
		other := fail("exb", "other")
		load(e, "qc", "", "exa", 0, 2, 0) // completions are no failures
		got, err := m.RecentFailures(e.ctx, since, 2)
		if err != nil {
			t.Fatal(err)
		}
		summary := map[string][]string{}
		for ex, fs := range got {
			for _, f := range fs {
				summary[ex] = append(summary[ex], fmt.Sprintf("%s %s %s", f.TaskID, f.Category, f.Message))
				if f.At.Before(since) || f.At.After(task.Now()) || f.TaskType == "" {
					t.Errorf("failure %+v: want its type and a time since %v", f, since)
				}
			}
		}
		equal(t, "recent failures", summary, map[string][]string{
			"exa": {third.String() + " permanent third", second.String() + " permanent second"},
			"exb": {other.String() + " permanent other"},
		})
		if later, err := m.RecentFailures(e.ctx, task.Now().Add(time.Minute), 5); err != nil || len(later) != 0 {
			t.Errorf("RecentFailures from a minute ahead = %v, %v; want nothing", later, err)
		}
	})

	t.Run("slots in use", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		m := monitor(e)
		slots, ok := e.s.(store.Slots)
		if !ok {
			t.Fatal("the store does not implement store.Slots")
		}
		servers := []store.SlotServer{{URL: "http://a", Slots: 2}, {URL: "http://b", Slots: 1}}
		var held []store.RunRef
		for range 3 {
			rec := e.reach(task.StatusExecuting)
			run := store.RunRef{TaskID: rec.Task.ID, Attempt: rec.Task.Attempt}
			if _, err := slots.TakeSlot(e.ctx, "comfy", servers, run); err != nil {
				t.Fatal(err)
			}
			held = append(held, run)
		}
		got, err := m.SlotsInUse(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "slots in use", got, map[string]map[string]int{"comfy": {"http://a": 2, "http://b": 1}})
		// A slot whose task no longer executes at its attempt is free.
		e.setStatus(store.StatusChange{TaskID: held[0].TaskID, Change: task.Change{To: task.StatusCancelled}})
		got, err = m.SlotsInUse(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := got["comfy"]["http://a"] + got["comfy"]["http://b"]; n != 2 {
			t.Errorf("after a cancel, %d slots in use (%v), want 2", n, got)
		}
	})

	t.Run("processes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		m := monitor(e)
		now := task.Now()
		a := store.Process{Instance: "a", Role: "serve", Version: "v1", StartedAt: now.Add(-time.Hour), LastSeen: now}
		b := store.Process{Instance: "b", Role: "worker", Version: "v1", StartedAt: now.Add(-time.Hour), LastSeen: now.Add(-10 * time.Minute)}
		for _, p := range []store.Process{a, b} {
			if err := m.RegisterProcess(e.ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		got, err := m.ListProcesses(e.ctx, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "every process", got, []store.Process{a, b})
		a.LastSeen, a.Version = now.Add(time.Second), "v2"
		if err := m.RegisterProcess(e.ctx, a); err != nil {
			t.Fatal(err)
		}
		got, err = m.ListProcesses(e.ctx, now.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "processes seen in the last minute", got, []store.Process{a})
		n, err := m.ForgetProcesses(e.ctx, now.Add(-5*time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("ForgetProcesses = %d, %v; want 1 (b)", n, err)
		}
		got, err = m.ListProcesses(e.ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "processes after forgetting", got, []store.Process{a})
	})
}
