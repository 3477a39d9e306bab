package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// testExecutorGates covers claims under executor limits and pauses, and
// the start-rate gate (store.Gates).
func testExecutorGates(t *testing.T, newEnv func(t *testing.T) *env) {
	// on creates a due task on executor ex in queue q at priority prio.
	on := func(e *env, ex, q string, prio int) uuid.UUID {
		return e.createSink(func(t *task.Task) { t.ProviderType, t.QueueName, t.Priority = ex, q, prio }).Task.ID
	}
	claimed := func(e *env, p store.ClaimParams) []uuid.UUID {
		e.t.Helper()
		p.Worker, p.Lease = "w", time.Minute
		if p.Limit == 0 {
			p.Limit = 20
		}
		recs, err := e.s.ClaimTasks(e.ctx, p)
		if err != nil {
			e.t.Fatalf("ClaimTasks: %v", err)
		}
		out := make([]uuid.UUID, len(recs))
		for i, r := range recs {
			out[i] = r.Task.ID
		}
		return out
	}
	gates := func(e *env) store.Gates {
		g, ok := e.s.(store.Gates)
		if !ok {
			e.t.Fatal("the store does not implement store.Gates")
		}
		return g
	}

	t.Run("executor concurrency", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// The executor a's tasks come first in claim order: its limit must
		// not hold back b's.
		var as, bs []uuid.UUID
		for i := range 3 {
			as = append(as, on(e, "a", "q", 10+i))
			bs = append(bs, on(e, "b", "q", 0))
		}
		limits := map[string]int{"a": 2}
		got := claimed(e, store.ClaimParams{ExecutorLimits: limits})
		want := []uuid.UUID{as[2], as[1], bs[0], bs[1], bs[2]}
		if !sameSet(got, want) {
			t.Fatalf("claim under a limit of 2 on a took %v, want the two first of a and every b: %v", got, want)
		}
		if again := claimed(e, store.ClaimParams{ExecutorLimits: limits}); len(again) != 0 {
			t.Fatalf("a second claim with a full took %v", again)
		}
		// One of a's runs ends: one more a may run.
		e.setStatus(store.StatusChange{TaskID: as[2], Change: task.Change{To: task.StatusCompleted, Attempt: 1, Result: []byte(`{}`)}})
		if again := claimed(e, store.ClaimParams{ExecutorLimits: limits}); !slices.Equal(again, []uuid.UUID{as[0]}) {
			t.Fatalf("after one of a's runs ended the claim took %v, want %v", again, as[0])
		}
		// Without limits the claim takes whatever is due (nothing here).
		if rest := claimed(e, store.ClaimParams{}); len(rest) != 0 {
			t.Fatalf("nothing is left, the claim took %v", rest)
		}
	})

	t.Run("executor and queue limits together", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		if err := e.s.SetQueueLimit(e.ctx, "q", 1); err != nil {
			t.Fatal(err)
		}
		aq1, _, _, aOther := on(e, "a", "q", 3), on(e, "b", "q", 2), on(e, "a", "q", 1), on(e, "a", "other", 0)
		got := claimed(e, store.ClaimParams{ExecutorLimits: map[string]int{"a": 2}})
		if want := []uuid.UUID{aq1, aOther}; !sameSet(got, want) {
			t.Fatalf("claim with queue q limited to 1 and executor a to 2 took %v, want %v", got, want)
		}
	})

	for _, limited := range []bool{false, true} {
		name := "paused executor is not claimed"
		if limited {
			name += " (with executor limits)"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var limits map[string]int
			if limited {
				limits = map[string]int{"a": 5, "c": 5}
			}
			a, b, c := on(e, "a", "q", 2), on(e, "b", "q", 1), on(e, "c", "q", 0)
			g := gates(e)
			now := time.Now()
			if err := g.PauseExecutor(e.ctx, "a", now.Add(time.Hour), "the service answered 429"); err != nil {
				t.Fatal(err)
			}
			// An earlier pause does not shorten a later one.
			if err := g.PauseExecutor(e.ctx, "a", now.Add(time.Minute), "other"); err != nil {
				t.Fatal(err)
			}
			pauseC := now.Add(2 * time.Second)
			if err := g.PauseExecutor(e.ctx, "c", pauseC, "short"); err != nil {
				t.Fatal(err)
			}
			pauses, err := g.ExecutorPauses(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p := pauses["a"]; p.Reason != "the service answered 429" || p.Until.Before(now.Add(59*time.Minute)) {
				t.Errorf("a's pause is %+v, want the hour-long one with its reason", p)
			}
			got := claimed(e, store.ClaimParams{ExecutorLimits: limits})
			// c's pause is short so that its end can be awaited; a machine
			// starved for longer than it may see c's pause over already.
			cEnded := !time.Now().Before(pauseC)
			switch {
			case slices.Equal(got, []uuid.UUID{b}):
			case cEnded && sameSet(got, []uuid.UUID{b, c}):
				t.Logf("c's pause ended before the first claim did; c was claimed with b")
			default:
				t.Fatalf("claim with a and c paused took %v, want only b's task %v", got, b)
			}
			time.Sleep(time.Until(pauseC) + 50*time.Millisecond)
			want := []uuid.UUID{c}
			if len(got) == 2 {
				want = nil // c was claimed already
			}
			if got := claimed(e, store.ClaimParams{ExecutorLimits: limits}); !slices.Equal(got, want) {
				t.Fatalf("claim after c's pause ended took %v, want %v", got, want)
			}
			if st := e.get(a).Task.Status; st != task.StatusPending {
				t.Errorf("a's task is %s while a is paused", st)
			}
		})
	}

	t.Run("start rate", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		g := gates(e)
		// 20 a minute: a burst of 2, then one every 60/18 s.
		for i := range 2 {
			if wait, err := g.TakeStart(e.ctx, "r", 20); err != nil || wait != 0 {
				t.Fatalf("start %d of the burst: wait %s, %v", i+1, wait, err)
			}
		}
		wait, err := g.TakeStart(e.ctx, "r", 20)
		if err != nil {
			t.Fatal(err)
		}
		if wait < 2*time.Second || wait > 60*time.Second/18+time.Second {
			t.Fatalf("the third start within the burst waits %s, want about %s", wait, 60*time.Second/18)
		}
		pauses, err := g.ExecutorPauses(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := pauses["r"]; !ok {
			t.Errorf("an executor out of starts is not paused: %v", pauses)
		}
		if wait, err := g.TakeStart(e.ctx, "unlimited", 0); err != nil || wait != 0 {
			t.Errorf("a start without a rate waits %s, %v", wait, err)
		}
		// Another executor's bucket is its own.
		if wait, err := g.TakeStart(e.ctx, "other", 20); err != nil || wait != 0 {
			t.Errorf("the first start of another executor waits %s, %v", wait, err)
		}
	})

	t.Run("a deferred run gives back its start", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rec := e.createSink(nil)
		e.claim(rec.Task.ID, rec.Task.QueueName)
		if e.get(rec.Task.ID).Task.StartedAt == nil {
			t.Fatal("a claimed task has no started_at")
		}
		later := task.Now().Add(time.Minute)
		errs, err := e.s.FinishRuns(e.ctx, []store.StatusChange{{TaskID: rec.Task.ID, Scope: store.AdminScope, Change: task.Change{
			To: task.StatusPending, Attempt: 1, RunAt: &later, Unstart: true,
			Err: &task.Error{Message: "executor x is paused", Category: task.CategoryRateLimited},
		}}})
		if err != nil || errs[0] != nil {
			t.Fatalf("FinishRuns: %v %v", err, errs)
		}
		got := e.get(rec.Task.ID).Task
		if got.StartedAt != nil || got.Status != task.StatusPending || got.RetryCount != 0 || !got.RunAt.Equal(later) {
			t.Errorf("deferred task: started_at %v, status %s, retry_count %d, run_at %v; want no start, pending, 0, %v",
				got.StartedAt, got.Status, got.RetryCount, got.RunAt, later)
		}
	})
}

// sameSet reports whether a and b hold the same ids, in any order.
func sameSet(a, b []uuid.UUID) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
