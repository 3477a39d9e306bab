package storetest

import (
	"encoding/json"
	"testing"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// testUsage covers task.Usage: a run's outcome adds what its services
// reported to the task's provider_seconds, input_tokens and output_tokens
// (through FinishRuns and SetStatus, on a retried run, a failure and a
// completion), a user's retry keeps them, the task and the event-bearing
// writes return them, and TenantUsage sums them by tenant.
func testUsage(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	m, ok := e.s.(store.Monitor)
	if !ok {
		t.Fatal("the store does not implement store.Monitor")
	}
	done := json.RawMessage(`{"artifacts":[]}`)
	in := func(tenant, q string) func(*task.Task) {
		return func(t *task.Task) { t.OriginTenantID, t.QueueName = tenant, q }
	}

	// A: a run that is retried (it reported service seconds), then one
	// that completes with tokens, through the engine's batch write.
	a := e.createSink(in("t1", "usage-a"))
	c := e.claim(a.Task.ID, "usage-a")
	e.finishRuns(store.StatusChange{TaskID: a.Task.ID, Scope: store.AdminScope, Change: task.Change{
		To: task.StatusPending, Attempt: c.Task.Attempt, CountRetry: true,
		Err:   &task.Error{Message: "boom", Category: task.CategoryProviderError},
		Usage: task.Usage{ProviderSeconds: 1.25},
	}})
	c = e.claim(a.Task.ID, "usage-a")
	e.finishRuns(store.StatusChange{TaskID: a.Task.ID, Scope: store.AdminScope, Change: task.Change{
		To: task.StatusCompleted, Attempt: c.Task.Attempt, Result: done,
		Usage: task.Usage{ProviderSeconds: 2, InputTokens: 100, OutputTokens: 50},
	}})
	want := task.Usage{ProviderSeconds: 3.25, InputTokens: 100, OutputTokens: 50}
	if got := e.get(a.Task.ID).Task.Usage; got != want {
		t.Errorf("task A usage = %+v, want %+v (both runs)", got, want)
	}

	// B: a failed run that had spent tokens, through SetStatus; a user's
	// retry keeps them.
	b := e.createSink(in("t1", "usage-b"))
	c = e.claim(b.Task.ID, "usage-b")
	got, _ := e.setStatus(store.StatusChange{TaskID: b.Task.ID, Change: task.Change{
		To: task.StatusFailed, Attempt: c.Task.Attempt, Err: &task.Error{Message: "bad answer", Category: task.CategoryPermanent},
		Usage: task.Usage{InputTokens: 7, OutputTokens: 3},
	}})
	if want := (task.Usage{InputTokens: 7, OutputTokens: 3}); got.Usage != want {
		t.Errorf("SetStatus returned usage %+v, want %+v", got.Usage, want)
	}
	e.setStatus(store.StatusChange{TaskID: b.Task.ID, Change: task.Change{To: task.StatusPending, From: []task.Status{task.StatusFailed}, ResetForRetry: true}})
	if got := e.get(b.Task.ID).Task.Usage; got != (task.Usage{InputTokens: 7, OutputTokens: 3}) {
		t.Errorf("task B usage after a user's retry = %+v, want the failed run's kept", got)
	}

	// C: another tenant's task whose service reported nothing.
	cc := e.createSink(in("t2", "usage-c"))
	c = e.claim(cc.Task.ID, "usage-c")
	e.finishRuns(store.StatusChange{TaskID: cc.Task.ID, Scope: store.AdminScope, Change: task.Change{To: task.StatusCompleted, Attempt: c.Task.Attempt, Result: done}})
	if got := e.get(cc.Task.ID).Task.Usage; !got.IsZero() {
		t.Errorf("task C usage = %+v, want none", got)
	}

	all, err := m.TenantUsage(e.ctx, store.AdminScope)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].TenantID != "t1" || all[1].TenantID != "t2" {
		t.Fatalf("TenantUsage(admin) = %+v, want t1 and t2", all)
	}
	if want := (task.Usage{ProviderSeconds: 3.25, InputTokens: 107, OutputTokens: 53}); all[0].Usage != want {
		t.Errorf("t1 usage = %+v, want %+v", all[0].Usage, want)
	}
	if !all[1].Usage.IsZero() {
		t.Errorf("t2 usage = %+v, want none", all[1].Usage)
	}
	own, err := m.TenantUsage(e.ctx, store.Scope{TenantID: "t2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != 1 || own[0].TenantID != "t2" || !own[0].Usage.IsZero() {
		t.Errorf("TenantUsage(t2) = %+v, want t2 alone, without usage", own)
	}
}
