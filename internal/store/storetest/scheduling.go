package storetest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// testScheduling covers the fair share between tenants in the claim order,
// tenants' concurrency limits and holds on queues and executors
// (store.Scheduling).
func testScheduling(t *testing.T, newEnv func(t *testing.T) *env) {
	// of creates n due tasks of tenant in queue q on executor ex.
	of := func(e *env, tenant, q, ex string, n int) []uuid.UUID {
		e.t.Helper()
		out := make([]uuid.UUID, n)
		for i := range out {
			out[i] = e.createSink(func(t *task.Task) { t.OriginTenantID, t.QueueName, t.ProviderType = tenant, q, ex }).Task.ID
		}
		return out
	}
	claimed := func(e *env, limit int) []uuid.UUID {
		e.t.Helper()
		recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: limit, Lease: time.Minute})
		if err != nil {
			e.t.Fatalf("ClaimTasks: %v", err)
		}
		return ids(recs)
	}
	sched := func(e *env) store.Scheduling {
		s, ok := e.s.(store.Scheduling)
		if !ok {
			e.t.Fatal("the store does not implement store.Scheduling")
		}
		return s
	}

	t.Run("fair share between tenants", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		big := of(e, "big", "q", "x", 20)
		small := of(e, "small", "q", "x", 3)
		// The small tenant's tasks, created after the big one's backlog,
		// take turns with it: the first six claimed are three of each.
		want := append(append([]uuid.UUID{}, big[:3]...), small...)
		if got := claimed(e, 6); !sameSet(got, want) {
			t.Fatalf("the claim of 6 took %v, want the first 3 of big and the 3 of small: %v", got, want)
		}
		if got := claimed(e, 4); !sameSet(got, big[3:7]) {
			t.Fatalf("the next claim of 4 took %v, want big's next four %v", got, big[3:7])
		}
		// A tenant arriving now starts at the head of the queue: it takes
		// turns with big's next tasks, and does not jump big's whole
		// backlog either.
		late := of(e, "late", "q", "x", 4)
		if got := claimed(e, 2); !sameSet(got, []uuid.UUID{big[7], late[0]}) {
			t.Fatalf("after a third tenant arrived the claim of 2 took %v, want big's next %v and late's first %v", got, big[7], late[0])
		}
		// Priority still comes first.
		urgent := e.createSink(func(t *task.Task) { t.OriginTenantID, t.QueueName, t.Priority = "big", "q", 5 }).Task.ID
		if got := claimed(e, 1); !sameSet(got, []uuid.UUID{urgent}) {
			t.Fatalf("the claim of 1 took %v, want the priority-5 task %v", got, urgent)
		}
	})

	t.Run("tenant limits", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		s := sched(e)
		if err := s.SetTenantLimit(e.ctx, "a", 2); err != nil {
			t.Fatal(err)
		}
		if err := s.SetTenantLimit(e.ctx, "b", 7); err != nil {
			t.Fatal(err)
		}
		if err := s.SetTenantLimit(e.ctx, "b", 0); err != nil { // removes b's
			t.Fatal(err)
		}
		if l, err := s.TenantLimits(e.ctx); err != nil || len(l) != 1 || l["a"] != 2 {
			t.Fatalf("TenantLimits = %v, %v; want a: 2", l, err)
		}
		as := of(e, "a", "q", "x", 4)
		of(e, "b", "q", "x", 3)
		got := claimed(e, 10)
		if len(got) != 5 {
			t.Fatalf("the claim under a's limit of 2 took %d tasks (%v), want 2 of a and the 3 of b", len(got), got)
		}
		var na int
		for _, id := range got {
			if contains(as, id) {
				na++
			}
		}
		if na != 2 {
			t.Fatalf("the claim took %d of a's tasks, limited to 2", na)
		}
		if again := claimed(e, 10); len(again) != 0 {
			t.Fatalf("with a at its limit a second claim took %v", again)
		}
		// One of a's runs ends: one more of a's may start.
		e.setStatus(store.StatusChange{TaskID: firstOf(got, as), Change: task.Change{To: task.StatusCompleted, Attempt: 1, Result: []byte(`{}`)}})
		if again := claimed(e, 10); len(again) != 1 || !contains(as, again[0]) {
			t.Fatalf("after one of a's runs ended the claim took %v, want one of a's", again)
		}
		// Without a limit the rest of a's is claimed.
		if err := s.SetTenantLimit(e.ctx, "a", 0); err != nil {
			t.Fatal(err)
		}
		if rest := claimed(e, 10); len(rest) != 1 || !contains(as, rest[0]) {
			t.Fatalf("with a's limit removed the claim took %v, want a's last", rest)
		}
	})

	t.Run("holds on queues and executors", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		s := sched(e)
		inQ, onX, other := of(e, "", "held-q", "y", 2), of(e, "", "q", "held-x", 2), of(e, "", "q", "y", 1)
		for _, h := range []store.Hold{
			{Kind: store.HoldQueue, Name: "held-q", Reason: "maintenance"},
			{Kind: store.HoldExecutor, Name: "held-x", Reason: "first"},
			{Kind: store.HoldExecutor, Name: "held-x", Reason: "again"},
		} {
			if err := s.Hold(e.ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Hold(e.ctx, store.Hold{Kind: "bogus", Name: "n"}); err == nil {
			t.Error("a hold of an unknown kind was accepted")
		}
		holds, err := s.Holds(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(holds) != 2 || holds[0].Kind != store.HoldExecutor || holds[0].Reason != "again" || holds[1].Name != "held-q" || holds[1].Since.IsZero() {
			t.Fatalf("Holds = %+v, want held-x (reason again) and held-q", holds)
		}
		if got := claimed(e, 10); !sameSet(got, other) {
			t.Fatalf("with queue held-q and executor held-x held the claim took %v, want only %v", got, other)
		}
		if ok, err := s.Release(e.ctx, store.HoldQueue, "held-q"); err != nil || !ok {
			t.Fatalf("Release(held-q) = %v, %v", ok, err)
		}
		if ok, err := s.Release(e.ctx, store.HoldQueue, "held-q"); err != nil || ok {
			t.Fatalf("a second Release(held-q) = %v, %v; want false", ok, err)
		}
		if got := claimed(e, 10); !sameSet(got, inQ) {
			t.Fatalf("after the queue's release the claim took %v, want %v", got, inQ)
		}
		if _, err := s.Release(e.ctx, store.HoldExecutor, "held-x"); err != nil {
			t.Fatal(err)
		}
		// With executor limits (the capped claim) too.
		recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 10, Lease: time.Minute, ExecutorLimits: map[string]int{"held-x": 5}})
		if err != nil || !sameSet(ids(recs), onX) {
			t.Fatalf("after the executor's release the claim took %v (%v), want %v", ids(recs), err, onX)
		}
	})

	t.Run("held executor under executor limits", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		onX, other := of(e, "", "q", "x", 2), of(e, "", "q", "y", 1)
		if err := sched(e).Hold(e.ctx, store.Hold{Kind: store.HoldExecutor, Name: "x"}); err != nil {
			t.Fatal(err)
		}
		recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 10, Lease: time.Minute, ExecutorLimits: map[string]int{"x": 5}})
		if err != nil || !sameSet(ids(recs), other) {
			t.Fatalf("with x held the capped claim took %v (%v), want %v (not %v)", ids(recs), err, other, onX)
		}
	})
}

func contains(list []uuid.UUID, id uuid.UUID) bool {
	for _, x := range list {
		if x == id {
			return true
		}
	}
	return false
}

// firstOf returns the first of got that is in of.
func firstOf(got, of []uuid.UUID) uuid.UUID {
	for _, id := range got {
		if contains(of, id) {
			return id
		}
	}
	return uuid.Nil
}
